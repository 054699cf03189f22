"""Frozen-encoder mode: encode each split once and cache the pooled vectors on disk."""
from __future__ import annotations

import hashlib
import os
import stat
import time
import tempfile
from pathlib import Path

import numpy as np
import torch

from lib.training.batching import TokenizedSplit, collate, sequential_batches
from lib.ownership import owned
from lib.paths import cache_dir


def weights_fingerprint(encoder) -> str:
    """Where the weights came from and which file version: a folder updated in place, or a new
    hub revision, must not reuse stale features."""
    where = getattr(encoder, "name_or_path", "") or ""
    parts = [where, str(getattr(encoder.config, "_commit_hash", ""))]
    folder = Path(where)
    if folder.is_dir():
        for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def features_key(encoder_name: str, tokens: TokenizedSplit, bf16: bool, fingerprint: str = "") -> str:
    h = hashlib.sha256(f"{encoder_name}|{fingerprint}|bf16={bf16}|".encode())
    for seq in tokens.ids:
        h.update(seq.tobytes())
        h.update(b"|")
    return h.hexdigest()[:32]


@torch.no_grad()
def encode_pooled(model, tokens: TokenizedSplit, batch_size: int, device: torch.device, bf16: bool) -> torch.Tensor:
    """Mean-pooled encoder outputs, in the split's order (fp32, on the CPU)."""
    model.encoder.eval()
    out = torch.empty(len(tokens), model.encoder.config.hidden_size)
    for index in sequential_batches(len(tokens), batch_size, tokens.lengths):
        b = collate(tokens, index)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            pooled = model.pool(b["input_ids"].to(device), b["attention_mask"].to(device))
        out[index] = pooled.float().cpu()
    return out


def _read_cached(path: Path, rows: int, width: int) -> torch.Tensor | None:
    """The cached features, or None when missing or unusable (another version's file, a damaged disk)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file() or path.is_symlink():
        return None
    try:
        feats = load_file(str(path)).get("pooled")
    except (OSError, SafetensorError, ValueError, RuntimeError):
        return None
    return feats if feats is not None and tuple(feats.shape) == (rows, width) else None


STALE_PART_SECONDS = 3600


def sweep_stale_parts(folder: Path) -> None:
    """Remove our temp files (``.features.*.part``, plain files) left by a killed write an hour ago or more."""
    now = time.time()
    for part in folder.glob(".features.*.part"):
        try:
            st = part.lstat()
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass  # another process swept it first


def pooled_features(model, encoder_name: str, tokens: TokenizedSplit, cfg, device: torch.device) -> torch.Tensor:
    """Cached by encoder and exact token ids, so a loss sweep encodes each split once.

    A cache file appears only whole (temp file, then rename): a run killed while writing leaves a
    hidden ``.features.*.part`` that is never read, and is removed by the next write once it is an
    hour old (a live write takes seconds). Only a file at our own key name that cannot be used is
    replaced; a link or folder there is left alone and the features are not cached.
    """
    from safetensors.torch import save_file

    folder = cache_dir() / "features"
    key = features_key(encoder_name, tokens, cfg.bf16, weights_fingerprint(model.encoder))
    path = folder / f"{key}.safetensors"
    cached = _read_cached(path, len(tokens), model.encoder.config.hidden_size)
    if cached is not None:
        return cached
    feats = encode_pooled(model, tokens, cfg.eval_batch_size, device, cfg.bf16)
    if not owned(path, Path.is_file):
        return feats
    folder.mkdir(parents=True, exist_ok=True)
    sweep_stale_parts(folder)
    fd, tmp = tempfile.mkstemp(prefix=".features.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        save_file({"pooled": feats.contiguous()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return feats
