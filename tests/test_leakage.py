from __future__ import annotations

import json

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
    assert r["conflicting_example_ids"] == [["test:r0", "train:r0", "train:r1"]]
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


def test_the_report_of_a_set_that_may_not_be_redistributed_names_rows_by_id_only():
    """ko6's terms forbid redistribution, and every run folder publishes its leakage.json."""
    from dataclasses import replace

    b = DataBundle("toy", ["a", "b"], train=_frame(["x", "y"], [0, 1]), valid=_frame(["x"], [1]),
                   test=_frame(["q"], [0]))
    ko = leakage_report(replace(b, name="ko6"))
    assert "conflicting_examples" not in ko and ko["conflicting_example_ids"] == [["train:r0", "valid:r0"]]
    assert '"x"' not in json.dumps(ko)
    assert {k: v for k, v in leakage_report(b).items() if k not in ("dataset", "conflicting_examples")} == {
        k: v for k, v in ko.items() if k != "dataset"}


def test_examples_of_a_set_that_may_not_be_redistributed_show_ids_unless_asked():
    from dataclasses import replace

    from lib.data.exploration import examples_per_class

    b = DataBundle("toy", ["a", "b"], train=_frame(["x1", "x2", "y1", "y2"], [0, 0, 1, 1]),
                   valid=_frame(["v"], [0]), test=_frame(["t"], [1]))
    shown = examples_per_class(b, 2)
    assert sorted(shown["text"]) == ["x1", "x2", "y1", "y2"]
    hidden = examples_per_class(replace(b, name="ko6"), 2)
    assert hidden["id"].tolist() == shown["id"].tolist() and hidden["text"].str.startswith("(not shown").all()
    assert examples_per_class(replace(b, name="ko6"), 2, show_texts=True).equals(shown)
    assert examples_per_class(b, 2, show_texts=False)["text"].str.startswith("(not shown").all()
