"""Check that a run folder is reproduced: same metrics, history, predictions and embeddings, and the
same out-of-domain results (``ood/<name>/metrics.json`` and ``predictions.csv``).

Wall-clock fields (``timings``, per-epoch seconds and speed) are the only ones left out. On the
machine that made a run the re-run is bit-identical. On another CPU the float kernels may round
differently (another instruction set, another BLAS code path), so every difference carries its
relative size: labels, counts and strings must match exactly, floats may be let through with
``rtol``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.study.run_files import OOD  # out-of-domain results, one folder a set (lib.training.out_of_domain)

CLOCK_COLUMNS = ("train_seconds", "sentences_per_second")
EMBEDDINGS = "test_embeddings.npy"


@dataclass(frozen=True)
class Difference:
    text: str
    relative: float | None = None  # size of a float difference; None: not a float (must match exactly)


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _metrics(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    metrics.pop("timings", None)
    return _flatten(metrics)


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), np.finfo(float).tiny)
    gap = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b) / scale)
    return float(np.nan_to_num(gap, nan=np.inf).max()) if gap.size else 0.0


def _is_float(v) -> bool:
    return isinstance(v, float) or (isinstance(v, list) and bool(v) and all(isinstance(x, (int, float)) and
                                                                              not isinstance(x, bool) for x in v)
                                     and any(isinstance(x, float) for x in v))


def _metric_differences(a: Path, b: Path, name: str = "metrics.json") -> list[Difference]:
    out = []
    ma, mb = _metrics(a / name), _metrics(b / name)
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key, "<missing>"), mb.get(key, "<missing>")
        if va == vb:
            continue
        text = f"{name} {key}: {va!r} != {vb!r}"
        if _is_float(va) and _is_float(vb) and np.shape(va) == np.shape(vb):
            rel = _relative(va, vb)
            out.append(Difference(f"{text} (relative {rel:.1e})", rel))
        else:
            out.append(Difference(text))
    return out


def _table_differences(name: str, fa: pd.DataFrame, fb: pd.DataFrame) -> list[Difference]:
    fa, fb = (f.drop(columns=[c for c in CLOCK_COLUMNS if c in f.columns]) for f in (fa, fb))
    if list(fa.columns) != list(fb.columns) or len(fa) != len(fb):
        return [Difference(f"{name}: columns or rows differ ({list(fa.columns)} x {len(fa)} vs "
                           f"{list(fb.columns)} x {len(fb)})")]
    out = []
    for col in fa.columns:
        ca, cb = fa[col], fb[col]
        if ca.equals(cb):
            continue
        if ca.dtype.kind == "f" and cb.dtype.kind == "f":
            rel = _relative(ca.to_numpy(), cb.to_numpy())
            n = int((~((ca == cb) | (ca.isna() & cb.isna()))).sum())
            out.append(Difference(f"{name} column {col}: {n} value(s) differ (relative {rel:.1e})", rel))
        else:
            n = int((ca.astype(str) != cb.astype(str)).sum())
            out.append(Difference(f"{name} column {col}: {n} value(s) differ"))
    return out


def differences(original: str | Path, again: str | Path) -> list[Difference]:
    """Every difference between a run folder and its re-run, each with its relative size if a float."""
    a, b = Path(original), Path(again)
    out = _metric_differences(a, b)
    for name in ("history.csv", "predictions.csv"):
        out += _file_differences(a, b, name)
    for name in _ood_files(a, b):
        out += _file_differences(a, b, name)
    # Embeddings are never committed with published runs: compared when the original has them.
    if (a / EMBEDDINGS).exists():
        if not (b / EMBEDDINGS).exists():
            out.append(Difference(f"{EMBEDDINGS}: only in the original"))
        else:
            ea, eb = (np.load(p / EMBEDDINGS, allow_pickle=False) for p in (a, b))
            if ea.shape != eb.shape:
                out.append(Difference(f"{EMBEDDINGS}: shapes differ ({ea.shape} vs {eb.shape})"))
            elif not np.array_equal(ea, eb):
                rel = _relative(ea, eb)
                out.append(Difference(f"{EMBEDDINGS}: arrays differ (relative {rel:.1e})", rel))
    return out


def _ood_files(a: Path, b: Path) -> list[str]:
    """The out-of-domain files of either run, relative to it: a set scored by one run only shows up."""
    sets = sorted({p.name for run in (a, b) for p in (run / OOD).glob("*") if p.is_dir()})
    return [f"{OOD}/{s}/{f}" for s in sets for f in ("metrics.json", "predictions.csv")]


def _file_differences(a: Path, b: Path, name: str) -> list[Difference]:
    """A JSON or CSV file of both runs compared, or that it is only in one of them."""
    there = [(p / name).exists() for p in (a, b)]
    if not any(there):
        return []
    if not all(there):
        return [Difference(f"{name}: only in {'the original' if there[0] else 'the new run'}")]
    if name.endswith(".json"):
        return _metric_differences(a, b, name)
    return _table_differences(name, *(pd.read_csv(p / name, dtype={"id": str}) for p in (a, b)))


def compare_runs(original: str | Path, again: str | Path, rtol: float = 0.0) -> list[str]:
    """The differences beyond ``rtol`` (empty when the second run reproduces the first)."""
    return [d.text for d in differences(original, again) if d.relative is None or d.relative > rtol]
