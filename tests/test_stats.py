"""Intervals and paired tests behave as their definitions say."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from lib.evaluation.stats import compare_to_baseline, mean_ci, paired_bootstrap, paired_seed_test, summarize


def test_mean_ci_is_the_student_t_interval():
    v = [0.61, 0.64, 0.66, 0.62]
    m, lo, hi = mean_ci(v)
    ref = st.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=st.sem(v))
    assert m == pytest.approx(np.mean(v)) and (lo, hi) == pytest.approx(ref)
    assert np.isnan(mean_ci([0.5])[1])


def test_paired_bootstrap_identical_methods_and_a_clearly_better_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    noisy = [np.where(rng.random(300) < 0.5, y, rng.integers(0, 3, 300)) for _ in range(3)]
    same = paired_bootstrap(noisy, noisy, y, n_boot=200)
    assert same["diff"] == 0 and same["p_bootstrap"] == 1.0
    better = [np.where(rng.random(300) < 0.9, y, rng.integers(0, 3, 300)) for _ in range(3)]
    res = paired_bootstrap(better, noisy, y, n_boot=200)
    assert res["diff"] > 0.2 and res["p_bootstrap"] < 0.01 and res["boot_lo"] > 0


def _runs(tmp_path, methods, ids_for=None):
    rows = []
    y = np.array([0, 1, 2, 0, 1, 2])
    for method, preds in methods.items():
        for seed, p in enumerate(preds):
            folder = tmp_path / method / f"seed{seed}"
            folder.mkdir(parents=True)
            ids = (ids_for or {}).get(method, [f"r{i}" for i in range(6)])
            pd.DataFrame({"id": ids, "label": y, "pred_head": p}).to_csv(folder / "predictions.csv", index=False)
            f1 = float(np.mean(np.array(p) == y))
            rows.append({"method": method, "seed": seed, "split": "test", "rule": "head", "primary": True,
                         "macro_f1": f1, "accuracy": f1, "run_path": str(folder)})
    return pd.DataFrame(rows)


def test_paired_seed_test_and_summary(tmp_path):
    runs = _runs(tmp_path, {"ce": [[0, 1, 2, 0, 1, 1], [0, 1, 1, 0, 1, 1]],
                            "new": [[0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 1]]})
    t = paired_seed_test(runs, "new", "ce")
    assert t["seeds"] == 2 and t["diff"] == pytest.approx(1 / 6)
    s = summarize(runs)
    assert list(s["method"]) == ["ce", "new"] and (s["seeds"] == 2).all()
    comp = compare_to_baseline(runs, "ce", n_boot=50)
    assert list(comp["method"]) == ["new"] and comp["diff"].iloc[0] > 0


def test_comparison_refuses_different_test_sets(tmp_path):
    runs = _runs(tmp_path, {"ce": [[0, 1, 2, 0, 1, 1]], "new": [[0, 1, 2, 0, 1, 2]]},
                 ids_for={"new": [f"x{i}" for i in range(6)]})
    with pytest.raises(ValueError, match="other test sentences"):
        compare_to_baseline(runs, "ce", n_boot=10)
