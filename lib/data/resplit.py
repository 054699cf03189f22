"""A split redrawn per seed, so that a study's test sentences grow with its seeds.

With one fixed split, the test sentences every seed shares put a floor under a comparison's standard
error that no number of seeds removes (`ko6`: 900 sentences, results/study2-design/power.md). Redrawn
per seed, each seed is scored on a test set of its own and the floor averages down to what the pool of
training and test sentences itself shares (about a third of it on `ko6`). What stays fixed is
the validation split: it chose every epoch and every tuned recipe (lib.study.tuning), so none of its
rows may reach a test set. The test set of seed s is a stratified draw, of about the original test
set's size, from the training and test sentences pooled (random_state = s), whole texts at a time;
the rest is training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from lib.data.datasets import DataBundle, ids_digest


def resplit(bundle: DataBundle, seed: int) -> DataBundle:
    """``bundle`` with its test set redrawn for ``seed``: validation unchanged; test and training drawn from
    their pooled rows, stratified by label, the test set of about the original size; rows keep their pooled
    order. Rows with the same text move together (EmpatheticDialogues' own splits keep duplicates in one
    split, ko6's does not, with 27 texts in both its training and test sets; drawn row by row, a seed's test
    set would hold sentences its training set has seen), so the test set may differ from the original size by
    a few rows. Stratification is dropped where a class has a single text."""
    pool = pd.concat([bundle.train, bundle.test], ignore_index=True)
    key = pool["text"].str.strip()
    units = pool.groupby(key, sort=False).agg(label=("label", "first"), rows=("label", "size"))
    counts = np.unique(units["label"], return_counts=True)[1]
    strat = units["label"].to_numpy() if counts.min() >= 2 else None  # a class of one text cannot be stratified
    share = len(bundle.test) / len(pool)
    _, test_units = train_test_split(units.index.to_numpy(), test_size=max(1, round(share * len(units))),
                                     stratify=strat, random_state=seed)
    in_test = key.isin(set(test_units)).to_numpy()
    train = pool[~in_test].reset_index(drop=True)
    test = pool[in_test].reset_index(drop=True)
    notes = dict(bundle.notes, resplit={"seed": seed, "pool": len(pool), "test": len(test),
                                        "test_ids_sha256": ids_digest(test["id"]),
                                        "from_original_test": int(test["id"].isin(bundle.test["id"]).sum()),
                                        "grouped_by_text": True})
    return DataBundle(bundle.name, bundle.class_names, train, bundle.valid, test, bundle.language, notes)
