"""The a-priori prediction rule of a run (PROTOCOL.md), fixed before any result is seen."""
from __future__ import annotations

from lib.model.losses import parse_loss_spec


def apriori_rule(method: str, loss: str | None) -> str:
    """The seed study's rules: the classifier head for cross-entropy alone (and for the loss-free
    baselines, whose classifier is the logistic regression), the nearest class centroid for any
    loss with a metric part. A fine-tuned run also selects its epoch with this rule."""
    if method != "finetune":
        return "head"
    return "head" if set(parse_loss_spec(loss)) == {"ce"} else "centroid"
