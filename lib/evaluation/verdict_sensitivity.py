"""How firmly a margin verdict stands: against the bootstrap's own random draws (the same data,
other RNG seeds) and against single training seeds (leave one seed out).

Both are descriptions beside the protocol's verdict, not rules of it: the verdict is the one of
the published bootstrap draw on every seed (PROTOCOL.md). A verdict whose deciding bound lies
within the spread of re-drawn bounds around 0 or the claimed gain could have come out otherwise
by the bootstrap's chance alone; one that changes when a single seed is left out rests on that seed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lib.evaluation.bootstrap import split_bootstrap, two_level_bootstrap
from lib.evaluation.margin import protocol_verdict

COLUMNS = ["diff", "lo", "hi", "verdict"]


def margin_verdict(a, b, y, delta: float, *, n_boot: int = 10_000, random_state: int = 0,
                   n_classes: int | None = None, level: float = 0.90) -> dict:
    """The protocol's verdict on paired (S, n) predictions ``a`` and ``b`` against a claimed gain
    ``delta``: the two-level bootstrap (``random_state``) and the t interval over the S per-seed
    differences, decided on the union of their intervals (``protocol_verdict``). Returns diff
    (point estimate), lo, hi (the union interval) and verdict. ``y`` a list (one test set per seed, a
    study whose seeds each have their own split): ``a``, ``b`` lists too, and ``split_bootstrap``."""
    boot = split_bootstrap if isinstance(y, list) else two_level_bootstrap
    res = boot(a, b, y, n_boot=n_boot, random_state=random_state, return_replicates=True, n_classes=n_classes)
    *_, both = protocol_verdict(res, delta, level)
    return {"diff": res["diff"], "lo": both["lo"], "hi": both["hi"], "verdict": both["verdict"]}


def bootstrap_redraws(a, b, y, delta: float, *, repeats: int = 10, random_state: int = 0, n_boot: int = 10_000,
                      n_classes: int | None = None, level: float = 0.90) -> pd.DataFrame:
    """``margin_verdict`` again with ``repeats`` other bootstrap RNG seeds, random_state + 1, ...,
    random_state + repeats, the data unchanged: one row per draw (random_state, diff, lo, hi,
    verdict). Only the bootstrap's bounds move; where the t interval's bound is the union's, that
    bound does not."""
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 0:
        raise ValueError(f"repeats (bootstrap re-draws) must be a whole number >= 0, got {repeats!r}")
    rows = [{"random_state": random_state + i,
             **margin_verdict(a, b, y, delta, n_boot=n_boot, random_state=random_state + i, n_classes=n_classes,
                              level=level)} for i in range(1, repeats + 1)]
    return pd.DataFrame(rows, columns=["random_state", *COLUMNS])


def leave_one_seed_out(a, b, y, delta: float, *, seeds=None, n_boot: int = 10_000, random_state: int = 0,
                       n_classes: int | None = None, level: float = 0.90) -> pd.DataFrame:
    """``margin_verdict`` on every S - 1 of the S paired seeds (the same bootstrap RNG seed): one row
    per left-out seed (left_out: its label from ``seeds``, default 0..S-1; seeds: how many remain;
    diff, lo, hi, verdict). Empty below 3 seeds: resampling seeds needs 2 that remain."""
    own_splits = isinstance(y, list)  # one test set per seed: keep lists, drop the seed's test set too
    if not own_splits:
        a, b = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    s = len(a)
    labels = list(range(s)) if seeds is None else list(seeds)
    if len(labels) != s or len(b) != s or (own_splits and len(y) != s):
        raise ValueError(f"paired design: {s} seeds of a, {len(b)} of b, {len(labels)} seed labels")
    rows = []
    if s >= 3:
        for i, label in enumerate(labels):
            if own_splits:
                rest = [j for j in range(s) if j != i]
                left = ([a[j] for j in rest], [b[j] for j in rest], [y[j] for j in rest])
            else:
                keep = np.arange(s) != i
                left = (a[keep], b[keep], y)
            rows.append({"left_out": label, "seeds": s - 1,
                         **margin_verdict(*left, delta, n_boot=n_boot, random_state=random_state,
                                          n_classes=n_classes, level=level)})
    return pd.DataFrame(rows, columns=["left_out", "seeds", *COLUMNS])


def spread(rows: pd.DataFrame, verdict: str) -> dict:
    """What re-computed verdicts say about the published ``verdict``: n (rows), same (share of rows
    with that verdict; NaN without rows), lo_/hi_ mean, sd (ddof 1; NaN below 2 rows), min, max of
    the union bounds, and ``changed``: the rows whose verdict differs (their index)."""
    nan = float("nan")
    out = {"n": len(rows), "same": float((rows["verdict"] == verdict).mean()) if len(rows) else nan,
           "changed": list(rows.index[rows["verdict"] != verdict])}
    for bound in ("lo", "hi"):
        v = rows[bound].to_numpy(dtype=float)
        out.update({f"{bound}_mean": float(v.mean()) if len(v) else nan,
                    f"{bound}_sd": float(v.std(ddof=1)) if len(v) >= 2 else nan,
                    f"{bound}_min": float(v.min()) if len(v) else nan,
                    f"{bound}_max": float(v.max()) if len(v) else nan})
    return out
