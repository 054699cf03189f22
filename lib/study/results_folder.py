"""A study's results folder is ours before anything is written or replaced in it.

run_all.sh (and ``--force``) and the notebooks replace executed notebooks, figures, the summary
and run folders inside ``--results``. So that folder must be new, empty, or one this program
filled: it holds a run folder, an executed notebook of the study, or a study summary. A user's
folder (``--results ~/thesis``) is refused before any notebook runs.
"""
from __future__ import annotations

import csv
from pathlib import Path

from lib.ownership import check_owned
from lib.study.profiles import NOTEBOOKS
from lib.training.results import PARTIAL_SUFFIX, is_partial_run, is_run_folder

SUMMARY_COLUMNS = ("method", "rule", "primary", "seeds", "macro_f1")


def csv_header_has(path: Path, columns) -> bool:
    """The first line of a regular file names every one of ``columns`` (a table this program wrote)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, encoding="utf-8", errors="replace") as f:
            header = next(csv.reader([f.readline(10_000).rstrip("\r\n")]), [])  # quoted names may hold commas
    except OSError:
        return False
    return set(columns) <= set(header)


def _executed_notebook(path: Path) -> bool:
    name = path.name.lstrip(".")
    return any(name.startswith(nb) for nb in NOTEBOOKS)


def is_results_folder(folder: Path) -> bool:
    """A folder this program filled: one of its run folders, executed notebooks, or its summary."""
    if not folder.is_dir():
        return False
    if all(p.is_dir() and not p.is_symlink() for p in folder.rglob("*")):
        return True  # only empty folders: what an interrupted start leaves, nothing to lose
    if csv_header_has(folder / "summary.csv", SUMMARY_COLUMNS):
        return True
    if any(_executed_notebook(p) for p in folder.glob("notebooks/*.ipynb")):
        return True
    # notebook 00 run by hand writes its tables first: <dataset>-class_counts.csv with our header
    if any(csv_header_has(p, ("class", "train", "valid", "test")) for p in folder.glob("data/*-class_counts.csv")):
        return True
    for run in folder.glob("runs/**/seed*"):
        if is_run_folder(run) or (run.name.endswith(PARTIAL_SUFFIX) and is_partial_run(run)):
            return True
    return False


def claim_results_folder(folder: Path) -> Path:
    """Create ``folder`` or check that it is ours; raises NotOursError (one line) otherwise."""
    check_owned(folder, is_results_folder, "a results folder of this study (runs/, notebooks/ or summary.csv)",
                "Give --results a new or empty folder, or one this program wrote.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
