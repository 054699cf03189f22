"""ArcFace (additive angular margin) loss with learnable class centres."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_inputs, no_autocast, positive_float, positive_int, to_float, zero_like_graph
from .registry import Loss, LossParameter, positive_number, register

# Floor for sin^2(theta): sqrt has an infinite slope at 0 (embedding exactly on its centre).
_SIN2_EPS = 1e-7


class ArcFaceLoss(nn.Module):
    """Cross-entropy on ``scale * cos(theta_j)``, with ``theta_y + margin`` for the true class.

    For ``theta_y > pi - margin`` the true-class logit is ``cos(theta_y) - margin * sin(margin)``
    (monotone in theta), as in the ArcFace paper's code and pytorch-metric-learning.

    ``margin`` is in RADIANS (the original study passed degrees, i.e. a ~57x larger margin).
    ``centres`` (num_classes x embedding_dim) are a parameter: the optimizer must see them.
    Everything is computed in float32 with autocast off: cos close to +-1 and the
    sqrt(1 - cos^2) term are too coarse in half precision.
    """

    def __init__(self, num_classes: int, embedding_dim: int, margin: float = 0.5, scale: float = 8.0) -> None:
        super().__init__()
        num_classes = positive_int(num_classes, "num_classes")
        embedding_dim = positive_int(embedding_dim, "embedding_dim")
        margin = to_float(margin, "arcface_margin")
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(
                f"arcface_margin must satisfy 0 <= margin < pi/2, in radians (e.g. 0.5 ~ 28.6 degrees); "
                f"got {margin!r}"
            )
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.margin = margin
        self.scale = positive_float(scale, "arcface_scale")
        self.centres = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        nn.init.xavier_normal_(self.centres)  # global RNG: seeded by seed_everything

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"margin={self.margin}, scale={self.scale}"
        )

    def _cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = F.normalize(embeddings.float(), dim=1)
        w = F.normalize(self.centres.float(), dim=1)
        # Rounding can push |cos| a hair above 1, which would make 1 - cos^2 negative.
        return (x @ w.T).clamp(-1.0, 1.0)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``scale * cos`` to every centre, without margin: a nearest-centre prediction rule."""
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings must be 2-D (batch x dim), got shape {tuple(embeddings.shape)}")
        with no_autocast(embeddings.device):
            return self.scale * self._cosine(embeddings)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_inputs(embeddings, labels)
        with no_autocast(embeddings.device):
            if embeddings.shape[0] == 0:
                return zero_like_graph(embeddings.float()) + zero_like_graph(self.centres)
            labels = labels.long()
            cos = self._cosine(embeddings)
            cos_y = cos.gather(1, labels[:, None])
            # cos(theta + m) = cos cos(m) - sin sin(m), with sin(theta) = sqrt(1 - cos^2) >= 0
            # because theta = acos(cos) lies in [0, pi]; this avoids acos's infinite slope at +-1.
            sin_y = (1.0 - cos_y * cos_y).clamp(min=_SIN2_EPS).sqrt()
            cos_y_margin = cos_y * math.cos(self.margin) - sin_y * math.sin(self.margin)
            # Past theta = pi - m, cos(theta + m) rises again and its gradient would push an
            # embedding away from its own centre; there the standard ArcFace (and
            # pytorch-metric-learning) use the monotone cos(theta) - m sin(m) instead.
            # theta <= pi - m  <=>  cos(theta) >= cos(pi - m) = -cos(m).
            past_limit = cos_y < -math.cos(self.margin)
            cos_y_margin = torch.where(past_limit, cos_y - self.margin * math.sin(self.margin), cos_y_margin)
            logits = cos.scatter(1, labels[:, None], cos_y_margin)
            return F.cross_entropy(self.scale * logits, labels)


def _radians(name: str, value) -> float:
    """A margin in [0, pi/2) radians; a value past pi/2 is most likely degrees (the seed study's)."""
    try:
        out = to_float(value, name)
    except ValueError:
        out = float("nan")
    if not 0 <= out < math.pi / 2:
        raise ValueError(f"{name} is in radians and must be in [0, pi/2), got {value!r}"
                         + (" (did you give degrees?)" if out >= math.pi / 2 else ""))
    return out


register(Loss(
    "arcface", consumes="embeddings", rule="arcface",
    build=lambda p, num_classes, embedding_dim: ArcFaceLoss(num_classes, embedding_dim, p["arcface_margin"],
                                                            p["arcface_scale"]),
    parameters=(
        LossParameter("arcface_margin", 0.5, "ArcFace additive angular margin in radians (0.5 rad = 28.6 degrees)",
                      _radians),
        LossParameter("arcface_scale", 8.0, "ArcFace scale s (the seed study used 8)", positive_number),
    ),
))
