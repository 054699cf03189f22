"""Study 2's seed count (lib.study.design_power) from Study 1's committed runs, and the power helpers."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from lib.evaluation.power import fit_se_by_seeds, minimum_detectable_effect, variance_components
from lib.paths import PROJECT_ROOT
from lib.study import design_power

STUDY = PROJECT_ROOT / "results" / "ko6-me5-small"
COMMITTED = PROJECT_ROOT / "results" / "study2-design" / "power.json"


def test_fit_se_by_seeds_recovers_floor_and_spread():
    n = np.array([3, 4, 5, 8, 10])
    floor, spread = fit_se_by_seeds(n, np.sqrt(0.004 ** 2 + 0.015 ** 2 / n))
    assert (floor, spread) == (pytest.approx(0.004), pytest.approx(0.015))
    with pytest.raises(ValueError, match="two or more different seed counts"):
        fit_se_by_seeds([5, 5], [0.01, 0.011])


def test_variance_components_split_shared_from_per_seed_sentence_noise():
    shared, inter, n = 0.003, 0.01, 4
    parts = variance_components(np.full(n, shared ** 2 + inter ** 2), shared ** 2 + inter ** 2 / n,
                                np.array([0.01, 0.02, 0.0, 0.03]))
    assert parts["shared_se"] == pytest.approx(shared) and parts["interaction_sd"] == pytest.approx(inter)
    assert parts["seed_sd"] == pytest.approx(np.std([0.01, 0.02, 0.0, 0.03], ddof=1)) and not parts["clipped"]
    assert variance_components(np.full(n, 1e-6), 2e-6, np.zeros(n))["clipped"]  # more shared than in one seed


@pytest.fixture(scope="module")
def measured():
    if not (STUDY / "summary.csv").is_file():
        pytest.skip("the primary study's runs are not in this checkout")
    return design_power.measure(STUDY, n_boot=2_000, subsets=3, subset_boot=500)


def test_measure_reads_the_primary_rules_of_both_methods(measured):
    a, b, y, k, seeds = design_power.paired_predictions(STUDY)
    diffs = [f1_score(y, a[i], average="macro") - f1_score(y, b[i], average="macro") for i in range(len(seeds))]
    assert measured["seed_list"] == seeds == list(range(10))
    assert measured["seed_sd"] == pytest.approx(np.std(diffs, ddof=1))
    summary = pd.read_csv(STUDY / "summary.csv")
    primary = summary[summary["tl_diff"].notna() & (summary["method"] == design_power.PRIMARY_METHOD)].iloc[0]
    assert measured["diff"] == pytest.approx(primary["tl_diff"], abs=1e-6)  # the verdict's own difference
    # the fit's n = 10 point is the verdict's SE, which the summary reports (10,000 replicates there)
    fitted = math.hypot(measured["verdict_se_floor"], measured["verdict_se_per_seed"] / math.sqrt(10))
    assert fitted == pytest.approx(primary["tl_se"], rel=0.15)


def test_the_table_falls_with_seeds_towards_the_floor_and_splits_go_below_it(measured):
    table = design_power.mde_table(measured)
    finite = table[table["n"] != "infinite"]
    assert finite["verdict_se"].is_monotonic_decreasing and finite["splits_se_model"].is_monotonic_decreasing
    floor = table[table["n"] == "infinite"].iloc[0]
    assert (finite["verdict_se"] > floor["verdict_se"]).all()
    assert floor["mde_two_sided_05"] == pytest.approx(minimum_detectable_effect(measured["verdict_se_floor"]))
    assert (finite["mde_one_sided_05"] < finite["mde_two_sided_05"]).all()
    big = finite[finite["n"] >= 10]
    assert (big["splits_se_model"] < big["verdict_se"]).all()


@pytest.mark.slow
def test_main_writes_both_files_and_never_replaces_a_foreign_one(tmp_path, capsys):
    if not (STUDY / "summary.csv").is_file():
        pytest.skip("the primary study's runs are not in this checkout")
    args = ["--study", str(STUDY), "--results", str(tmp_path), "--n-boot", "500"]
    assert design_power.main(args) == 0
    written = json.loads((tmp_path / "study2-design" / "power.json").read_text(encoding="utf-8"))
    assert written["study"] == "results/ko6-me5-small" and len(written["table"]) == len(design_power.SEED_COUNTS) + 1
    assert "| n | runs | verdict_se |" in (tmp_path / "study2-design" / "power.md").read_text(encoding="utf-8")
    (tmp_path / "study2-design" / "power.json").write_text("{}", encoding="utf-8")
    from lib.entrypoint import run_main
    assert run_main(design_power.main, args) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "study2-design" / "power.json").read_text(encoding="utf-8") == "{}"


@pytest.mark.slow
def test_the_committed_design_recomputes_from_the_runs():
    if not COMMITTED.is_file():
        pytest.skip("results/study2-design/power.json is not committed yet")
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    parts = design_power.measure(STUDY)
    assert committed["components"] == json.loads(json.dumps(parts))
    assert committed["table"] == json.loads(json.dumps(design_power.mde_table(parts).to_dict("records")))
