"""python -m lib.report over published tuning studies: a budget.csv from before the recipe columns is
refused by name (exit 2), not with a KeyError."""
from __future__ import annotations

import json
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
    shutil.copytree(PUBLISHED, study)  # the records (search.json, best.json, trials) and the report
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


def test_each_tuned_recipe_stands_beside_the_study_1_recipe(tuning_root):
    """The recipes table (README links it), from the published frozen ko6 search: best (Study 1's), a sum's weights
    likewise, nothing for a parameter the method's search has not (the encoder's learning rate, frozen)."""
    table = tuning_report.published_recipes(tuning_root).set_index("method")
    best = json.loads((PUBLISHED / "arcface" / "best.json").read_text(encoding="utf-8"))["config"]["head_lr"]
    assert table.loc["arcface", "head lr"] == f"{best:.3g} (0.001)" == "0.00897 (0.001)"
    assert table.loc["arcface", "encoder lr"] == "–" and table.loc["ce", "loss's own"] == "–"
    assert table.loc["arcface", "loss's own"].startswith("ArcFace margin 0.127 (0.5); ArcFace scale ")
    assert table.loc["ce+arcface", "weights"] == "0.277 / 0.723 (0.5 / 0.5)" and table.loc["arcface", "weights"] == "–"
    assert len(table) == 8 and "| ArcFace |" in tuning_report.recipes_markdown(table.reset_index())


def test_a_winner_without_its_config_is_refused_by_name(tuning_root):
    path = tuning_root / PUBLISHED.name / "ce" / "best.json"
    best = json.loads(path.read_text(encoding="utf-8"))
    del best["config"]["dropout"]
    path.write_text(json.dumps(best), encoding="utf-8")
    with pytest.raises(ValueError, match=r"ce: the recipe or the winner lacks dropout"):
        tuning_report.published_recipes(tuning_root)
    path.unlink()
    with pytest.raises(ValueError, match=r"ce/best\.json: missing or without its config"):
        tuning_report.published_recipes(tuning_root)


def test_the_report_writes_the_recipes_table_and_never_replaces_one_it_did_not_write(tuning_root, capsys):
    for study in STUDIES:  # the main table's summaries, read only
        (tuning_root.parent / study.folder).symlink_to(PROJECT_ROOT / "results" / study.folder)
    assert report_main(["--results", str(tuning_root.parent)]) == 0
    written = tuning_root / "recipes_table.md"
    assert written.read_text(encoding="utf-8") == tuning_report.recipes_markdown(
        tuning_report.published_recipes(tuning_root))
    written.write_text("my notes\n", encoding="utf-8")  # not a table this program wrote
    assert report_main(["--results", str(tuning_root.parent)]) == 2
    assert "refusing to replace" in capsys.readouterr().err and written.read_text(encoding="utf-8") == "my notes\n"


def test_the_gains_view_has_a_row_per_method_and_a_column_per_study_in_the_main_tables_order(tuning_root):
    """The README's short view: a study the main table lists first comes first, one the main table does not
    know keeps its folder's name and comes last, and a method a study has not searched shows –."""
    for name in ("goemo27-minilm-frozen", "aa-mine"):  # two more published studies, each without its SupCon search
        shutil.copytree(tuning_root / PUBLISHED.name, tuning_root / name)
        path = tuning_root / name / "budget.csv"
        pd.read_csv(path).query("method != 'supcon'").to_csv(path, index=False)
    view = tuning_report.gains_table(tuning_report.published_table(tuning_root)).set_index("method")
    assert list(view.columns) == ["ko6, me5-small frozen", "goemo27, MiniLM frozen", "aa-mine"]  # not alphabetical
    assert list(view.index[:2]) == ["CE", "Triplet"] and view.index[-1] == "SupCon" and len(view) == 8
    budget = pd.read_csv(PUBLISHED / "budget.csv").set_index("method")
    arcface = budget.loc["arcface"]
    expected = f"{arcface['rerun_fresh_seeds_valid_macro_f1']:.4f} ({arcface['best_minus_recipe_fresh_seeds']:+.4f})"
    assert view.loc["ArcFace", "ko6, me5-small frozen"] == expected == "0.5325 (+0.0362)"
    assert view.loc["SupCon", "aa-mine"] == "–" and view.loc["SupCon", "ko6, me5-small frozen"] != "–"
    text = tuning_report.gains_markdown(tuning_report.published_table(tuning_root))
    studies = [line.split(":")[0] for line in text.splitlines() if ": tuning bought CE" in line]
    assert studies == ["- ko6, me5-small frozen", "- goemo27, MiniLM frozen", "- aa-mine"]  # the columns' order
    assert "|\n\n- Each cell" in text  # a blank line after the table: the list is not read as a row


def test_the_report_writes_the_gains_view_and_never_replaces_a_file_it_did_not_write(tuning_root, capsys):
    for study in STUDIES:  # the main table's summaries, read only
        (tuning_root.parent / study.folder).symlink_to(PROJECT_ROOT / "results" / study.folder)
    mine = tuning_root / "tuning_gains.md"
    mine.write_text("my gains\n", encoding="utf-8")
    assert report_main(["--results", str(tuning_root.parent)]) == 2
    assert "refusing to replace" in capsys.readouterr().err and mine.read_text(encoding="utf-8") == "my gains\n"
    assert not (tuning_root / "tuning_table.md").exists()  # refused before anything was written
    mine.unlink()
    assert report_main(["--results", str(tuning_root.parent)]) == 0
    assert mine.read_text(encoding="utf-8") == tuning_report.gains_markdown(tuning_report.published_table(tuning_root))


def test_a_searched_loss_option_is_read_from_loss_options(tuning_root):
    """A loss of one's own keeps its parameters in a config's ``loss_options`` (it has no config field): the
    recipes table reads a searched one from there, for the winner and the Study 1 recipe alike. Stand-in:
    ArcFace's margin moved into loss_options in the published records."""
    folder = tuning_root / PUBLISHED.name / "arcface"
    paths = [folder / "best.json"] + [p for p in folder.glob("trials/*/trial.json")
                                      if json.loads(p.read_text(encoding="utf-8")).get("recipe")]
    assert len(paths) == 2
    for path in paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["config"]["loss_options"] = {"arcface_margin": record["config"].pop("arcface_margin")}
        path.write_text(json.dumps(record), encoding="utf-8")
    table = tuning_report.published_recipes(tuning_root).set_index("method")
    assert table.loc["arcface", "loss's own"].startswith("ArcFace margin 0.127 (0.5); ArcFace scale ")


def test_a_searched_parameter_without_a_title_shows_under_its_name(tuning_root, monkeypatch):
    """A loss of one's own has no entry in OWN_TITLES: its searched parameters still show, by name."""
    titles = {k: v for k, v in tuning_report.OWN_TITLES.items() if k != "arcface_margin"}
    monkeypatch.setattr(tuning_report, "OWN_TITLES", titles)
    table = tuning_report.published_recipes(tuning_root).set_index("method")
    assert table.loc["arcface", "loss's own"].startswith("arcface_margin 0.127 (0.5); ArcFace scale ")
