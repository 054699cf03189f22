"""A split redrawn per seed, so that a study's test sentences grow with its seeds.

With one fixed split, the test sentences every seed shares put a floor under a comparison's standard
error that no number of seeds removes (`ko6`: 900 sentences, results/study2-design/power.md). Redrawn
per seed, each seed is scored on a test set of its own and the floor averages away. What stays fixed is
the validation split: it chose every epoch and every tuned recipe (lib.study.tuning), so none of its
sentences may reach a test set. The test set of seed s is a stratified draw, of the original test
set's size, from the training and test sentences pooled (random_state = s); the rest is training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from lib.data.datasets import DataBundle, ids_digest


def resplit(bundle: DataBundle, seed: int) -> DataBundle:
    """``bundle`` with its test set redrawn for ``seed``: validation unchanged; test and training drawn from
    their pooled rows (stratified by label, test of the original size); rows keep their pooled order."""
    pool = pd.concat([bundle.train, bundle.test], ignore_index=True)
    labels = pool["label"].to_numpy()
    strat = labels if np.bincount(labels).min() >= 2 else None  # a class with one row cannot be stratified
    train_idx, test_idx = train_test_split(np.arange(len(pool)), test_size=len(bundle.test), stratify=strat,
                                           random_state=seed)
    train = pool.iloc[np.sort(train_idx)].reset_index(drop=True)
    test = pool.iloc[np.sort(test_idx)].reset_index(drop=True)
    notes = dict(bundle.notes, resplit={"seed": seed, "pool": len(pool), "test": len(test),
                                        "test_ids_sha256": ids_digest(test["id"]),
                                        "from_original_test": int(test["id"].isin(bundle.test["id"]).sum())})
    return DataBundle(bundle.name, bundle.class_names, train, bundle.valid, test, bundle.language, notes)
