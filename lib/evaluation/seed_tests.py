"""Intervals and paired t-tests over training seeds, the test set held fixed.

``summarize``: each method's mean and Student-t interval over seeds; ``paired_seed_test`` /
``fixed_vs_seeds_t_test``: the t view of "method minus baseline" (inference about the training
procedure *evaluated on this test set*; sentence sampling is not in the interval, see
``lib.evaluation.bootstrap`` for the view that has it). Every function reads a runs table (one row
per run, split and rule), never files.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval over seeds (a single seed gives an interval of NaN)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = st.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return m, float(m - half), float(m + half)


def summarize(table: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per (method, rule): seeds, mean and 95% interval of macro-F1 and accuracy, and the
    mean validation macro-F1 (what a choice between methods may look at)."""
    rows = []
    sub = table[table["split"] == split]
    valid = table[table["split"] == "valid"].groupby(["method", "rule"])["macro_f1"].mean()
    for (method, rule), g in sub.groupby(["method", "rule"], sort=True):
        f1, f1_lo, f1_hi = mean_ci(g["macro_f1"])
        acc, acc_lo, acc_hi = mean_ci(g["accuracy"])
        rows.append({"method": method, "rule": rule, "primary": bool(g["primary"].all()), "seeds": len(g),
                     "macro_f1": f1, "macro_f1_lo": f1_lo, "macro_f1_hi": f1_hi,
                     "accuracy": acc, "accuracy_lo": acc_lo, "accuracy_hi": acc_hi,
                     "valid_macro_f1": float(valid.get((method, rule), np.nan))})
    return pd.DataFrame(rows).sort_values(["method", "rule"]).reset_index(drop=True)


def paired_seed_test(table: pd.DataFrame, method: str, baseline: str, split: str = "test",
                     rule: str | None = None, baseline_rule: str | None = None) -> dict:
    """Paired t-test of macro-F1 over the seeds both methods ran, each scored by its primary rule
    (or by ``rule`` / ``baseline_rule``)."""
    sub = table[table["split"] == split]

    def scores(m, r):
        return sub[(sub["method"] == m) & (sub["primary"] if r is None else sub["rule"] == r)].set_index("seed")[
            "macro_f1"]

    a, b = scores(method, rule), scores(baseline, baseline_rule)
    seeds = sorted(set(a.index) & set(b.index))
    d = (a.loc[seeds] - b.loc[seeds]).to_numpy()
    mean, lo, hi = mean_ci(d)
    p = _t_p(d, lambda: st.ttest_rel(a.loc[seeds], b.loc[seeds]).pvalue)
    return {"seeds": len(seeds), "diff": mean, "diff_lo": lo, "diff_hi": hi, "p_ttest": p}


def _t_p(d: np.ndarray, t_test) -> float:
    """``t_test()``'s p-value for the differences ``d`` (a t-test of their mean against 0). Without spread t
    is 0/0 or ±inf: every difference 0 (the same runs, e.g. a tuned recipe that is the Study 1 recipe) gives
    p = 1, so the comparison stays in its Holm family (scipy's NaN would leave it out and make the others'
    adjusted p-values smaller); all equal and not 0 gives 0, the t-test's own limit (scipy's answer for an
    exact tie, a rounding-noise p for a near one), continuous with nearly equal differences, whose t p is
    tiny too. Such ties come from the few values macro-F1 takes on small sets, so the t view alone says
    little there: "significant" also needs the two-level bootstrap's p (PROTOCOL.md amendment 4), which
    resamples the sentences. Fewer than two: NaN (no t view)."""
    if len(d) < 2:
        return float("nan")
    if np.all(np.abs(d) <= 1e-12):
        return 1.0
    return float(t_test()) if d.std() > 1e-12 else 0.0


def fixed_vs_seeds_t_test(table: pd.DataFrame, method: str, baseline: str, split: str = "test") -> dict:
    """The t view for a deterministic method (one run): t over the baseline's seeds of
    macro-F1(method) - macro-F1(baseline, seed s), the method held fixed; the same keys as
    ``paired_seed_test`` (``seeds``: the baseline's). Compares with the baseline's mean over its
    seeds, never with its seed 0 alone."""
    sub = table[(table["split"] == split) & table["primary"]]
    fixed = sub.loc[sub["method"] == method, "macro_f1"].to_numpy()
    if len(fixed) != 1:
        raise ValueError(f"{method}: a deterministic method has one run, found {len(fixed)}")
    d = fixed[0] - sub.loc[sub["method"] == baseline].sort_values("seed")["macro_f1"].to_numpy()
    mean, lo, hi = mean_ci(d)
    p = _t_p(d, lambda: st.ttest_1samp(d, 0.0).pvalue)
    return {"seeds": len(d), "diff": mean, "diff_lo": lo, "diff_hi": hi, "p_ttest": p}

