"""A weighted sum of named loss parts."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ._common import to_float
from .registry import get_loss


class WeightedSumLoss(nn.Module):
    """``total = sum_k w_k * part_k``; each part is called on (logits, labels) or (embeddings, labels),
    as its registration says (``consumes``; registry.py).

    Parts live in an ``nn.ModuleDict`` so their parameters (the ArcFace centres) show up in
    ``.parameters()`` and ``.to(device)``: the optimizer must be given them (the original
    study never optimised the centres).
    """

    def __init__(self, parts: Mapping[str, tuple[float, nn.Module]]) -> None:
        super().__init__()
        if not parts:
            raise ValueError("WeightedSumLoss needs at least one part")
        self.weights: dict[str, float] = {}
        self.consumes: dict[str, str] = {}
        self.parts = nn.ModuleDict()
        for name, (weight, module) in parts.items():
            weight = to_float(weight, f"weight of loss part {name!r}")
            if weight < 0:
                raise ValueError(f"weight of loss part {name!r} must be >= 0, got {weight!r}")
            if not isinstance(module, nn.Module):
                raise ValueError(f"loss part {name!r} must be an nn.Module, got {type(module).__name__}")
            self.weights[name] = weight
            self.consumes[name] = get_loss(name).consumes
            self.parts[name] = module

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={w!r}" for name, w in self.weights.items())

    def forward(
        self, embeddings: torch.Tensor, logits: torch.Tensor | None, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return (weighted total with grad, {name: unweighted part value, detached})."""
        total = None
        values: dict[str, torch.Tensor] = {}
        for name, module in self.parts.items():
            if self.consumes[name] == "logits":
                if logits is None:
                    raise ValueError(f"loss part {name!r} needs logits, got None")
                value = module(logits, labels)
            else:
                value = module(embeddings, labels)
            values[name] = value.detach()
            term = self.weights[name] * value
            total = term if total is None else total + term
        return total, values
