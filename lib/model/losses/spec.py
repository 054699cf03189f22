"""Loss specifications ("ce=0.15+triplet=0.4+arcface=0.45") and building the loss from one."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

from .registry import get_loss, loss_names, loss_parameters
from .weighted_sum import WeightedSumLoss

NAMED_SPECS: dict[str, dict[str, float]] = {
    "ce": {"ce": 1.0},
    "triplet": {"triplet": 1.0},
    "arcface": {"arcface": 1.0},
    "supcon": {"supcon": 1.0},
    # The original study's best weights.
    "combined": {"ce": 0.15, "triplet": 0.4, "arcface": 0.45},
}

# Plain decimal or scientific notation; the sign is allowed so "-1" reads as a *negative*
# weight (clearer message) rather than as a non-number.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Split terms on "+", except the exponent sign in "1e+3".
_TERM_SPLIT = re.compile(r"(?<!\d[eE])\+")


def _spec_error(text: str, problem: str) -> ValueError:
    return ValueError(
        f"invalid loss spec {text!r}: {problem}. Use a named spec ({', '.join(NAMED_SPECS)}) or a "
        f"'+'-separated sum of name[=weight] with names from {', '.join(loss_names())}, "
        f"e.g. 'ce=0.15+triplet=0.4+arcface=0.45'"
    )


def __getattr__(name: str):
    if name == "LOSS_NAMES":  # the registered names, canonical order first to last (registry.py)
        return loss_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _canonical(weights: Mapping[str, float], text: str) -> dict[str, float]:
    """Check names and weights, drop zero weights, order by registration (the canonical order)."""
    names = loss_names()
    out: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in names:
            raise _spec_error(text, f"unknown loss name {name!r}")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise _spec_error(text, f"weight {weight!r} of {name!r} is not a number") from None
        if not math.isfinite(weight):
            raise _spec_error(text, f"weight {weight!r} of {name!r} is not finite")
        if weight < 0:
            raise _spec_error(text, f"weight {weight!r} of {name!r} is negative")
        out[name] = weight
    if not any(out.values()):
        raise _spec_error(text, "all weights are zero")
    return {name: out[name] for name in names if out.get(name, 0.0) != 0.0}


def parse_loss_spec(text: str) -> dict[str, float]:
    """Parse "combined", "ce+triplet" (weight 1) or "ce=0.15 + triplet=0.4" into {name: weight}.

    Names come back in canonical (registration) order; parts with weight 0 are dropped.
    """
    if not isinstance(text, str):
        raise ValueError(f"loss spec must be a string, got {type(text).__name__} {text!r}")
    stripped = text.strip()
    if not stripped:
        raise _spec_error(text, "it is empty")
    if stripped in NAMED_SPECS:
        return dict(NAMED_SPECS[stripped])
    weights: dict[str, float] = {}
    for term in _TERM_SPLIT.split(stripped):
        name, sep, weight_text = (part.strip() for part in term.partition("="))
        if not name:
            raise _spec_error(text, f"empty loss name in term {term.strip()!r}")
        if name not in loss_names():
            hint = " (named specs cannot be summed)" if name in NAMED_SPECS else ""
            raise _spec_error(text, f"unknown loss name {name!r}{hint}")
        if name in weights:
            raise _spec_error(text, f"loss name {name!r} appears more than once")
        if not sep:
            weights[name] = 1.0
            continue
        if not _NUMBER.fullmatch(weight_text):
            raise _spec_error(text, f"weight {weight_text!r} of {name!r} is not a number")
        weights[name] = float(weight_text)
    return _canonical(weights, text)


def format_loss_spec(weights: Mapping[str, float]) -> str:
    """Canonical text, e.g. "ce=0.15+triplet=0.4+arcface=0.45" (canonical order, repr floats,
    zero weights dropped), so ``parse_loss_spec(format_loss_spec(w)) == w`` for parsed ``w``."""
    clean = _canonical(weights, repr(dict(weights)))
    return "+".join(f"{name}={weight!r}" for name, weight in clean.items())


def build_loss(weights: Mapping[str, float], num_classes: int, embedding_dim: int, **params) -> WeightedSumLoss:
    """Build the WeightedSumLoss for ``weights`` (e.g. from parse_loss_spec).

    ``params``: loss parameters by name (``triplet_margin=0.2``); a part's parameters not given take
    their registered defaults. Only the parts with non-zero weight are built (and check their settings);
    the ArcFace centres draw from torch's global RNG, so seed before calling.
    """
    weights = _canonical(weights, repr(dict(weights)))
    known = loss_parameters()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown loss parameter(s) {', '.join(unknown)}; registered: {', '.join(known) or 'none'}")
    parts = {}
    for name, weight in weights.items():
        loss = get_loss(name)
        values = {p.name: p.value(params.get(p.name, p.default)) for p in loss.parameters}
        module = loss.build(values, num_classes, embedding_dim)
        if loss.rule not in (None, "head") and not callable(getattr(module, "logits", None)):
            raise ValueError(f"loss {name!r} enables rule {loss.rule!r} but its module has no logits(embeddings)")
        parts[name] = (weight, module)
    return WeightedSumLoss(parts)
