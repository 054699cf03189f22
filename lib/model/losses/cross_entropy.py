"""Cross-entropy on raw logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_inputs, zero_like_graph
from .registry import Loss, register


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy of ``logits`` (B x C) against integer ``labels`` (B,).

    ``F.cross_entropy`` applies log-softmax itself; the original study applied a softmax
    first, which squashes the logits into [0, 1] and all but kills the gradient.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(logits, labels, what="logits")
        if logits.shape[0] == 0:  # mean over nothing would be NaN
            return zero_like_graph(logits)
        return F.cross_entropy(logits, labels.long())


register(Loss("ce", build=lambda params, num_classes, embedding_dim: CrossEntropyLoss(), consumes="logits",
              rule="head"))
