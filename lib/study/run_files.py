"""Reading a study's run folders for the statistics: each run's test predictions and the data
set's class count. The only disk I/O of the comparisons; ``lib.evaluation`` computes on arrays."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def load_primary_predictions(runs: pd.DataFrame, method: str, ids: np.ndarray | None = None,
                             rule: str | None = None) -> dict[int, np.ndarray]:
    """seed -> test predictions of the primary rule (or of ``rule``), rows in id order (as every run
    writes them).

    With ``ids``, every run must have predicted exactly those sentences: a paired test over
    different test sets would be meaningless.
    """
    out = {}
    chosen = runs["primary"] if rule is None else runs["rule"] == rule
    sub = runs[(runs["method"] == method) & (runs["split"] == "test") & chosen]
    for _, r in sub.iterrows():
        frame = pd.read_csv(Path(r["run_path"]) / "predictions.csv", dtype={"id": str})
        if ids is not None and not np.array_equal(frame["id"].to_numpy(), ids):
            raise ValueError(f"{r['run_path']} predicted other test sentences than the baseline run; "
                             "paired comparisons need one test set (same data set and --max-eval-samples)")
        out[int(r["seed"])] = frame[f"pred_{r['rule']}"].to_numpy()
    return out


def reference_test_set(runs: pd.DataFrame, baseline: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(test labels, sentence ids, class count) from the baseline's first test run: the test set
    every compared run must have predicted."""
    first = runs[(runs["method"] == baseline) & (runs["split"] == "test")]["run_path"]
    if first.empty:
        raise ValueError(f"no test runs of {baseline}")
    reference = pd.read_csv(Path(first.iloc[0]) / "predictions.csv", dtype={"id": str})
    return reference["label"].to_numpy(), reference["id"].to_numpy(), n_classes_of(first.iloc[0])


def n_classes_of(run_path) -> int | None:
    """The data set's class count, from a run's metrics.json (``data.class_names``); None if absent."""
    try:
        names = json.loads((Path(run_path) / "metrics.json").read_text(encoding="utf-8"))["data"]["class_names"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return len(names) if isinstance(names, list) and names else None

