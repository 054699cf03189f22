"""The README's main table is built from the studies' summary.csv files, and only from them."""
from __future__ import annotations

import pandas as pd
import pytest

from lib.study.report import collect_studies, main, wide_table


def _summary(folder, rows):
    folder.mkdir(parents=True)
    cols = ["method", "rule", "primary", "seeds", "macro_f1", "macro_f1_lo", "macro_f1_hi", "tl_diff", "tl_lo",
            "tl_hi", "p_holm", "tl_p_is_bound", "tl_n_boot"]
    pd.DataFrame(rows, columns=cols).to_csv(folder / "summary.csv", index=False)


STUDIES = (("a", "A fine-tuned"), ("b", "B frozen"), ("missing", "never run"))


@pytest.fixture
def two_studies(tmp_path):
    nan = float("nan")
    _summary(tmp_path / "a", [
        ["ce=1.0", "head", True, 5, 0.70, 0.68, 0.72, nan, nan, nan, nan, nan, nan],
        ["ce=1.0", "centroid", False, 5, 0.69, 0.67, 0.71, nan, nan, nan, nan, nan, nan],
        ["ce=0.15+triplet=0.4+arcface=0.45", "centroid", True, 5, 0.71, 0.69, 0.73, 0.01, -0.002, 0.02, 0.0002,
         True, 10000],
    ])
    _summary(tmp_path / "b", [
        ["tfidf-lr", "head", True, 1, 0.50, nan, nan, -0.1, -0.15, -0.05, 0.02, False, 10000],
        ["ce=1.0|frozen", "head", True, 5, 0.60, 0.59, 0.61, nan, nan, nan, nan, nan, nan],
    ])
    return tmp_path


def test_primary_rows_of_every_study_in_reading_order(two_studies):
    long = collect_studies(two_studies, STUDIES)
    assert list(zip(long["study"], long["method"])) == [
        ("a", "ce=1.0"), ("a", "ce=0.15+triplet=0.4+arcface=0.45"), ("b", "ce=1.0"), ("b", "tfidf-lr")]
    assert long.loc[2, "macro_f1"] == 0.60  # '|frozen' dropped: frozen CE sits in the CE row


def test_wide_table_cells(two_studies):
    wide = wide_table(collect_studies(two_studies, STUDIES)).set_index("method")
    assert wide.loc["CE", "A fine-tuned"] == "0.700 [0.680, 0.720] (n=5)"
    assert wide.loc["Combined (seed weights)", "A fine-tuned"] == "0.710 [0.690, 0.730] (n=5); +0.010 [-0.002, +0.020], p < 0.0002"
    assert wide.loc["Combined (seed weights)", "B frozen"] == "–"
    assert wide.loc["TF-IDF + LR", "B frozen"] == "0.500 (n=1); -0.100 [-0.150, -0.050], p = 0.0200"
    assert wide.loc["CE"].iloc[-1] == "0.643" and wide.loc["Combined (seed weights)"].iloc[-1] == "0.660"


def test_main_writes_sorted_files_and_refuses_an_empty_folder(two_studies, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lib.study.report.STUDIES", STUDIES)
    assert main(["--results", str(two_studies)]) == 0
    assert (two_studies / "main_table.md").read_text().startswith("| method | A fine-tuned | B frozen |")
    assert len(pd.read_csv(two_studies / "main_table.csv")) == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--results", str(empty)]) == 2
    assert "no summary.csv under" in capsys.readouterr().err


def test_a_cell_shows_the_t_views_holm_p_where_the_summary_has_it(tmp_path):
    """PROTOCOL.md amendment 4: significance needs both Holm p-values, so the cell shows both."""
    folder = tmp_path / "b"
    folder.mkdir()
    pd.DataFrame([{"method": "tfidf-lr", "rule": "head", "primary": True, "seeds": 1, "macro_f1": 0.5,
                   "macro_f1_lo": float("nan"), "macro_f1_hi": float("nan"), "tl_diff": -0.1, "tl_lo": -0.15,
                   "tl_hi": -0.05, "p_holm": 0.02, "tl_p_is_bound": False, "tl_n_boot": 10000,
                   "p_ttest_holm": 0.0581}]).to_csv(folder / "summary.csv", index=False)
    wide = wide_table(collect_studies(tmp_path, (("b", "B"),))).set_index("method")
    assert wide.loc["TF-IDF + LR", "B"] == "0.500 (n=1); -0.100 [-0.150, -0.050], p = 0.0200, t 0.058"


def test_a_main_table_of_an_earlier_version_is_still_ours(two_studies, monkeypatch):
    """A column added later (p_ttest_holm) does not make a table an earlier version wrote foreign;
    a CSV without the table's columns still is."""
    monkeypatch.setattr("lib.study.report.STUDIES", STUDIES)
    assert main(["--results", str(two_studies)]) == 0
    path = two_studies / "main_table.csv"
    pd.read_csv(path).drop(columns=["p_ttest_holm"]).to_csv(path, index=False)  # as before the column existed
    assert main(["--results", str(two_studies)]) == 0 and "p_ttest_holm" in pd.read_csv(path).columns
    path.write_text("method,macro_f1\nx,1\n", encoding="utf-8")
    assert main(["--results", str(two_studies)]) == 2 and path.read_text(encoding="utf-8").startswith("method,macro_f1")


def test_tuned_weights_share_the_listed_methods_row_and_each_cell_states_its_weights(two_studies, monkeypatch,
                                                                                    capsys):
    """Study 2: each study's combined loss at its own tuned weights is one row, not one row per weighting."""
    nan = float("nan")
    _summary(two_studies / "a-tuned", [
        ["ce=1.0", "head", True, 20, 0.72, 0.71, 0.73, nan, nan, nan, nan, nan, nan],
        ["ce=0.5+triplet=0.2+arcface=0.3", "centroid", True, 20, 0.73, 0.72, 0.74, 0.01, 0.0, 0.02, 0.03, False,
         10000],
        ["ce=0.43+supcon=0.57", "head", True, 20, 0.725, 0.715, 0.735, 0.005, -0.01, 0.02, 0.4, False, 10000],
    ])
    studies = (("a", "A"), ("a-tuned", "A tuned"))
    wide = wide_table(collect_studies(two_studies, studies)).set_index("method")
    assert list(wide.index) == ["CE", "Combined", "CE + SupCon (weights 0.43 / 0.57)"]
    assert wide.loc["Combined", "A"].startswith("0.710 [0.690, 0.730] (n=5, weights 0.15 / 0.4 / 0.45); +0.010")
    assert wide.loc["Combined", "A tuned"].startswith("0.730 [0.720, 0.740] (n=20, weights 0.5 / 0.2 / 0.3); +0.010")
    assert wide.loc["CE", "A tuned"] == "0.720 [0.710, 0.730] (n=20)"  # one weighting: no weights said
    assert wide.loc["Combined"].iloc[-1] == "0.660"  # the seed study's number stays in its row
    # a study with two weightings of one method has no single cell for it
    table = pd.read_csv(two_studies / "a-tuned" / "summary.csv")
    extra = table.iloc[[1]].assign(method="ce=0.1+triplet=0.1+arcface=0.8")
    pd.concat([table, extra]).to_csv(two_studies / "a-tuned" / "summary.csv", index=False)
    with pytest.raises(ValueError, match="A tuned: 2 weightings of Combined"):
        wide_table(collect_studies(two_studies, studies))
    monkeypatch.setattr("lib.study.report.STUDIES", studies)  # the command refuses it before writing anything
    assert main(["--results", str(two_studies)]) == 2 and "2 weightings of Combined" in capsys.readouterr().err
    assert not (two_studies / "main_table.csv").exists() and not (two_studies / "main_table.md").exists()
