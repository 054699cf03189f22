"""Tokenise once, then batch with dynamic padding: length-grouped or class-balanced."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TokenizedSplit:
    ids: list[np.ndarray]       # token ids per sentence, special tokens included, unpadded
    labels: np.ndarray
    pad_id: int
    truncated: int              # sentences cut to max_length

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def __len__(self) -> int:
        return len(self.ids)


_TOKEN_CACHE: dict[str, TokenizedSplit] = {}


def tokenize(tokenizer, texts, labels, max_length: int, prefix: str = "", cache: bool = True) -> TokenizedSplit:
    """Tokenise without padding; cached in memory per (tokenizer, prefix, max_length, texts) unless ``cache``
    is False (a saved model labelling new sentences: a long-lived process would keep every call's tokens)."""
    texts = [prefix + t for t in texts]
    if not cache:
        return _tokenize(tokenizer, texts, labels, max_length)
    key = hashlib.sha256("\x00".join([tokenizer.name_or_path, str(max_length)] + texts).encode()).hexdigest()
    if key not in _TOKEN_CACHE:
        _TOKEN_CACHE[key] = _tokenize(tokenizer, texts, labels, max_length)
    cached = _TOKEN_CACHE[key]
    return TokenizedSplit(cached.ids, np.asarray(labels, dtype=np.int64), cached.pad_id, cached.truncated)


def _tokenize(tokenizer, texts, labels, max_length: int) -> TokenizedSplit:
    """Token ids per sentence, cut to ``max_length`` (counted), special tokens kept."""
    full = tokenizer(texts, add_special_tokens=True, truncation=False, padding=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    ids, cut = [], 0
    for seq in full:
        if len(seq) > max_length:
            cut += 1
            # keep the closing special token ([SEP] / </s>) that the model was trained with
            seq = seq[:max_length - 1] + seq[-1:] if seq[-1] in special else seq[:max_length]
        ids.append(np.asarray(seq, dtype=np.int64))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TokenizedSplit(ids, np.asarray(labels, dtype=np.int64), pad, cut)


def collate(split: TokenizedSplit, index: np.ndarray) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest sentence."""
    seqs = [split.ids[i] for i in index]
    width = max(len(s) for s in seqs)
    input_ids = np.full((len(seqs), width), split.pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        input_ids[row, :len(s)] = s
        mask[row, :len(s)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(split.labels[index]), "index": torch.from_numpy(np.asarray(index))}


def _perm(n: int, gen: torch.Generator) -> np.ndarray:
    return torch.randperm(n, generator=gen).numpy()


def length_grouped_batches(lengths: np.ndarray, batch_size: int, gen: torch.Generator,
                           group: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length inside groups of ``group`` batches, then shuffle the batches.

    Sentences of similar length share a batch (little padding) while the order stays random.
    """
    order = _perm(len(lengths), gen)
    batches = []
    span = batch_size * group
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in _perm(len(batches), gen)]


def balanced_batches(labels: np.ndarray, batch_size: int, samples_per_class: int,
                     gen: torch.Generator) -> list[np.ndarray]:
    """P classes x K examples per batch (P = batch_size // K); about one epoch of batches.

    Classes are drawn in proportion to the examples they have left this epoch, and each class's
    examples come without replacement from a reshuffled pool, so every sentence is seen about
    once per epoch and the class prior stays that of the data (a small class is refilled when
    it runs out, so it may repeat).
    """
    classes = np.unique(labels)
    k = samples_per_class
    p = min(max(batch_size // k, 1), len(classes))
    pools = {c: np.flatnonzero(labels == c) for c in classes}
    queues = {c: list(pools[c][_perm(len(pools[c]), gen)]) for c in classes}
    batches = []
    for _ in range(max(len(labels) // (p * k), 1)):
        left = torch.tensor([float(len(queues[c]) or len(pools[c])) for c in classes])
        chosen = classes[torch.multinomial(left, p, replacement=False, generator=gen).numpy()]
        batch = []
        for c in chosen:
            for _ in range(k):
                if not queues[c]:
                    queues[c] = list(pools[c][_perm(len(pools[c]), gen)])
                batch.append(queues[c].pop())
        batches.append(np.asarray(batch, dtype=np.int64))
    return batches


def sequential_batches(n: int, batch_size: int, lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """Evaluation order: sorted by length (less padding); callers scatter results back."""
    order = np.argsort(-lengths, kind="stable") if lengths is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]
