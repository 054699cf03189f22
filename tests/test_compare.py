"""Yours against published: one row per method; the prediction interval for a mean over your seeds,
built from the published seeds' interval, decides 'within'."""
from __future__ import annotations

import json

import pandas as pd

import numpy as np
import pytest
from scipy import stats as st

from lib.study.compare import compare, expected_range, format_comparison, write_comparison

COLS = ["method", "rule", "primary", "seeds", "macro_f1", "macro_f1_lo", "macro_f1_hi"]


def _summary(folder, rows):
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=COLS).to_csv(folder / "summary.csv", index=False)


def test_compare_marks_inside_outside_and_missing(tmp_path):
    _summary(tmp_path / "pub", [["ce=1.0", "head", True, 5, 0.70, 0.68, 0.72],
                                ["ce=1.0", "centroid", False, 5, 0.10, 0.05, 0.15],
                                ["triplet=1.0", "centroid", True, 5, 0.60, 0.58, 0.62],
                                ["ce=0.5+arcface=0.5", "centroid", True, 5, 0.70, 0.68, 0.72],
                                ["tfidf-lr", "head", True, 1, 0.50, float("nan"), float("nan")]])
    _summary(tmp_path / "mine", [["ce=1.0", "head", True, 2, 0.71, 0.60, 0.80],
                                 ["triplet=1.0", "centroid", True, 2, 0.50, 0.40, 0.60],
                                 ["ce=0.5+arcface=0.5", "centroid", True, 1, 0.735, float("nan"), float("nan")],
                                 ["tfidf-lr", "head", True, 1, 0.50, float("nan"), float("nan")],
                                 ["supcon=1.0", "centroid", True, 2, 0.40, 0.30, 0.50]])
    t = compare(tmp_path / "mine", tmp_path / "pub").set_index("method")
    # reading order (another weighting takes the place of the listed method with its parts: CE + ArcFace's)
    assert list(t.index) == ["ce=1.0", "triplet=1.0", "ce=0.5+arcface=0.5", "supcon=1.0", "tfidf-lr"]
    assert t.loc["ce=1.0", "published"] == 0.70 and t.loc["ce=1.0", "difference"] == 0.01  # the primary rule
    assert bool(t.loc["ce=1.0", "within_expected_range"]) is True
    assert bool(t.loc["triplet=1.0", "within_expected_range"]) is False
    # one seed at 0.735: outside the published interval [0.68, 0.72], yet within what one seed's
    # variation allows around the published mean
    assert bool(t.loc["ce=0.5+arcface=0.5", "within_expected_range"]) is True
    assert pd.isna(t.loc["tfidf-lr", "within_expected_range"])  # one published run: no interval
    assert pd.isna(t.loc["supcon=1.0", "published"]) and pd.isna(t.loc["supcon=1.0", "within_expected_range"])
    text = format_comparison(t.reset_index())
    assert "CE  " in text and "0.710 (n=2)" in text and "0.700 [0.680, 0.720] (n=5)" in text and "NO" in text
    assert "[0.663, 0.737]" in text  # ce: 0.70 +- 0.02 sqrt(1 + 5/2)
    paths = write_comparison(t.reset_index(), tmp_path / "mine", tmp_path / "mine", tmp_path / "pub")
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert [m["method"] for m in doc["methods"]][:2] == ["ce=1.0", "triplet=1.0"]
    assert doc["methods"][0]["yours_seeds"] == 2 and doc["methods"][3]["published"] is None  # supcon
    assert list(pd.read_csv(paths["csv"]).columns) == sorted(pd.read_csv(paths["csv"]).columns)


def _config(folder, **values):
    folder.mkdir(parents=True)
    base = {"method": "finetune", "epochs": 2, "patience": None, "bf16": False, "batch_size": 32}
    (folder / "config.json").write_text(json.dumps({**base, **values}))


def test_settings_that_differ_between_the_studies_are_named(tmp_path):
    from lib.study.compare import format_settings_differences, settings_differences

    mine, pub = tmp_path / "mine", tmp_path / "pub"
    for seed in (0, 1):
        _config(mine / "runs" / "ce1.0" / f"seed{seed}", bf16=True)
        _config(pub / "runs" / "ce1.0" / f"seed{seed}", epochs=15, patience=3)
    _config(mine / "runs" / "grid" / "ce0.6_triplet0.2_arcface0.2-frozen" / "seed0", epochs=10)  # grid and
    # baseline runs are not the study's budget
    _config(pub / "runs" / "tfidf-lr" / "seed0", method="tfidf-lr", epochs=0)
    _config(mine / "runs" / "triplet1.0" / "seed0.partial", batch_size=8)  # unfinished: not read
    diff = settings_differences(mine, pub)
    assert diff == {"epochs": {"yours": [2], "published": [15]}, "patience": {"yours": [None], "published": [3]},
                    "bf16": {"yours": [True], "published": [False]}}
    assert format_settings_differences(diff) == "epochs 2 against 15; patience null against 3; bf16 true against false"
    assert settings_differences(mine, mine) == {}
    _config(pub / "runs" / "ce1.0" / "seed2", epochs=15)  # a mix of null and 3 in one study
    assert settings_differences(mine, pub)["patience"] == {"yours": [None], "published": [3, None]}
    paths = write_comparison(pd.DataFrame(columns=["method"]), mine, mine, pub, settings=diff)
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["settings_differ"]["epochs"]["published"] == [15]


def test_expected_range_is_the_prediction_interval_and_covers_95_percent():
    """Closed form against mean +- t s sqrt(1/n_p + 1/n_y); and by simulation (normal seeds, 4000
    repetitions, SE 0.0034) a new mean lands in it 95% of the time, while the published interval
    alone holds a 1-seed mean far less often."""
    rng = np.random.default_rng(3)
    pub = rng.normal(0.7, 0.02, 5)
    m, s, t = pub.mean(), pub.std(ddof=1), st.t.ppf(0.975, 4)
    lo, hi = m - t * s / np.sqrt(5), m + t * s / np.sqrt(5)
    e_lo, e_hi = expected_range(m, lo, hi, 5, 2)
    assert (e_lo, e_hi) == pytest.approx((m - t * s * np.sqrt(1 / 5 + 1 / 2), m + t * s * np.sqrt(1 / 5 + 1 / 2)))
    within = inside = 0
    reps = 4000
    for _ in range(reps):
        pub, mine = rng.normal(0.7, 0.02, 5), rng.normal(0.7, 0.02, 1).mean()
        m, half = pub.mean(), t * pub.std(ddof=1) / np.sqrt(5)
        e_lo, e_hi = expected_range(m, m - half, m + half, 5, 1)
        within += e_lo <= mine <= e_hi
        inside += m - half <= mine <= m + half
    assert abs(within / reps - 0.95) < 0.012 and inside / reps < 0.75
