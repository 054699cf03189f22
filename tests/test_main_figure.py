"""The README's figure (python -m lib.report): combined - CE per study with its verdict interval, drawn
from the summaries' verdict rows, the same bytes every time, never over a file it did not write."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lib.study.plots import VERDICT_FIGURE_KEY, png_text
from lib.study.report import main, main_figure_png, verdict_rows

COMBINED = "ce=0.15+triplet=0.4+arcface=0.45"
STUDIES = (("a", "A fine-tuned"), ("b", "B frozen"), ("old", "before the protocol"))


def _summary(folder, rows, verdicts=True):
    folder.mkdir(parents=True)
    table = pd.DataFrame(rows, columns=["method", "rule", "primary", "seeds", "macro_f1", "tl_diff", "lo90", "hi90",
                                        "verdict"])
    table = table.assign(macro_f1_lo=float("nan"), macro_f1_hi=float("nan"), tl_lo=table["lo90"],
                         tl_hi=table["hi90"], p_holm=0.5, tl_p_is_bound=False, tl_n_boot=10000)  # the main table's
    if not verdicts:
        table = table.drop(columns=["lo90", "hi90", "verdict"])
    table.to_csv(folder / "summary.csv", index=False)


@pytest.fixture
def studies(tmp_path, monkeypatch):
    nan = float("nan")
    _summary(tmp_path / "a", [["ce=1.0", "head", True, 5, 0.70, nan, nan, nan, None],
                              [COMBINED, "head", False, 5, 0.70, 0.0, -0.01, 0.01, "inconclusive"],  # not a-priori
                              [COMBINED, "centroid", True, 5, 0.71, 0.011, 0.001, 0.022, "reproduces"]])
    _summary(tmp_path / "b", [["ce=1.0|frozen", "head", True, 5, 0.60, nan, nan, nan, None],
                              [f"{COMBINED}|frozen", "centroid", True, 5, 0.58, -0.02, -0.035, -0.001,
                               "does not reproduce"]])
    _summary(tmp_path / "old", [[COMBINED, "centroid", True, 3, 0.5, 0.01, 0, 0, None]], verdicts=False)
    monkeypatch.setattr("lib.study.report.STUDIES", STUDIES)
    return tmp_path


def test_one_row_per_study_with_a_verdict_from_its_a_priori_rule(studies):
    rows = verdict_rows(studies, STUDIES)
    assert list(rows["title"]) == ["A fine-tuned", "B frozen"]  # "old" has no verdict columns
    assert rows.iloc[0][["diff", "lo90", "hi90", "verdict"]].tolist() == [0.011, 0.001, 0.022, "reproduces"]
    assert rows.iloc[1]["verdict"] == "does not reproduce" and not rows["primary"].any()


def test_main_draws_the_plotted_numbers_into_the_png_the_same_bytes_every_time(studies):
    assert main(["--results", str(studies)]) == 0
    path = studies / "main_figure.png"
    first = path.read_bytes()
    assert first.startswith(b"\x89PNG") and len(first) < 100_000
    plotted = json.loads(png_text(path, VERDICT_FIGURE_KEY))
    assert plotted["margin"] == 0.017
    assert [(r["title"], r["diff"], r["lo90"], r["hi90"]) for r in plotted["rows"]] == [
        ("A fine-tuned", 0.011, 0.001, 0.022), ("B frozen", -0.02, -0.035, -0.001)]
    assert main(["--results", str(studies)]) == 0 and path.read_bytes() == first


def test_a_study_with_two_verdict_rows_is_refused(studies):
    table = pd.read_csv(studies / "a" / "summary.csv")
    pd.concat([table, table.tail(1)]).to_csv(studies / "a" / "summary.csv", index=False)
    with pytest.raises(ValueError, match="expected one verdict row"):
        verdict_rows(studies, STUDIES)


def test_a_figure_it_did_not_write_is_never_replaced(studies, capsys):
    from PIL import Image

    path = studies / "main_figure.png"
    Image.new("RGB", (4, 4)).save(path)  # a PNG, but not ours: no plotted numbers in it
    before = path.read_bytes()
    assert main(["--results", str(studies)]) == 2
    assert "refusing to replace" in capsys.readouterr().err and path.read_bytes() == before
    assert not (studies / "main_table.md").exists()  # refused before anything was written


def test_tuned_recipes_get_a_marker_of_their_own_and_a_figure_of_one_recipe_does_not_name_it(studies, monkeypatch):
    nan = float("nan")
    _summary(studies / "a-tuned", [["ce=1.0", "head", True, 20, 0.72, nan, nan, nan, None],
                                   ["ce=0.5+triplet=0.2+arcface=0.3", "centroid", True, 20, 0.725, 0.005, -0.004,
                                    0.014, "smaller gain"]])
    assert main(["--results", str(studies)]) == 0
    one_recipe = (studies / "main_figure.png").read_bytes()
    assert all("recipe" not in r for r in json.loads(png_text(studies / "main_figure.png", VERDICT_FIGURE_KEY))["rows"])
    both = (*STUDIES, ("a-tuned", "A fine-tuned, tuned"))
    rows = verdict_rows(studies, both)
    assert list(rows["recipe"]) == ["Study 1 recipe", "Study 1 recipe", "tuned recipes"]
    assert rows.iloc[2][["diff", "verdict"]].tolist() == [0.005, "smaller gain"]  # the tuned weights' verdict row
    monkeypatch.setattr("lib.study.report.STUDIES", both)
    assert main(["--results", str(studies)]) == 0
    plotted = json.loads(png_text(studies / "main_figure.png", VERDICT_FIGURE_KEY))["rows"]
    assert [r["recipe"] for r in plotted] == ["Study 1 recipe", "Study 1 recipe", "tuned recipes"]
    # the tuned row is drawn in its own colour (tab:orange), a figure of one recipe has none of it
    assert _pixels(studies / "main_figure.png", (255, 127, 14)) > 50 and _pixels_of(one_recipe, (255, 127, 14)) == 0
    same_rows_one_style = main_figure_png(rows.assign(recipe="Study 1 recipe"))
    assert _pixels_of(same_rows_one_style, (255, 127, 14)) == 0
    # a recipe keeps its colour wherever its rows stand, and when it is the only one drawn
    tuned_first = main_figure_png(rows.iloc[::-1].reset_index(drop=True))
    assert _pixels_of(tuned_first, (255, 127, 14)) == pytest.approx(_pixels(studies / "main_figure.png", (255, 127, 14)),
                                                                      rel=0.05)
    tuned_only = main_figure_png(rows.iloc[[2]].reset_index(drop=True))
    assert _pixels_of(tuned_only, (255, 127, 14)) > 50 and _pixels_of(tuned_only, (31, 119, 180)) == 0  # no tab:blue


def _pixels_of(png: bytes, rgb) -> int:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    return int((np.abs(pixels - np.asarray(rgb)).max(axis=1) <= 8).sum())


def _pixels(path, rgb) -> int:
    return _pixels_of(path.read_bytes(), rgb)
