"""Reading a study's run folders for the statistics: each run's test predictions and the data
set's class count, and the same for the out-of-domain sets a run scored (``ood/<name>/``, written
by ``lib.training.out_of_domain``). The only disk I/O of the comparisons; ``lib.evaluation``
computes on arrays."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

OOD = "ood"  # a run's out-of-domain results: ood/<name>/metrics.json and predictions.csv


def ood_folder(run_path, name: str) -> Path:
    return Path(run_path) / OOD / name


def load_primary_predictions(runs: pd.DataFrame, method: str, ids: np.ndarray | dict | None = None,
                             rule: str | None = None, ood: str | None = None,
                             labels: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """seed -> test predictions of the primary rule (or of ``rule``), rows in id order (as every run
    writes them); with ``ood``, the predictions on that out-of-domain set instead, of the runs that
    scored it.

    With ``ids``, every run must have predicted exactly those sentences: a paired test over
    different test sets would be meaningless. A dict (seed -> ids: a study whose every seed has a
    split of its own, ``reference_test_set``) holds each seed's runs to that seed's sentences. With
    ``ood``, ``ids`` and ``labels`` (``reference_ood_set``), the rows and their labels must be the
    baseline's: a user's set names its rows by row number, so an edited file has the same ids.
    """
    out = {}
    chosen = runs["primary"] if rule is None else runs["rule"] == rule
    sub = runs[(runs["method"] == method) & (runs["split"] == "test") & chosen]
    for _, r in sub.iterrows():
        folder = Path(r["run_path"]) if ood is None else ood_folder(r["run_path"], ood)
        if ood is not None and not (folder / "metrics.json").is_file():
            continue  # this run did not score the set (one that did and lost its predictions.csv fails below)
        frame = pd.read_csv(folder / "predictions.csv", dtype={"id": str})
        expected = ids
        if isinstance(ids, dict) and ood is None:
            if int(r["seed"]) not in ids:
                continue  # its own split, which no baseline run predicted: unpaired, as any seed the baseline lacks
            expected = ids[int(r["seed"])]
        same_rows = expected is None or np.array_equal(frame["id"].to_numpy(), expected)
        if ood is not None:
            if not (same_rows and (labels is None or np.array_equal(frame["label"].to_numpy(), labels))):
                raise ValueError(f"{folder / 'predictions.csv'}: other {ood} rows or labels than in the baseline's "
                                 "run; compare runs scored on one set (the same out-of-domain file and mapping)")
        elif not same_rows:
            raise ValueError(f"{r['run_path']} predicted other test sentences than the baseline run; "
                             "paired comparisons need one test set (same data set and --max-eval-samples)")
        out[int(r["seed"])] = frame[f"pred_{r['rule']}"].to_numpy()
    return out


def reference_test_set(runs: pd.DataFrame, baseline: str) -> tuple[np.ndarray | dict, np.ndarray | dict, int | None]:
    """(test labels, sentence ids, class count) from the baseline's first test run: the test set
    every compared run must have predicted. In a study whose every seed has a split of its own
    (``resplit``), labels and ids are dicts, seed -> that seed's baseline run's."""
    base = runs[(runs["method"] == baseline) & (runs["split"] == "test")]
    first = base["run_path"]
    if first.empty:
        raise ValueError(f"no test runs of {baseline}")
    if is_resplit(runs):
        frames = {int(seed): pd.read_csv(Path(g["run_path"].iloc[0]) / "predictions.csv", dtype={"id": str})
                  for seed, g in base.groupby("seed")}
        return ({s: f["label"].to_numpy() for s, f in frames.items()},
                {s: f["id"].to_numpy() for s, f in frames.items()}, n_classes_of(first.iloc[0]))
    reference = pd.read_csv(Path(first.iloc[0]) / "predictions.csv", dtype={"id": str})
    return reference["label"].to_numpy(), reference["id"].to_numpy(), n_classes_of(first.iloc[0])


def is_resplit(runs: pd.DataFrame) -> bool:
    """Whether the study's runs each have a split of their own seed (config ``resplit``, the runs table's
    column; a table without it, e.g. predictions without run folders, has none); refused when only some
    have: their comparisons would pair different designs."""
    if "resplit" not in runs.columns:
        return False
    flags = dict(zip(runs["run_path"], runs["resplit"].astype(bool)))
    if len(set(flags.values())) > 1:
        mixed = sorted(p for p, f in flags.items() if f)[:1] + sorted(p for p, f in flags.items() if not f)[:1]
        raise ValueError(f"runs with and without a split of their own seed in one study ({' and '.join(mixed)}); "
                         "keep resplit runs in a results folder of their own")
    return any(flags.values())


def n_classes_of(run_path) -> int | None:
    """The data set's class count, from a run's metrics.json (``data.class_names``); None if absent."""
    try:
        names = json.loads((Path(run_path) / "metrics.json").read_text(encoding="utf-8"))["data"]["class_names"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return len(names) if isinstance(names, list) and names else None


def ood_sets(runs: pd.DataFrame) -> list[str]:
    """The out-of-domain sets any run of ``runs`` scored (``ood/<name>/metrics.json``), sorted."""
    names = set()
    for path in runs["run_path"].unique():
        names.update(p.parent.name for p in (Path(path) / OOD).glob("*/metrics.json"))
    return sorted(names)


def ood_metrics(run_path, name: str) -> dict:
    return json.loads((ood_folder(run_path, name) / "metrics.json").read_text(encoding="utf-8"))


def ood_scores(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    """The test rows of ``runs`` whose run scored set ``name``, with split ``ood:<name>`` and that
    rule's macro-F1 and accuracy over the set's shared classes (its ``metrics.json``): a runs table
    that ``lib.evaluation.seed_tests`` reads like the test split's."""
    rows = []
    for path, g in runs[runs["split"] == "test"].groupby("run_path", sort=False):
        if not (ood_folder(path, name) / "metrics.json").is_file():
            continue
        by_rule = ood_metrics(path, name)["by_rule"]
        for _, r in g.iterrows():
            if r["rule"] in by_rule:
                rows.append({**r.to_dict(), "split": f"ood:{name}", "macro_f1": by_rule[r["rule"]]["macro_f1"],
                             "accuracy": by_rule[r["rule"]]["accuracy"]})
    return pd.DataFrame(rows, columns=runs.columns)


def _scored_set(metrics: dict) -> dict:
    """What an out-of-domain set's metrics.json says it was: the mapping and the digests of the files (a
    user's pair) or of the sample (a named pair); paths left out, they differ between machines."""
    notes = metrics.get("notes") or {}
    return {"mapping": metrics.get("mapping"),
            **{k: notes.get(k) for k in ("file_sha256", "mapping_sha256", "sample_seed", "sample_per_class")}}


def _differs(a: dict, b: dict) -> str:
    return ", ".join(k for k in sorted(a) if a[k] != b[k])


def reference_ood_set(runs: pd.DataFrame, baseline: str, name: str) -> tuple[np.ndarray, np.ndarray, int | None,
                                                                                 list[int]]:
    """(labels, ids, class count, indices of the shared classes) of out-of-domain set ``name`` from
    the baseline's first run that scored it; every run that scored it must share its classes and have
    scored the same file and mapping (its metrics.json). Rows and labels are checked where each run's
    predictions load (``load_primary_predictions``), so that each file is read once."""
    paths = runs[(runs["method"] == baseline) & (runs["split"] == "test")]["run_path"].unique()
    first = next((p for p in paths if (ood_folder(p, name) / "metrics.json").is_file()), None)
    if first is None:
        raise ValueError(f"no run of {baseline} scored the out-of-domain set {name}")
    reference = pd.read_csv(ood_folder(first, name) / "predictions.csv", dtype={"id": str}, usecols=["id", "label"])
    shared = ood_metrics(first, name)["shared_classes"]
    names = json.loads((Path(first) / "metrics.json").read_text(encoding="utf-8"))["data"]["class_names"]
    first_set = _scored_set(ood_metrics(first, name))
    for path in runs["run_path"].unique():
        folder = ood_folder(path, name)
        if not (folder / "metrics.json").is_file():
            continue
        theirs = ood_metrics(path, name)
        if theirs["shared_classes"] != shared:
            raise ValueError(f"{folder / 'metrics.json'}: shared classes {', '.join(theirs['shared_classes'])}, but "
                             f"{', '.join(shared)} in {first}; compare runs scored on {name} with one mapping")
        if _scored_set(theirs) != first_set:
            raise ValueError(f"{folder / 'metrics.json'}: {name} was scored with another file or mapping than in "
                             f"{first} ({_differs(_scored_set(theirs), first_set)}); compare runs scored on one set")
    return reference["label"].to_numpy(), reference["id"].to_numpy(), len(names), [names.index(c) for c in shared]
