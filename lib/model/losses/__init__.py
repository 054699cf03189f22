"""Loss functions, one per module, and the loss-spec language that combines them."""
from .arcface import ArcFaceLoss
from .cross_entropy import CrossEntropyLoss
from .spec import LOSS_NAMES, NAMED_SPECS, build_loss, format_loss_spec, parse_loss_spec
from .supcon import SupConLoss
from .triplet import TRIPLET_DISTANCES, TRIPLET_MINING, TripletLoss, pairwise_distances
from .weighted_sum import WeightedSumLoss

__all__ = [
    "ArcFaceLoss",
    "CrossEntropyLoss",
    "LOSS_NAMES",
    "NAMED_SPECS",
    "SupConLoss",
    "TRIPLET_DISTANCES",
    "TRIPLET_MINING",
    "TripletLoss",
    "WeightedSumLoss",
    "build_loss",
    "format_loss_spec",
    "pairwise_distances",
    "parse_loss_spec",
]
