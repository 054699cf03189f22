"""Supervised contrastive loss (Khosla et al. 2020, the L_out variant)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import at_least_float32, check_inputs, no_autocast, positive_float
from .registry import Loss, LossParameter, positive_number, register


class SupConLoss(nn.Module):
    """For each anchor i with >= 1 positive: -mean_p log( exp(s_ip) / sum_{a != i} exp(s_ia) ),
    s = cosine similarity / temperature; averaged over anchors that have a positive
    (a graph-connected zero when none has).
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = positive_float(temperature, "supcon_temperature")

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        with no_autocast(embeddings.device):  # exp(s / T) with small T is fragile in half precision
            z = F.normalize(at_least_float32(embeddings), dim=1)
            sim = (z @ z.T) / self.temperature
            eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
            pos = (labels[:, None] == labels[None, :]) & ~eye
            # Self is excluded from the denominator with the most negative finite number: its
            # exp is exactly 0, unlike -inf it cannot make inf - inf or 0 * inf NaNs, and
            # logsumexp subtracts the row max so nothing overflows.
            denom = torch.logsumexp(sim.masked_fill(eye, torch.finfo(sim.dtype).min), dim=1, keepdim=True)
            log_prob = sim - denom
            n_pos = pos.sum(dim=1)
            # where(), not pos * log_prob: the diagonal of log_prob may be huge for B = 1.
            sum_pos = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
            per_anchor = -sum_pos / n_pos.clamp(min=1).to(sim.dtype)
            has_pos = n_pos > 0
            total = torch.where(has_pos, per_anchor, torch.zeros_like(per_anchor)).sum()
            return total / has_pos.sum().clamp(min=1).to(sim.dtype)


register(Loss(
    "supcon", consumes="embeddings", needs_pairs=True,
    build=lambda p, num_classes, embedding_dim: SupConLoss(p["supcon_temperature"]),
    parameters=(LossParameter("supcon_temperature", 0.1, "supervised contrastive loss temperature",
                              positive_number),),
))
