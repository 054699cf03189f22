from __future__ import annotations

import pandas as pd

from lib.data.datasets import DataBundle, load_dataset
from lib.data.leakage import drop_cross_split_duplicates, leakage_report


def _frame(texts, labels):
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts, "label": labels})


def test_leakage_report_on_a_known_bundle():
    b = DataBundle("toy", ["a", "b"], train=_frame(["x", "x", "y", "z"], [0, 0, 1, 1]),
                   valid=_frame(["y", "w"], [1, 0]), test=_frame(["x", "w", "v"], [1, 0, 0]))
    r = leakage_report(b)
    assert r["within_split"]["train"]["rows_with_duplicate_text"] == 2
    assert r["across_splits"]["train-valid"]["shared_texts"] == 1
    assert r["across_splits"]["train-test"]["test_rows_affected"] == 1
    assert r["across_splits"]["valid-test"]["shared_texts"] == 1
    assert r["conflicting_label_texts"] == 1 and r["conflicting_examples"] == ["x"]
    assert r["rows_seen_in_an_earlier_split"] == {"valid": 1, "test": 2}
    d = drop_cross_split_duplicates(b)
    assert d.valid["text"].tolist() == ["w"] and d.test["text"].tolist() == ["v"]
    assert d.notes["dropped_cross_split_duplicates"] == {"valid": 1, "test": 2}


def test_a_test_row_shared_with_train_and_valid_counts_once():
    b = DataBundle("toy", ["a", "b"], train=_frame(["x", "y"], [0, 1]), valid=_frame(["x", "z"], [0, 1]),
                   test=_frame(["x", "q"], [0, 1]))
    r = leakage_report(b)
    pairwise = r["across_splits"]["train-test"]["test_rows_affected"] + r["across_splits"]["valid-test"]["test_rows_affected"]
    assert pairwise == 2 and r["rows_seen_in_an_earlier_split"]["test"] == 1


def test_ko6_has_the_documented_duplicates_and_conflicts(shared_data):
    r = leakage_report(load_dataset("ko6", root=shared_data, download=False))
    assert r["conflicting_label_texts"] == 4
    shared = sum(v["shared_texts"] for v in r["across_splits"].values())
    within = sum(v["distinct_duplicated_texts"] for v in r["within_split"].values())
    assert shared > 0 and within > 0
    # 32 distinct test rows share a text with train or valid (27 + 6 = 33 pairwise: one is in both).
    assert r["rows_seen_in_an_earlier_split"]["test"] == 32
