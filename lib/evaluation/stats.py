"""Honest comparisons: intervals over seeds, paired tests over seeds, paired bootstrap on predictions."""
from __future__ import annotations

from pathlib import Path

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


def paired_seed_test(table: pd.DataFrame, method: str, baseline: str, split: str = "test") -> dict:
    """Paired t-test of primary-rule macro-F1 over the seeds both methods ran."""
    sub = table[(table["split"] == split) & table["primary"]]
    a = sub[sub["method"] == method].set_index("seed")["macro_f1"]
    b = sub[sub["method"] == baseline].set_index("seed")["macro_f1"]
    seeds = sorted(set(a.index) & set(b.index))
    d = (a.loc[seeds] - b.loc[seeds]).to_numpy()
    mean, lo, hi = mean_ci(d)
    p = float(st.ttest_rel(a.loc[seeds], b.loc[seeds]).pvalue) if len(seeds) >= 2 and d.std() > 1e-12 else float("nan")
    return {"seeds": len(seeds), "diff": mean, "diff_lo": lo, "diff_hi": hi, "p_ttest": p}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """sklearn's macro-F1 (labels = classes present in y_true or y_pred), via one bincount: fast enough
    for thousands of bootstrap replicates."""
    k = int(max(y_true.max(), y_pred.max())) + 1
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1[present].mean())


def paired_bootstrap(preds_a: list[np.ndarray], preds_b: list[np.ndarray], y: np.ndarray, n_boot: int = 1000,
                     random_state: int = 0) -> dict:
    """Bootstrap over test sentences of the seed-averaged macro-F1 difference (a - b).

    The same resampled sentences are used for every seed and both methods, so the test is
    paired twice: over sentences and over seeds. Two-sided p = 2 * min(P(d<=0), P(d>=0)).
    """
    rng = np.random.default_rng(random_state)
    n = len(y)
    f1 = macro_f1
    observed = np.mean([f1(y, a) - f1(y, b) for a, b in zip(preds_a, preds_b)])
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, n, n)
        diffs[i] = np.mean([f1(y[idx], a[idx]) - f1(y[idx], b[idx]) for a, b in zip(preds_a, preds_b)])
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": float(observed), "boot_lo": float(lo), "boot_hi": float(hi), "p_bootstrap": float(min(p, 1.0))}


def load_primary_predictions(runs: pd.DataFrame, method: str, ids: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """seed -> test predictions of the primary rule, rows in id order (as every run writes them).

    With ``ids``, every run must have predicted exactly those sentences: a paired test over
    different test sets would be meaningless.
    """
    out = {}
    sub = runs[(runs["method"] == method) & (runs["split"] == "test") & runs["primary"]]
    for _, r in sub.iterrows():
        frame = pd.read_csv(Path(r["run_path"]) / "predictions.csv", dtype={"id": str})
        if ids is not None and not np.array_equal(frame["id"].to_numpy(), ids):
            raise ValueError(f"{r['run_path']} predicted other test sentences than the baseline run; "
                             "paired comparisons need one test set (same data set and --max-eval-samples)")
        out[int(r["seed"])] = frame[f"pred_{r['rule']}"].to_numpy()
    return out


def compare_to_baseline(runs: pd.DataFrame, baseline: str, n_boot: int = 1000, random_state: int = 0) -> pd.DataFrame:
    """Each method against ``baseline``: paired over seeds and paired bootstrap on predictions."""
    rows = []
    first = runs[(runs["method"] == baseline) & (runs["split"] == "test")]["run_path"]
    if first.empty:
        return pd.DataFrame()
    reference = pd.read_csv(Path(first.iloc[0]) / "predictions.csv", dtype={"id": str})
    y, ids = reference["label"].to_numpy(), reference["id"].to_numpy()
    base = load_primary_predictions(runs, baseline, ids)
    for method in sorted(set(runs["method"]) - {baseline}):
        mine = load_primary_predictions(runs, method, ids)
        seeds = sorted(set(mine) & set(base))
        if not seeds:
            continue
        row = {"method": method, "baseline": baseline, **paired_seed_test(runs, method, baseline)}
        row.update(paired_bootstrap([mine[s] for s in seeds], [base[s] for s in seeds], y, n_boot, random_state))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("method").reset_index(drop=True) if rows else pd.DataFrame()
