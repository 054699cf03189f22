"""The study's summary over every finished run of a results folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lib.study.experiments import (ExperimentConfig, display_name, experiment_fields, method_key, resolve_results_dir,
                          sort_methods)
from lib.training.results import collect_runs, write_csv, write_text
from lib.evaluation.stats import compare_to_baseline, summarize

# What the seed study reported (KoBERT on ko6, one seed, best epoch picked on the test split).
SEED_STUDY = pd.DataFrame([
    {"method": "ce=1.0", "seed_study_test_macro_f1": 0.643},
    {"method": "ce=0.15+triplet=0.4+arcface=0.45", "seed_study_test_macro_f1": 0.660},
])


def collect(results: str | Path, group: str | None = None) -> pd.DataFrame:
    """collect_runs with the method key (loss spec, baseline name, '|frozen').

    Without ``group`` the grouped runs (the weight grid of notebook 04, chosen on validation and
    reported there) are left out. Refuses to mix runs of one method with different configurations.
    """
    root = resolve_results_dir(results) / "runs"
    runs = collect_runs(root / group if group else root)
    if runs.empty:
        return runs
    if not group:
        runs = runs[~runs["run_path"].str.startswith(str(root / "grid") + "/")].reset_index(drop=True)
    keys, configs = {}, {}
    for path in runs["run_path"].unique():
        config = json.loads((Path(path) / "config.json").read_text())
        keys[path] = method_key(ExperimentConfig.from_dict(config))
        fields = {k: v for k, v in experiment_fields(config).items() if k != "seed"}
        previous = configs.setdefault(keys[path], (path, fields))
        if previous[1] != fields:
            differ = sorted(k for k in set(fields) | set(previous[1]) if fields.get(k) != previous[1].get(k))
            raise ValueError(f"runs of {keys[path]} differ in {', '.join(differ)}: {previous[0]} and {path}; "
                             "keep one configuration per results folder (re-run with --force or another folder)")
    runs["method"] = runs["run_path"].map(keys)
    return runs


def _fmt(m, lo, hi) -> str:
    if np.isnan(m):
        return ""
    return f"{m:.3f}" if np.isnan(lo) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def build_summary(results: str | Path, baseline: str = "ce=1.0", n_boot: int = 1000, random_state: int = 0):
    """(numeric table, readable table, runs). The numeric table has one row per method and rule."""
    runs = collect(results)
    if runs.empty:
        raise FileNotFoundError(f"no complete runs under {resolve_results_dir(results) / 'runs'}")
    if baseline not in set(runs["method"]) and f"{baseline}|frozen" in set(runs["method"]):
        baseline = f"{baseline}|frozen"  # a study run entirely on a frozen encoder
    summary = summarize(runs)
    comparison = compare_to_baseline(runs, baseline, n_boot=n_boot, random_state=random_state)
    table = summary.copy()
    if not comparison.empty:
        cols = ["method", "seeds", "diff", "diff_lo", "diff_hi", "p_ttest", "boot_lo", "boot_hi", "p_bootstrap"]
        comp = comparison[cols].rename(columns={"seeds": "paired_seeds", "diff": "diff_vs_baseline"})
        comp = comp.assign(primary=True)
        table = table.merge(comp, on=["method", "primary"], how="left")
    table = table.merge(SEED_STUDY, on="method", how="left")
    table.loc[~table["primary"], "seed_study_test_macro_f1"] = np.nan
    order = {k: i for i, k in enumerate(sort_methods(table["method"].unique()))}
    table = table.sort_values(["method", "rule"], key=lambda s: s.map(order) if s.name == "method" else s)
    table = table.reset_index(drop=True)
    table.attrs["baseline"] = baseline
    return table, readable(table, baseline), runs


def readable(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    rows = []
    for _, r in table[table["primary"]].iterrows():
        row = {"method": display_name(r["method"]), "rule": r["rule"], "seeds": int(r["seeds"]),
               "test macro-F1 (95% CI)": _fmt(r["macro_f1"], r["macro_f1_lo"], r["macro_f1_hi"]),
               "test accuracy (95% CI)": _fmt(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"])}
        if "diff_vs_baseline" in r and not pd.isna(r.get("diff_vs_baseline")):
            row[f"vs {display_name(baseline)}"] = f"{r['diff_vs_baseline']:+.3f}"
            row["p (seeds, t)"] = "" if np.isnan(r["p_ttest"]) else f"{r['p_ttest']:.3f}"
            row["p (bootstrap)"] = f"{r['p_bootstrap']:.3f}"
        seed_f1 = r.get("seed_study_test_macro_f1")
        row["seed study (KoBERT, ko6)"] = "" if pd.isna(seed_f1) else f"{seed_f1:.3f}"
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def write_summary(results: str | Path, table: pd.DataFrame, nice: pd.DataFrame) -> dict[str, Path]:
    root = resolve_results_dir(results)
    paths = {"csv": root / "summary.csv", "md": root / "summary.md"}
    write_csv(paths["csv"], table.round(6))
    write_text(paths["md"], _markdown(nice))
    return paths


def _markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"
