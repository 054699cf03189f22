"""Yours against published: one row per method, the interval over the published seeds decides 'inside'."""
from __future__ import annotations

import json

import pandas as pd

from lib.study.compare import compare, format_comparison, write_comparison

COLS = ["method", "rule", "primary", "seeds", "macro_f1", "macro_f1_lo", "macro_f1_hi"]


def _summary(folder, rows):
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=COLS).to_csv(folder / "summary.csv", index=False)


def test_compare_marks_inside_outside_and_missing(tmp_path):
    _summary(tmp_path / "pub", [["ce=1.0", "head", True, 5, 0.70, 0.68, 0.72],
                                ["ce=1.0", "centroid", False, 5, 0.10, 0.05, 0.15],
                                ["triplet=1.0", "centroid", True, 5, 0.60, 0.58, 0.62],
                                ["tfidf-lr", "head", True, 1, 0.50, float("nan"), float("nan")]])
    _summary(tmp_path / "mine", [["ce=1.0", "head", True, 2, 0.71, 0.60, 0.80],
                                 ["triplet=1.0", "centroid", True, 2, 0.50, 0.40, 0.60],
                                 ["tfidf-lr", "head", True, 1, 0.50, float("nan"), float("nan")],
                                 ["supcon=1.0", "centroid", True, 2, 0.40, 0.30, 0.50]])
    t = compare(tmp_path / "mine", tmp_path / "pub").set_index("method")
    assert list(t.index) == ["ce=1.0", "triplet=1.0", "supcon=1.0", "tfidf-lr"]  # reading order
    assert t.loc["ce=1.0", "published"] == 0.70 and t.loc["ce=1.0", "difference"] == 0.01  # the primary rule
    assert bool(t.loc["ce=1.0", "inside_published_interval"]) is True
    assert bool(t.loc["triplet=1.0", "inside_published_interval"]) is False
    assert pd.isna(t.loc["tfidf-lr", "inside_published_interval"])  # one published run: no interval
    assert pd.isna(t.loc["supcon=1.0", "published"]) and pd.isna(t.loc["supcon=1.0", "inside_published_interval"])
    text = format_comparison(t.reset_index())
    assert "CE  " in text and "0.710 (n=2)" in text and "0.700 [0.680, 0.720] (n=5)" in text and "NO" in text
    paths = write_comparison(t.reset_index(), tmp_path / "mine", tmp_path / "mine", tmp_path / "pub")
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert [m["method"] for m in doc["methods"]][:2] == ["ce=1.0", "triplet=1.0"]
    assert doc["methods"][0]["yours_seeds"] == 2 and doc["methods"][2]["published"] is None
    assert list(pd.read_csv(paths["csv"]).columns) == sorted(pd.read_csv(paths["csv"]).columns)
