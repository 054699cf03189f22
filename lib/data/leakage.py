"""Leakage report: exact duplicate texts within and across splits, and conflicting labels."""
from __future__ import annotations

from itertools import combinations

import pandas as pd

from lib.data.datasets import SPLITS, DataBundle, texts_shareable


def leakage_report(bundle: DataBundle) -> dict:
    """Counts a reader needs before trusting test scores (texts compared after stripping), and up to five
    texts with conflicting labels: their ids (``split:id``, every row of each), and the texts themselves only
    where the data set's terms allow redistribution (``texts_shareable``: the report is published)."""
    report: dict = {"dataset": bundle.name, "within_split": {}, "across_splits": {}}
    for s in SPLITS:
        texts = bundle.split(s)["text"]
        dup = texts.duplicated(keep=False)
        report["within_split"][s] = {
            "rows_with_duplicate_text": int(dup.sum()),
            "distinct_duplicated_texts": int(texts[dup].nunique()),
        }
    for a, b in combinations(SPLITS, 2):
        shared = set(bundle.split(a)["text"]) & set(bundle.split(b)["text"])
        report["across_splits"][f"{a}-{b}"] = {
            "shared_texts": len(shared),
            f"{b}_rows_affected": int(bundle.split(b)["text"].isin(shared).sum()),
        }
    # Distinct rows of a split whose text occurs in any earlier split: the pairwise counts above
    # count a test row shared with both train and valid twice.
    seen: set = set()
    report["rows_seen_in_an_earlier_split"] = {}
    for s in SPLITS:
        texts = bundle.split(s)["text"]
        if seen:
            report["rows_seen_in_an_earlier_split"][s] = int(texts.isin(seen).sum())
        seen |= set(texts)
    allrows = pd.concat([bundle.split(s).assign(row=lambda f, s=s: s + ":" + f["id"]) for s in SPLITS],
                        ignore_index=True)
    n_labels = allrows.groupby("text")["label"].nunique()
    conflicting = n_labels[n_labels > 1]
    report["conflicting_label_texts"] = int(len(conflicting))
    examples = sorted(conflicting.index[:5].tolist())
    rows = allrows[allrows["text"].isin(examples)]
    report["conflicting_example_ids"] = [sorted(rows.loc[rows["text"] == t, "row"]) for t in examples]
    if texts_shareable(bundle.name):
        report["conflicting_examples"] = examples
    return report


def leakage_table(report: dict) -> pd.DataFrame:
    """The report as a flat two-column table for display."""
    rows = [(f"{s}: rows with a duplicate text", v["rows_with_duplicate_text"]) for s, v in report["within_split"].items()]
    for pair, v in report["across_splits"].items():
        rows += [(f"{pair}: {k.replace('_', ' ')}", n) for k, n in v.items()]
    rows += [(f"{s}: distinct rows whose text is in an earlier split", n)
             for s, n in report.get("rows_seen_in_an_earlier_split", {}).items()]
    rows.append(("texts with conflicting labels", report["conflicting_label_texts"]))
    return pd.DataFrame(rows, columns=["check", "count"])


def drop_cross_split_duplicates(bundle: DataBundle) -> DataBundle:
    """Remove from valid and test every text seen in an earlier split (train, then valid)."""
    seen = set(bundle.train["text"])
    valid = bundle.valid[~bundle.valid["text"].isin(seen)].reset_index(drop=True)
    seen |= set(valid["text"])
    test = bundle.test[~bundle.test["text"].isin(seen)].reset_index(drop=True)
    notes = dict(bundle.notes, dropped_cross_split_duplicates={
        "valid": len(bundle.valid) - len(valid), "test": len(bundle.test) - len(test)})
    return DataBundle(bundle.name, bundle.class_names, bundle.train, valid, test, bundle.language, notes)
