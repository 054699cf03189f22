"""Triplet margin loss with all / semi-hard / batch-hard mining."""
from __future__ import annotations

import torch
from torch import nn

from ._common import at_least_float32, check_inputs, no_autocast, positive_float
from .registry import Loss, LossParameter, one_of, positive_number, register

TRIPLET_MINING = ("all", "semihard", "hard")
TRIPLET_DISTANCES = ("euclidean", "cosine")

# Squared distances below this are clamped before the sqrt: d/dx sqrt(x) is infinite at 0,
# so identical embeddings would otherwise give NaN gradients.
_SQ_EPS = 1e-12


def pairwise_distances(x: torch.Tensor, distance: str) -> torch.Tensor:
    """(B, B) matrix of euclidean (raw embeddings) or cosine (1 - cos) distances."""
    if distance not in TRIPLET_DISTANCES:
        raise ValueError(f"triplet_distance must be one of {', '.join(TRIPLET_DISTANCES)}; got {distance!r}")
    if distance == "cosine":
        z = nn.functional.normalize(x, dim=1)
        return 1.0 - z @ z.T
    # Distances are translation invariant; centring first shrinks the norms so the
    # |x|^2 + |y|^2 - 2 x.y identity loses less to cancellation.
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    # sqrt of the clamped value keeps the gradient finite; where() then reports identical
    # vectors at distance exactly 0 (not sqrt(eps)) with a zero gradient.
    return torch.where(d2 > _SQ_EPS, d2.clamp(min=_SQ_EPS).sqrt(), torch.zeros_like(d2))


class TripletLoss(nn.Module):
    """relu(d(a, p) - d(a, n) + margin) averaged over the selected triplets with loss > 0.

    Triplets: label[a] == label[p], a != p, label[n] != label[a] (every other class is a
    negative). ``mining``: "all" every valid triplet; "semihard" those with
    d_ap < d_an < d_ap + margin; "hard" per anchor its farthest positive and nearest negative.
    Reduction is the mean over triplets with positive loss (pytorch-metric-learning's
    AvgNonZeroReducer); with none, a graph-connected zero.

    "all"/"semihard" never enumerate the O(B^3) triplets: for each (anchor, positive) the number
    of active negatives, and for each (anchor, negative) the number of active positives, come
    from sorting each row of the distance matrix and binary search. The loss sum is linear in
    the distances on the active set, so sum(counts * dist) gives the exact value and gradient
    in O(B^2 log B) time and O(B^2) memory (B = 1024 takes a fraction of a second).
    """

    def __init__(
        self,
        margin: float = 0.3,
        mining: str = "all",
        distance: str = "euclidean",
    ) -> None:
        super().__init__()
        margin = positive_float(margin, "triplet_margin")
        if mining not in TRIPLET_MINING:
            raise ValueError(f"triplet_mining must be one of {', '.join(TRIPLET_MINING)}; got {mining!r}")
        if distance not in TRIPLET_DISTANCES:
            raise ValueError(
                f"triplet_distance must be one of {', '.join(TRIPLET_DISTANCES)}; got {distance!r}"
            )
        self.margin = margin
        self.mining = mining
        self.distance = distance

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, distance={self.distance!r}"

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        with no_autocast(embeddings.device):  # low-precision matmuls would blur small distances
            dist = pairwise_distances(at_least_float32(embeddings), self.distance)
            same = labels[:, None] == labels[None, :]
            pos = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
            neg = ~same
            if self.mining == "hard":
                return self._batch_hard(dist, pos, neg)
            return self._all_or_semihard(dist, pos, neg)

    def _batch_hard(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            d = dist.detach()
            p_idx = d.masked_fill(~pos, float("-inf")).argmax(dim=1)  # farthest positive
            n_idx = d.masked_fill(~neg, float("inf")).argmin(dim=1)  # nearest negative
            has_both = pos.any(dim=1) & neg.any(dim=1)
        rows = torch.arange(dist.shape[0], device=dist.device)
        losses = torch.relu(dist[rows, p_idx] - dist[rows, n_idx] + self.margin)
        active = has_both & (losses > 0)
        # where(), not multiplication, so anchors without a triplet contribute exactly nothing.
        total = torch.where(active, losses, torch.zeros_like(losses)).sum()
        return total / active.sum().clamp(min=1)

    def _all_or_semihard(self, dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            d = dist.detach()
            inf = torch.full_like(d, float("inf"))  # pushes excluded entries past every threshold
            # (a, p, n) is active (loss > 0) iff d_an < upper_ap; semihard also needs d_an > d_ap.
            # Both count directions below use exactly these float comparisons, so they agree.
            upper = d + self.margin
            # Per (a, p): number of active negatives = how many of a's sorted negative
            # distances fall in the window, found by binary search.
            neg_sorted = torch.where(neg, d, inf).sort(dim=1).values
            per_pos = torch.searchsorted(neg_sorted, upper, side="left")  # #{n: d_an < upper_ap}
            if self.mining == "semihard":
                per_pos -= torch.searchsorted(neg_sorted, d, side="right")  # minus #{n: d_an <= d_ap}
            per_pos = torch.where(pos, per_pos, torch.zeros_like(per_pos))
            # Per (a, n): number of active positives, = #{p: upper_ap > d_an} [- #{p: d_ap >= d_an}].
            upper_sorted = torch.where(pos, upper, inf).sort(dim=1).values
            per_neg = pos.sum(dim=1, keepdim=True) - torch.searchsorted(upper_sorted, d, side="right")
            if self.mining == "semihard":
                pos_sorted = torch.where(pos, d, inf).sort(dim=1).values
                per_neg -= pos.sum(dim=1, keepdim=True) - torch.searchsorted(pos_sorted, d, side="left")
            per_neg = torch.where(neg, per_neg, torch.zeros_like(per_neg))
            # pos and neg are disjoint, so one matrix holds both coefficients.
            coef = (per_pos - per_neg).to(d.dtype)
            count = per_pos.sum()
        # The loss sum over active triplets, sum(d_ap - d_an + margin), is linear in the distances
        # with these integer coefficients, so this has the exact value and gradient. With nothing
        # active coef is all zero: a graph-connected zero without a host sync.
        total = (coef * dist).sum() + self.margin * count.to(dist.dtype)
        return total / count.clamp(min=1).to(dist.dtype)


register(Loss(
    "triplet", consumes="embeddings", needs_pairs=True,
    build=lambda p, num_classes, embedding_dim: TripletLoss(p["triplet_margin"], p["triplet_mining"],
                                                            p["triplet_distance"]),
    parameters=(
        LossParameter("triplet_margin", 0.3, "triplet loss margin", positive_number),
        LossParameter("triplet_mining", "all", "triplet mining: all valid triplets, semihard, or hard (batch-hard: "
                      "each anchor's farthest positive and nearest negative)", one_of(*TRIPLET_MINING)),
        LossParameter("triplet_distance", "euclidean", "distance used by the triplet loss (euclidean works on the "
                      "un-normalised embeddings; the centroid/kNN rules use cosine)", one_of(*TRIPLET_DISTANCES)),
    ),
))
