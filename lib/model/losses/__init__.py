"""Loss functions, one per module, registered by name (registry.py), and the loss-spec language that combines them.

A loss module registers its loss when imported, and every module of this package is imported here: a new
file is a new loss. The built-ins are imported first, since registration order is the canonical order of
loss specs (ce, triplet, arcface, supcon), which run folder names depend on; other modules follow by name.
"""
import importlib
import pkgutil

from . import cross_entropy, triplet, arcface, supcon  # noqa: F401  (canonical order: see above)


def _import_loss_modules() -> None:
    """Import every module of this package (a loss module registers its loss as it is imported)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_loss_modules()

from .arcface import ArcFaceLoss  # noqa: E402
from .cross_entropy import CrossEntropyLoss  # noqa: E402
from .registry import (Loss, LossParameter, enabled_rules, get_loss, loss_names, loss_parameters,  # noqa: E402
                       loss_rules, one_of, parameter_owner, positive_number, register, unregister)
from .spec import NAMED_SPECS, build_loss, format_loss_spec, parse_loss_spec  # noqa: E402
from .supcon import SupConLoss  # noqa: E402
from .triplet import TRIPLET_DISTANCES, TRIPLET_MINING, TripletLoss, pairwise_distances  # noqa: E402
from .weighted_sum import WeightedSumLoss  # noqa: E402


def __getattr__(name: str):
    if name == "LOSS_NAMES":  # live: a loss registered later (a test's toy loss) is in it
        return loss_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArcFaceLoss",
    "CrossEntropyLoss",
    "LOSS_NAMES",
    "Loss",
    "LossParameter",
    "NAMED_SPECS",
    "SupConLoss",
    "TRIPLET_DISTANCES",
    "TRIPLET_MINING",
    "TripletLoss",
    "WeightedSumLoss",
    "build_loss",
    "enabled_rules",
    "format_loss_spec",
    "get_loss",
    "loss_names",
    "loss_parameters",
    "loss_rules",
    "one_of",
    "pairwise_distances",
    "parameter_owner",
    "parse_loss_spec",
    "positive_number",
    "register",
    "unregister",
]
