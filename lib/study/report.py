"""The README's main table: every study's summary.csv side by side (loss x data set).

Reads only the committed ``summary.csv`` files, so every number in the table traces to one of
them. ``python -m lib.report`` writes ``results/main_table.csv`` (long, one row per study and
method), ``results/main_table.md`` (wide, what the README shows) and ``results/main_figure.png``
(combined - CE in every study, with its verdict interval: the figure atop the README); once Study 2's
searches are published (lib.study.tuning --publish), ``results/tuning/tuning_table.csv`` and ``.md``:
what tuning bought each method, from each published search's budget.csv, and ``recipes_table.csv`` and
``.md``: each method's tuned recipe beside Study 1's, from each search's best.json and trial 1, and
``tuning_gains.md``: the README's short view of the tuning table (method x study).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from lib.ownership import NotOursError, check_owned
from lib.study.experiments import (TUNED_SUFFIX, display_name, listed_method, resolve_results_dir,
                                   same_method, sort_methods, weights_text)
from lib.training.results import write_csv, write_text
from lib.evaluation.pvalues import format_p
from lib.study.results_folder import csv_header_has
from lib.study.studies import report_columns
from lib.study import tuning_report
from lib.study.plots import VERDICT_FIGURE_KEY, png_text, verdict_intervals_png
from lib.study.summary import MARGIN, PRIMARY_METHOD, PRIMARY_STUDY, SEED_STUDY, markdown_table

# (results folder, column title) in reading order (lib/study/studies.py); a folder without
# summary.csv is skipped.
STUDIES = report_columns()
SEED_STUDY_TITLE = "seed study (KoBERT, ko6, 1 seed, epoch picked on test)"
COLUMNS = ["study", "title", "method", "rule", "seeds", "macro_f1", "macro_f1_lo", "macro_f1_hi",
           "tl_diff", "tl_lo", "tl_hi", "p_holm", "tl_p_is_bound", "tl_n_boot", "p_ttest", "p_ttest_holm"]
# What marks a main_table.csv as one this program wrote, in every version (columns added later,
# such as p_ttest_holm, must not make an older table look foreign).
IDENTITY_COLUMNS = COLUMNS[:COLUMNS.index("p_ttest") + 1]


def _summaries(root: Path, studies=None):
    """(folder, title, path, table) of each study's summary.csv under ``root``, in the main table's order;
    a study without one is skipped."""
    for folder, title in STUDIES if studies is None else studies:
        path = root / folder / "summary.csv"
        if path.exists():
            yield folder, title, path, pd.read_csv(path)


def collect_studies(results_root: str | Path = "results", studies=None) -> pd.DataFrame:
    """Primary-rule rows of every study's summary.csv, the '|frozen' mark dropped from method keys."""
    studies = STUDIES if studies is None else studies
    root = resolve_results_dir(results_root)
    frames = []
    for folder, title, path, table in _summaries(root, studies):
        missing = {"method", "rule", "primary", "seeds", "macro_f1"} - set(table.columns)
        if missing:
            raise ValueError(f"{path}: not a study summary (missing columns {', '.join(sorted(missing))})")
        table = table[table["primary"].astype(bool)].copy()
        table["method"] = table["method"].str.replace("|frozen", "", regex=False)
        table["study"], table["title"] = folder, title
        frames.append(table.reindex(columns=COLUMNS))
    if not frames:
        raise FileNotFoundError(f"no summary.csv under {root} for {', '.join(f for f, _ in studies)}")
    out = pd.concat(frames, ignore_index=True)
    order = {k: i for i, k in enumerate(sort_methods(out["method"].unique()))}
    study_order = {f: i for i, (f, _) in enumerate(studies)}
    out = out.sort_values(["study", "method"], key=lambda s: s.map(study_order if s.name == "study" else order))
    return out.reset_index(drop=True)


def _cell(r, weights: str = "") -> str:
    if pd.isna(r["macro_f1"]):
        return ""
    text = f"{r['macro_f1']:.3f}"
    if not pd.isna(r["macro_f1_lo"]):
        text += f" [{r['macro_f1_lo']:.3f}, {r['macro_f1_hi']:.3f}]"
    text += f" (n={int(r['seeds'])}{', ' + weights if weights else ''})"
    if not pd.isna(r["tl_diff"]):
        bound = bool(r["tl_p_is_bound"]) if not pd.isna(r["tl_p_is_bound"]) else False
        p = format_p(float(r["p_holm"]), int(r["tl_n_boot"]), bound)
        text += f"; {r['tl_diff']:+.3f} [{r['tl_lo']:+.3f}, {r['tl_hi']:+.3f}], p {p if bound else '= ' + p}"
        if not pd.isna(r.get("p_ttest_holm")):  # the t view's Holm p (PROTOCOL.md, amendment 4)
            text += f", t {format_p(float(r['p_ttest_holm']))}"
    return text


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per method, one column per study: mean [95% CI over seeds] (n seeds); difference to CE
    [95% CI over seeds and sentences], Holm-adjusted two-level bootstrap p, Holm-adjusted t p.

    A weighted sum at other weights than the listed method's (Study 2's tuned recipes) shares that
    method's row; where a row holds more than one weighting, the row is named without weights and every
    cell states its own (a row of one weighting names it, as display_name does)."""
    titles = list(dict.fromkeys(long["title"]))
    listed = long["method"].map(listed_method)
    rows = []
    for method in dict.fromkeys(map(listed_method, sort_methods(long["method"].unique()))):
        members = long[listed == method]
        mixed = members["method"].nunique() > 1
        # one weighting: its own name (with its weights where they are not the listed method's)
        row = {"method": display_name(method).removesuffix(" (seed weights)") if mixed else
               display_name(members["method"].iloc[0])}
        for title in titles:
            hit = members[members["title"] == title]
            if len(hit) > 1:
                raise ValueError(f"{title}: {len(hit)} weightings of {display_name(method)} under their a-priori "
                                 f"rules ({', '.join(hit['method'])}); a study holds one")
            row[title] = (_cell(hit.iloc[0], "weights " + weights_text(hit.iloc[0]["method"]) if mixed else "")
                          if len(hit) else "–")
        reported = SEED_STUDY.loc[SEED_STUDY["method"] == method, "seed_study_test_macro_f1"]
        row[SEED_STUDY_TITLE] = f"{reported.iloc[0]:.3f}" if len(reported) else ""
        rows.append(row)
    return pd.DataFrame(rows)


# The primary study's folder (results/<dataset>-<encoder>[-frozen]), bold in the figure.
PRIMARY_FOLDER = "-".join(PRIMARY_STUDY[:2]) + ("-frozen" if PRIMARY_STUDY[2] else "")
FIGURE_COLUMNS = ["study", "title", "seeds", "primary", "diff", "lo90", "hi90", "verdict", "recipe"]
# The recipe a study's runs were trained at, as its folder says (lib.study.tuned_recipes writes runs at
# tuned recipes only to a folder named <study>-tuned).
RECIPES = {False: "Study 1 recipe", True: "tuned recipes"}  # each with its style in lib.study.plots.RECIPE_STYLES


def verdict_rows(results_root: str | Path = "results", studies=None) -> pd.DataFrame:
    """Per study, in the main table's order: the combined loss against CE under the a-priori rules
    (summary.csv's row with a verdict), its difference, 90% verdict interval (PROTOCOL.md: the union
    of the two-level bootstrap's and the t interval) and verdict. A summary without a verdict column
    (written before the protocol) adds no row. ``recipe``: "Study 1 recipe" or "tuned recipes" (a
    ``-tuned`` folder)."""
    rows = []
    for folder, title, path, table in _summaries(resolve_results_dir(results_root), studies):
        if not {"verdict", "lo90", "hi90", "tl_diff"} <= set(table.columns):
            continue
        method = table["method"].str.replace("|frozen", "", regex=False)
        combined = method.map(lambda m: same_method(m, PRIMARY_METHOD))  # at the seed's or tuned weights
        hit = table[combined & table["primary"].astype(bool) & table["verdict"].notna()]
        if len(hit) != 1:
            raise ValueError(f"{path}: expected one verdict row for {PRIMARY_METHOD} under its a-priori rule, "
                             f"found {len(hit)}")
        r = hit.iloc[0]
        rows.append({"study": folder, "title": title, "seeds": int(r["seeds"]), "primary": folder == PRIMARY_FOLDER,
                     "diff": float(r["tl_diff"]), "lo90": float(r["lo90"]), "hi90": float(r["hi90"]),
                     "verdict": str(r["verdict"]), "recipe": RECIPES[folder.endswith(TUNED_SUFFIX)]})
    return pd.DataFrame(rows, columns=FIGURE_COLUMNS)


def main_figure_png(rows: pd.DataFrame) -> bytes:
    """The README's figure: combined - CE per study with its verdict interval, 0 and the claimed margin."""
    return verdict_intervals_png(rows, MARGIN)


def _is_main_figure(path: Path) -> bool:
    return path.is_file() and png_text(path, VERDICT_FIGURE_KEY) is not None


def _write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _md_table_starting(header: str):
    """A check that a path holds a markdown table this program wrote: its first line starts ``header``."""
    def check(path: Path) -> bool:
        try:
            return path.is_file() and not path.is_symlink() and path.open(encoding="utf-8").readline().startswith(
                header)
        except (OSError, UnicodeDecodeError):
            return False
    return check


_is_main_table_md = _md_table_starting("| method |")


TUNING_TABLE = "tuning/tuning_table"  # what tuning bought each method (lib.study.tuning_report.published_table)


_is_tuning_table_md = _md_table_starting("| study | method |")
RECIPES_TABLE = "tuning/recipes_table"  # each tuned recipe beside Study 1's (lib.study.tuning_report.published_recipes)
_is_recipes_table_md = _md_table_starting("| study | method | encoder lr |")
TUNING_GAINS = "tuning/tuning_gains"  # the README's view of the tuning table (tuning_report.gains_markdown)
_is_tuning_gains_md = _md_table_starting("| method | ")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.report", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="folder holding the study folders (default: results)")
    args = p.parse_args(argv)
    root = resolve_results_dir(args.results)
    try:
        long = collect_studies(args.results)
        wide = wide_table(long)  # refuses a study with two weightings of one method: before anything is written
        verdicts = verdict_rows(args.results)
        figure = main_figure_png(verdicts) if len(verdicts) else None  # drawn before anything is written
        tuned = tuning_report.published_table(root / "tuning") if (root / "tuning").is_dir() else None
        recipes = tuning_report.published_recipes(root / "tuning") if (root / "tuning").is_dir() else None
        for name, ours, what in (
                ("main_table.csv", lambda p: csv_header_has(p, IDENTITY_COLUMNS), "a main table"),
                ("main_table.md", _is_main_table_md, "a main table"),
                ("main_figure.png", _is_main_figure, "the main figure"),
                (TUNING_TABLE + ".csv", lambda p: csv_header_has(p, tuning_report.TABLE_COLUMNS), "a tuning table"),
                (TUNING_TABLE + ".md", _is_tuning_table_md, "a tuning table"),
                (RECIPES_TABLE + ".csv", lambda p: csv_header_has(p, tuning_report.RECIPE_COLUMNS), "a recipes table"),
                (RECIPES_TABLE + ".md", _is_recipes_table_md, "a recipes table"),
                (TUNING_GAINS + ".md", _is_tuning_gains_md, "a tuning gains table")):
            check_owned(root / name, ours, f"{what} written by python -m lib.report")
    except (FileNotFoundError, ValueError, NotOursError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_csv(root / "main_table.csv", long.round(6))
    write_text(root / "main_table.md", markdown_table(wide))
    print(f"{len(long)} rows from {long['study'].nunique()} studies -> {root / 'main_table.md'}")
    if figure is not None:  # studies summarised before the protocol have no verdict to draw
        _write_bytes(root / "main_figure.png", figure)
        print(f"combined - CE in {len(verdicts)} studies -> {root / 'main_figure.png'}")
    if tuned is not None and len(tuned):  # Study 2's searches, once published (lib.study.tuning --publish)
        write_csv(root / (TUNING_TABLE + ".csv"), tuned.drop(columns=["_gain", "_recipe_status"]))
        write_text(root / (TUNING_TABLE + ".md"), tuning_report.table_markdown(tuned))
        write_text(root / (TUNING_GAINS + ".md"), tuning_report.gains_markdown(tuned))
        print(f"{len(tuned)} tuned methods from {tuned['study'].nunique()} published searches -> "
              f"{root / (TUNING_TABLE + '.md')}")
    if recipes is not None and len(recipes):
        write_csv(root / (RECIPES_TABLE + ".csv"), recipes)
        write_text(root / (RECIPES_TABLE + ".md"), tuning_report.recipes_markdown(recipes))
        print(f"{len(recipes)} tuned recipes beside Study 1's -> {root / (RECIPES_TABLE + '.md')}")
    return 0
