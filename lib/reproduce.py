"""Check that a run folder is reproduced exactly: same metrics, history, predictions and embeddings.

Wall-clock fields (``timings``, per-epoch seconds and speed) are the only ones left out.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CLOCK_COLUMNS = ("train_seconds", "sentences_per_second")


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _metrics(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("timings", None)
    return _flatten(metrics)


def compare_runs(original: str | Path, again: str | Path) -> list[str]:
    """The differences between two run folders (empty when the second reproduces the first)."""
    a, b = Path(original), Path(again)
    diffs = []
    ma, mb = _metrics(a), _metrics(b)
    for key in sorted(set(ma) | set(mb)):
        if ma.get(key, "<missing>") != mb.get(key, "<missing>"):
            diffs.append(f"metrics.json {key}: {ma.get(key, '<missing>')!r} != {mb.get(key, '<missing>')!r}")
    for name in ("history.csv", "predictions.csv"):
        if (a / name).exists() or (b / name).exists():
            fa, fb = (pd.read_csv(p / name) if (p / name).exists() else None for p in (a, b))
            if fa is None or fb is None:
                diffs.append(f"{name}: only in {'the original' if fb is None else 'the new run'}")
                continue
            fa, fb = (f.drop(columns=[c for c in CLOCK_COLUMNS if c in f.columns]) for f in (fa, fb))
            if not fa.equals(fb):
                diffs.append(f"{name}: contents differ")
    name = "test_embeddings.npy"
    if (a / name).exists() or (b / name).exists():
        if not ((a / name).exists() and (b / name).exists()):
            diffs.append(f"{name}: only in one of the runs")
        else:
            ea, eb = (np.load(p / name, allow_pickle=False) for p in (a, b))
            if ea.shape != eb.shape or not np.array_equal(ea, eb):
                diffs.append(f"{name}: arrays differ")
    return diffs
