"""The a-priori prediction rule of a run (PROTOCOL.md), fixed before any result is seen."""
from __future__ import annotations

from lib.model.losses import get_loss, parse_loss_spec


# What apriori_rule says, in the words the training notebooks print above their run tables
# (tests/test_notebook_promises.py holds the notebooks and this function to it).
APRIORI_RULE_TEXT = ("the classifier head for cross-entropy alone, the nearest class centroid of the training "
                     "embeddings for every loss with a metric part (triplet, ArcFace, SupCon; alone or summed with "
                     "cross-entropy)")


def apriori_rule(method: str, loss: str | None) -> str:
    """The seed study's rules: the classifier head for cross-entropy alone (and for the loss-free
    baselines, whose classifier is the logistic regression), the nearest class centroid for any
    loss with a metric part. A fine-tuned run also selects its epoch with this rule."""
    if method != "finetune":
        return "head"
    # A metric part is a loss on embeddings (registry.py): cross-entropy is the only built-in on logits.
    return "head" if all(get_loss(n).consumes == "logits" for n in parse_loss_spec(loss)) else "centroid"
