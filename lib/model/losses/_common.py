"""Input checks and numeric helpers shared by the loss modules."""
from __future__ import annotations

import contextlib
import operator

import torch


def check_inputs(values: torch.Tensor, labels: torch.Tensor, what: str = "embeddings") -> None:
    """Shape/dtype checks only (no device sync): ``values`` is (B, K), ``labels`` is (B,) integer."""
    if values.dim() != 2:
        raise ValueError(f"{what} must be 2-D (batch x dim), got shape {tuple(values.shape)}")
    if labels.dim() != 1 or labels.shape[0] != values.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one entry per row of {what}: "
            f"got labels {tuple(labels.shape)} for {what} {tuple(values.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half/bfloat16 embeddings lose too much in Gram-matrix distances; float64 is kept (tests)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def no_autocast(device: torch.device):
    """Context that switches autocast off for ``device`` (a no-op where autocast is unsupported)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # device type without autocast support: nothing to disable
        return contextlib.nullcontext()


def zero_like_graph(x: torch.Tensor) -> torch.Tensor:
    """A scalar 0 still connected to ``x``'s graph, so ``backward()`` works on empty selections."""
    return x.sum() * 0.0


def to_float(value, name: str) -> float:
    """``float(value)`` or a ValueError naming the parameter (NaN/inf rejected)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def positive_float(value, name: str) -> float:
    out = to_float(value, name)
    if not out > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return out


def positive_int(value, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if out < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return out
