"""Triplet margin loss with all / semi-hard / batch-hard mining."""
from __future__ import annotations

import torch
from torch import nn

from ._common import at_least_float32, check_inputs, no_autocast, positive_float

TRIPLET_MINING = ("all", "semihard", "hard")
TRIPLET_DISTANCES = ("euclidean", "cosine")

# Squared distances below this are clamped before the sqrt: d/dx sqrt(x) is infinite at 0,
# so identical embeddings would otherwise give NaN gradients.
_SQ_EPS = 1e-12


def pairwise_distances(x: torch.Tensor, distance: str) -> torch.Tensor:
    """(B, B) matrix of euclidean (raw embeddings) or cosine (1 - cos) distances."""
    if distance == "cosine":
        z = nn.functional.normalize(x, dim=1)
        return 1.0 - z @ z.T
    # Distances are translation invariant; centring first shrinks the norms so the
    # |x|^2 + |y|^2 - 2 x.y identity loses less to cancellation.
    x = x - x.mean(dim=0, keepdim=True)
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return d2.clamp(min=_SQ_EPS).sqrt()


class TripletLoss(nn.Module):
    """relu(d(a, p) - d(a, n) + margin) averaged over the selected triplets with loss > 0.

    Triplets: label[a] == label[p], a != p, label[n] != label[a] (every other class is a
    negative). ``mining``: "all" every valid triplet; "semihard" those with
    d_ap < d_an < d_ap + margin; "hard" per anchor its farthest positive and nearest negative.
    Reduction is the mean over triplets with positive loss (pytorch-metric-learning's
    AvgNonZeroReducer); with none, a graph-connected zero.

    "all"/"semihard" never build the B^3 triplet tensor with a graph: the active set is found
    without grad, chunk by chunk over anchors (``max_chunk_elements`` per chunk), and turned
    into per-pair counts. Since the loss sum is linear in the distances on the active set,
    sum(coef * dist) has the exact value and gradient while autograd keeps only B^2 tensors.
    """

    def __init__(
        self,
        margin: float = 0.3,
        mining: str = "all",
        distance: str = "euclidean",
        *,
        max_chunk_elements: int = 2**22,
    ) -> None:
        super().__init__()
        margin = positive_float(margin, "triplet_margin")
        if mining not in TRIPLET_MINING:
            raise ValueError(f"triplet_mining must be one of {', '.join(TRIPLET_MINING)}; got {mining!r}")
        if distance not in TRIPLET_DISTANCES:
            raise ValueError(
                f"triplet_distance must be one of {', '.join(TRIPLET_DISTANCES)}; got {distance!r}"
            )
        if int(max_chunk_elements) < 1:
            raise ValueError(f"max_chunk_elements must be >= 1, got {max_chunk_elements!r}")
        self.margin = margin
        self.mining = mining
        self.distance = distance
        self.max_chunk_elements = int(max_chunk_elements)

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
        b = dist.shape[0]
        with torch.no_grad():
            d = dist.detach()
            # coef[a, p] = #active triplets using (a, p); coef[a, n] = -#active using (a, n).
            # pos and neg are disjoint, so both fit in one matrix.
            coef = torch.zeros_like(d)
            count = torch.zeros((), dtype=torch.int64, device=d.device)
            rows_per_chunk = max(1, self.max_chunk_elements // max(1, b * b))
            for start in range(0, b, rows_per_chunk):
                stop = min(b, start + rows_per_chunk)
                d_ap = d[start:stop, :, None]
                d_an = d[start:stop, None, :]
                active = (d_ap - d_an + self.margin) > 0  # loss > 0, i.e. d_an < d_ap + margin
                active &= pos[start:stop, :, None]
                active &= neg[start:stop, None, :]
                if self.mining == "semihard":
                    active &= d_an > d_ap
                coef[start:stop] += active.sum(dim=2, dtype=d.dtype)
                coef[start:stop] -= active.sum(dim=1, dtype=d.dtype)
                count += active.sum()
        # Sum over active triplets of (d_ap - d_an + margin); coef is all zero when nothing is
        # active, which yields a graph-connected zero without a host sync.
        total = (coef * dist).sum() + self.margin * count.to(dist.dtype)
        return total / count.clamp(min=1).to(dist.dtype)
