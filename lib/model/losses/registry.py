"""The loss registry: every loss a loss spec can name, and what training needs to know about it.

A loss is one module in this package: its ``nn.Module`` and, at the bottom, one ``register(Loss(...))``
naming it, what it is called on (the classifier's logits or the embeddings), its parameters and the
prediction rule it makes possible. The package imports every module in it (see ``__init__``), so a new
file is all a new loss needs; lib.run (``--loss``, ``--loss-option``), the plan and the notebooks
(``LOSSES``, a parameter named like the loss parameter, upper-cased) then know it.

Registration order is the canonical order of loss specs ("ce=..+triplet=..+arcface=..+supcon=.."):
run folder names and published configs depend on it, so the built-ins come first.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

CONSUMES = ("logits", "embeddings")
# Rules every run has, whatever its loss (lib.evaluation.evaluate.RULES lists them all).
ALWAYS_ON_RULES = ("centroid", "knn")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class LossParameter:
    """One setting of a loss. ``name`` starts with the loss's name and "_" (``triplet_margin``): it is
    the config field or ``--loss-option`` key, and upper-cased the notebook parameter (TRIPLET_MARGIN).
    ``check(name, value)`` returns the value to use (converted: lib.run hands ``--loss-option`` values
    over as text) or raises ValueError naming the parameter; ``positive_number`` and ``one_of`` below
    are ready-made checks."""
    name: str
    default: Any
    help: str
    check: Callable[[str, Any], Any]

    @property
    def choices(self) -> tuple | None:
        return getattr(self.check, "choices", None)

    def value(self, given: Any) -> Any:
        return self.check(self.name, given)


@dataclass(frozen=True)
class Loss:
    """A registered loss.

    ``build(params, num_classes, embedding_dim)`` returns the ``nn.Module``, ``params`` holding a
    checked value for each of ``parameters`` by name. The module is called as ``module(x, labels)`` with
    ``x`` the classifier's logits or the embeddings (``consumes``); its own ``nn.Parameter``s (ArcFace's
    centres) are trained with the heads. ``rule``: the prediction rule the loss makes possible besides
    the centroid and kNN rules every run has: "head" for a loss on logits (it trains the classifier;
    without one the head is untrained and no rule), or a rule named after a loss whose module has
    ``logits(embeddings)`` to predict with (ArcFace's nearest centre). ``needs_pairs``: the loss compares
    examples of one class within a batch (triplet, SupCon), so batches need two of a class.
    """
    name: str
    build: Callable[[dict, int, int], nn.Module]
    consumes: str
    parameters: tuple[LossParameter, ...] = ()
    rule: str | None = None
    needs_pairs: bool = False


_REGISTRY: dict[str, Loss] = {}


def register(loss: Loss) -> Loss:
    """Add ``loss``; a malformed entry is refused with a ValueError naming what is wrong."""
    where = f"loss {loss.name!r}"
    if not isinstance(loss.name, str) or not _NAME.fullmatch(loss.name) or loss.name == "combined":
        raise ValueError(f"{where}: a loss name is lower-case letters, digits and _, starting with a letter, "
                         "and not 'combined' (a named spec)")
    if loss.name in _REGISTRY:
        raise ValueError(f"{where} is registered already")
    if loss.consumes not in CONSUMES:
        raise ValueError(f"{where}: consumes must be one of {', '.join(CONSUMES)}, got {loss.consumes!r}")
    if (loss.consumes == "logits") != (loss.rule == "head"):
        raise ValueError(f"{where}: a loss on logits trains the classifier and enables the 'head' rule; a loss on "
                         f"embeddings does not (got consumes={loss.consumes!r}, rule={loss.rule!r})")
    if loss.rule not in (None, "head", loss.name):
        raise ValueError(f"{where}: rule must be None, 'head' (a loss on logits) or {loss.name!r} (predicting with "
                         f"the module's logits(embeddings)), got {loss.rule!r}")
    taken = {p.name: other.name for other in _REGISTRY.values() for p in other.parameters}
    for p in loss.parameters:
        if not p.name.startswith(loss.name + "_") or not _NAME.fullmatch(p.name):
            raise ValueError(f"{where}: parameter {p.name!r} must be named {loss.name}_<what> (lower case)")
        if p.name in taken:
            raise ValueError(f"{where}: parameter {p.name!r} is loss {taken[p.name]!r}'s already")
        taken[p.name] = loss.name
        p.value(p.default)  # a default its own check refuses is a bug of the entry: say so now
    _REGISTRY[loss.name] = loss
    return loss


def unregister(name: str) -> None:
    """Remove a loss (tests register toy losses and remove them again)."""
    _REGISTRY.pop(name, None)


def loss_names() -> tuple[str, ...]:
    """Registered names in canonical order (the order loss specs are written in)."""
    return tuple(_REGISTRY)


def get_loss(name: str) -> Loss:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown loss name {name!r}; registered: {', '.join(_REGISTRY)}") from None


def loss_parameters(names=None) -> dict[str, LossParameter]:
    """{parameter name: parameter} of the losses ``names`` (default: every registered loss)."""
    losses = _REGISTRY.values() if names is None else [get_loss(n) for n in names]
    return {p.name: p for loss in losses for p in loss.parameters}


def parameter_owner(parameter: str) -> str | None:
    """The name of the loss that declares ``parameter`` (None: no registered loss does)."""
    return next((loss.name for loss in _REGISTRY.values() if any(p.name == parameter for p in loss.parameters)),
                None)


def loss_rules() -> tuple[str, ...]:
    """Every rule some registered loss makes possible (a run has such a rule only with that loss)."""
    return tuple(dict.fromkeys(loss.rule for loss in _REGISTRY.values() if loss.rule))


def enabled_rules(names) -> dict[str, str]:
    """{rule: the first loss part of ``names`` that makes it possible}, e.g. {"head": "ce", "arcface": "arcface"}."""
    out: dict[str, str] = {}
    for name in names:
        rule = get_loss(name).rule
        if rule:
            out.setdefault(rule, name)
    return out


# ----------------------------------------------------------------------------- ready-made checks


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0 (text such as "0.3" is read as a number)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return out


def one_of(*choices: str) -> Callable[[str, Any], str]:
    """A check accepting exactly one of ``choices`` (lib.run offers them as the option's choices)."""
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value
    check.choices = choices
    return check
