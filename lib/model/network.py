"""Encoder -> masked mean pooling -> embedding head -> linear classifier (logits)."""
from __future__ import annotations

import torch
from torch import nn


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only (the seed study averaged the padding too)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class EmbeddingHead(nn.Module):
    """The seed study's head: LayerNorm, Linear to ``dim``, Tanh, Dropout."""

    def __init__(self, in_dim: int, dim: int = 128, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, dim), nn.Tanh(), nn.Dropout(dropout))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class EmotionModel(nn.Module):
    """Returns ``{"embeddings", "logits"}``; the classifier returns raw logits (no softmax).

    ``encoder`` may be None: then ``forward(pooled=...)`` trains the heads on cached
    encoder outputs (frozen-encoder mode).
    """

    def __init__(self, encoder: nn.Module | None, hidden_size: int, num_classes: int, embed_dim: int = 128,
                 dropout: float = 0.3):
        super().__init__()
        self.encoder = encoder
        self.head = EmbeddingHead(hidden_size, embed_dim, dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask)

    def forward(self, input_ids=None, attention_mask=None, pooled=None) -> dict[str, torch.Tensor]:
        if pooled is None:
            pooled = self.pool(input_ids, attention_mask)
        emb = self.head(pooled.float())
        return {"embeddings": emb, "logits": self.classifier(emb)}

    def head_parameters(self):
        return list(self.head.parameters()) + list(self.classifier.parameters())


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def freeze_word_embeddings(encoder: nn.Module) -> None:
    emb = encoder.get_input_embeddings()
    if emb is not None:
        emb.weight.requires_grad_(False)
