"""python -m lib.report over published tuning studies: a budget.csv from before the recipe columns is
refused by name (exit 2), not with a KeyError."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from lib.paths import PROJECT_ROOT
from lib.study import tuning_report
from lib.study.report import main as report_main
from lib.study.studies import STUDIES

PUBLISHED = PROJECT_ROOT / "results" / "tuning" / "ko6-me5-small-frozen"


@pytest.fixture
def tuning_root(tmp_path: Path) -> Path:
    if not tuning_report.is_published(PUBLISHED):
        pytest.skip("no published tuning study in this checkout")
    study = tmp_path / "tuning" / PUBLISHED.name
    (study / "notebooks").mkdir(parents=True)
    for name in ("report.json", "budget.csv"):
        shutil.copy(PUBLISHED / name, study / name)
    shutil.copy(PUBLISHED / "notebooks" / "07_tuning.ipynb", study / "notebooks" / "07_tuning.ipynb")
    return tmp_path / "tuning"


def test_a_published_budget_gives_one_row_per_method(tuning_root):
    table = tuning_report.published_table(tuning_root)
    budget = pd.read_csv(PUBLISHED / "budget.csv")
    assert sorted(table["method"]) == sorted(budget["method"])
    assert (table["_gain"].to_numpy() == budget["best_minus_recipe_fresh_seeds"].to_numpy()).all()


def test_an_old_budget_is_refused_by_file_and_column(tuning_root, capsys):
    path = tuning_root / PUBLISHED.name / "budget.csv"
    pd.read_csv(path).drop(columns=["recipe_trial_status"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"budget\.csv lacks the column\(s\) recipe_trial_status.*--publish"):
        tuning_report.published_table(tuning_root)
    for study in STUDIES:  # the main table's summaries, read only: the refusal comes before any write
        (tuning_root.parent / study.folder).symlink_to(PROJECT_ROOT / "results" / study.folder)
    assert report_main(["--results", str(tuning_root.parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "recipe_trial_status" in err and "Traceback" not in err
    assert not [p.name for p in tuning_root.parent.iterdir() if p.is_file()]  # nothing written
    assert not (tuning_root / "tuning_table.csv").exists()
