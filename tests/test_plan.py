"""One list of runs per notebook: what a notebook trains is exactly what run_all.sh --ray fans out.

The notebooks' own code cells are executed here (parameters cell, the values run_all.sh injects,
then every cell that builds or trains runs) with ``run_or_load`` replaced by a recorder, so the
test compares the notebook's real training calls with ``lib.study.fanout.planned_runs``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lib.paths import PROJECT_ROOT
from lib.study.experiments import run_folder
from lib.study.fanout import planned_runs
from lib.study.parameters_cell import notebook_defaults
from lib.study.plan import notebook_configs, notebook_runs
from lib.study.profiles import TRAINING_NOTEBOOKS, notebook_parameters


def _code_cells(nb: str) -> list[str]:
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{nb}.ipynb").read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _trained_by_notebook(nb: str, injected: dict, monkeypatch) -> list[tuple[Path, dict]]:
    """Execute the notebook's cells with a recording run_or_load; (run folder, config) per call."""
    calls = []

    def record(cfg, results, force=False, quiet=True, group=None, save_model=False):
        calls.append((run_folder(Path(results), cfg, group), cfg.validate().to_dict()))
        return {"test_macro_f1": 0.5, "reused": True}

    def table(metrics):
        return pd.DataFrame({"method": list(metrics), "rule": ["head *"] * len(metrics),
                             "valid_macro_f1": 0.5, "test_macro_f1": 0.5})

    # the notebooks train through lib.study.experiments (train_or_reuse calls run_or_load there)
    monkeypatch.setattr("lib.study.experiments.run_or_load", record)
    monkeypatch.setattr("lib.study.experiments.run_table", table)  # grid_choice's too
    cells = _code_cells(nb)
    ns: dict = {}
    exec(cells[0], ns)  # the parameters cell
    ns.update(injected)  # what papermill injects after it
    for source in cells[1:]:
        if "plots." in source or source.startswith("# Checks") or "check_runs(" in source:
            continue  # figures and nbval's checks train nothing
        exec(source, ns)
        ns.update(run_table=table, display=lambda *a, **k: None)
    return calls


@pytest.mark.parametrize("nb", TRAINING_NOTEBOOKS)
@pytest.mark.parametrize("profile,seed,overrides", [
    ("smoke", 1, {}),
    ("default", 0, {"EPOCHS": 3, "GRID": [[0.5, 0.25, 0.25]]}),
    ("paper", 2, {"LOSSES": ["ce+supcon"], "BASELINES": ["tfidf-lr"]}),
])
def test_the_fan_out_plans_exactly_what_the_notebook_trains(nb, profile, seed, overrides, tmp_path, monkeypatch):
    results = tmp_path / "results"
    defaults = notebook_defaults(nb)
    overrides = {k: v for k, v in overrides.items() if k in defaults}
    injected = {**notebook_parameters(profile, nb, "ed6", "minilm", seed, str(results)), **overrides}
    trained = _trained_by_notebook(nb, injected, monkeypatch)
    planned = planned_runs(profile, "ed6", "minilm", [seed], results, [nb], overrides)
    assert trained, f"{nb} trained nothing"
    assert [(r.folder, r.config.validate().to_dict()) for r in planned] == trained
    assert all(r.needed_by == [(nb, seed)] for r in planned)


@pytest.mark.parametrize("nb", TRAINING_NOTEBOOKS)
def test_at_the_tuned_recipes_the_notebook_trains_the_fan_out_plan_and_names_each_best_json(nb, tmp_path, monkeypatch,
                                                                                            capsys):
    """Study 2 (TUNED_RECIPES): one list still, and the executed notebook keeps where each recipe came from."""
    from lib.study.profiles import FROZEN_TRAINING

    study = "results/tuning/ko6-me5-small-frozen"
    results = tmp_path / "results-tuned"  # a folder of its own (lib.study.tuned_recipes.check_results_folder)
    overrides = {**FROZEN_TRAINING, "TUNED_RECIPES": study}
    injected = {**notebook_parameters("paper", nb, "ko6", "me5-small", 4, str(results), frozen=True), **overrides}
    trained = _trained_by_notebook(nb, injected, monkeypatch)
    planned = planned_runs("paper", "ko6", "me5-small", [4], results, [nb], overrides, frozen=True)
    assert [(r.folder, r.config.validate().to_dict()) for r in planned] == trained
    study1 = planned_runs("paper", "ko6", "me5-small", [4], results, [nb], dict(FROZEN_TRAINING), frozen=True)
    changed = [r for r, s in zip(planned, study1) if r.config != s.config.validate()]  # planned: validated above
    assert changed and all(r.config.method == "finetune" and r.group is None for r in changed)
    printed = capsys.readouterr().out
    assert f"TUNED_RECIPES '{study}': each run at its method's tuned recipe" in printed
    for run in changed:  # its line: the loss it trains, the best.json it came from, that file's sha256
        best = next(p for p in (PROJECT_ROOT / study).glob("*/best.json")
                    if json.loads(p.read_text(encoding="utf-8"))["config"]["loss"] == run.config.validate().loss)
        sha = hashlib.sha256(best.read_bytes()).hexdigest()
        assert f"  {run.config.validate().loss}: {best.relative_to(PROJECT_ROOT)} (sha256 {sha}, trial " in printed


def test_runs_shared_by_seeds_are_planned_once_and_needed_by_each():
    """The baselines run once (as seed 0) for every seed of notebook 01: one task, three readers."""
    runs = planned_runs("smoke", "ed6", "minilm", [0, 1, 2], Path("/r"), ["01_baseline_ce", "02_triplet"], {})
    folders = [r.folder for r in runs]
    assert len(folders) == len(set(folders)) == 3 + 2 + 2 * 3  # ce x 3 seeds, 2 baselines, 2 triplet losses x 3
    tfidf = next(r for r in runs if r.config.method == "tfidf-lr")
    assert tfidf.config.seed == 0 and tfidf.needed_by == [("01_baseline_ce", 0), ("01_baseline_ce", 1),
                                                           ("01_baseline_ce", 2)]
    # --by-seed: the same runs, every notebook's runs of seed 0 first, then seed 1, ...
    by_seed = planned_runs("smoke", "ed6", "minilm", [0, 1, 2], Path("/r"), ["01_baseline_ce", "02_triplet"], {},
                           by_seed=True)
    assert sorted(r.folder for r in by_seed) == sorted(folders)
    assert [r.config.seed for r in by_seed] == [0] * 5 + [1] * 3 + [2] * 3
    assert [r.config.loss for r in by_seed[-3:]] == ["ce", "triplet", "ce+triplet"]


def test_grid_runs_are_their_own_group_and_the_notebook_groups_split_them():
    params = {**notebook_defaults("04_combined"), "GRID": [[0.15, 0.4, 0.45], [0.6, 0.2, 0.2]], "GRID_EPOCHS": 7}
    runs = notebook_runs("04_combined", params)
    assert [r.group for r in runs] == [None] * len(params["LOSSES"]) + ["grid", "grid"]
    grid = notebook_configs("04_combined", params, group="grid")
    assert [c.loss for c in grid] == ["ce=0.15+triplet=0.4+arcface=0.45", "ce=0.6+triplet=0.2+arcface=0.2"]
    assert all(c.freeze_encoder and c.epochs == 7 for c in grid)
    # notebook_configs reads a notebook's globals(): lowercase names and modules are ignored
    assert notebook_configs("04_combined", {**params, "np": SimpleNamespace(), "x": 1}) == \
        [r.config for r in runs if r.group is None]


def test_a_notebook_that_trains_nothing_is_refused():
    with pytest.raises(ValueError, match="trains no runs"):
        notebook_runs("06_summary", {**notebook_defaults("01_baseline_ce")})


@pytest.mark.parametrize("nb", TRAINING_NOTEBOOKS)
def test_notebooks_build_no_config_of_their_own(nb):
    code = "\n".join(_code_cells(nb)[1:])
    assert f'notebook_configs("{nb}", globals()' in code
    assert "ExperimentConfig(" not in code and "dataclasses.replace" not in code


def test_the_paper_profile_trains_ce_and_combined_fine_tuned_and_every_loss_frozen():
    """PROTOCOL.md: the primary study compares CE and combined; the frozen studies compare every loss."""
    from lib.study.profiles import NOTEBOOKS, notebook_parameters, profile_notebooks

    assert "02_triplet" not in profile_notebooks("paper") and profile_notebooks("paper", frozen=True) == NOTEBOOKS
    assert profile_notebooks("default") == NOTEBOOKS
    fine = {**notebook_defaults("04_combined"), **notebook_parameters("paper", "04_combined", "ko6", "me5-small", 0, "r")}
    frozen = {**notebook_defaults("04_combined"),
              **notebook_parameters("paper", "04_combined", "ko6", "me5-small", 0, "r", frozen=True)}
    assert [c.loss for c in notebook_configs("04_combined", fine)] == ["combined"]  # 0.15 CE + 0.4 triplet + 0.45 ArcFace
    assert len(notebook_configs("04_combined", frozen)) == len(notebook_defaults("04_combined")["LOSSES"]) > 1
    assert notebook_parameters("paper", "06_summary", "ko6", "me5-small", 0, "r", frozen=True)["PROVENANCE"] == "clean"


def test_every_profile_sets_only_parameters_its_notebooks_declare():
    """A typo in a profile (e.g. PATEINCE) would be silently ignored by papermill: refuse it here."""
    from lib.study.profiles import PROFILES, TRAINING_NOTEBOOKS

    for name, p in PROFILES.items():
        for nb in TRAINING_NOTEBOOKS:
            assert set(p["training"]) <= set(notebook_defaults(nb)), (name, nb)
        per_notebook = {**p["notebook"], **p.get("fine_tuned", {}).get("notebook", {})}
        for nb, values in per_notebook.items():
            assert set(values) <= set(notebook_defaults(nb)), (name, nb)


def test_a_template_run_in_jupyterlab_trains_what_the_default_profile_trains():
    """README: a template run as it stands trains seed 0 of the default profile, so its numbers sit
    beside the published study's seed 0."""
    from lib.study.profiles import PROFILES

    p = PROFILES["default"]
    for nb in TRAINING_NOTEBOOKS:
        defaults = notebook_defaults(nb)
        injected = notebook_parameters("default", nb, p["dataset"], p["encoder"], p["seeds"][0],
                                       defaults["RESULTS_DIR"])
        assert {k: defaults[k] for k in injected} == injected, nb


def test_the_default_profile_retrains_seed_0_of_the_published_ed6_study(tmp_path):
    """README: ./run_all.sh trains seed 0 of the published ed6 study with its settings, so every run
    it plans has a published twin that computed the same experiment (the fields run_or_load compares
    before reusing a run; its comparison then names no settings that differ)."""
    from lib.study.experiments import same_config
    from lib.study.profiles import PROFILES

    p = PROFILES["default"]
    published = PROJECT_ROOT / "results" / f"{p['dataset']}-{p['encoder']}"
    planned = planned_runs("default", p["dataset"], p["encoder"], p["seeds"], tmp_path, list(TRAINING_NOTEBOOKS), {})
    assert len(planned) == 15  # 8 losses, 2 baselines, 5 grid heads
    for run in planned:
        twin = published / run.folder.relative_to(tmp_path) / "config.json"
        saved = json.loads(twin.read_text(encoding="utf-8"))
        assert same_config(saved, run.config.validate()), twin  # run_or_load's own comparison


def test_a_notebook_run_by_hand_keeps_tuned_recipes_out_of_a_study_1_folder(tmp_path):
    """JupyterLab keeps no executed copy to tell a folder's recipe source: with TUNED_RECIPES set and the
    notebook's Study 1 RESULTS_DIR, the tuned CE run would replace the Study 1 one in place (same folder name)
    and the summary would pair Study 1's combined loss with tuned CE. Refused by the folder's name."""
    from lib.study.plan import notebook_configs
    from lib.study.profiles import FROZEN_TRAINING
    from lib.study.tuned_recipes import TunedRecipeError

    study = "results/tuning/ko6-me5-small-frozen"
    params: dict = {}
    exec(_code_cells("01_baseline_ce")[0], params)  # the parameters cell, as a reader opens it
    params.update({**notebook_parameters("paper", "01_baseline_ce", "ko6", "me5-small", 4, str(tmp_path / "ko6"),
                                         frozen=True), **FROZEN_TRAINING})
    assert notebook_configs("01_baseline_ce", params)  # the Study 1 recipe, in a Study 1 folder
    with pytest.raises(TunedRecipeError, match=r"named \*-tuned; .*/ko6 is not one"):
        notebook_configs("01_baseline_ce", {**params, "TUNED_RECIPES": study})
    tuned = {**params, "TUNED_RECIPES": study, "RESULTS_DIR": str(tmp_path / "ko6-tuned")}
    assert [c.loss for c in notebook_configs("01_baseline_ce", tuned)][0] == "ce=1.0"
    with pytest.raises(TunedRecipeError, match="ko6-tuned is a folder of runs at tuned recipes"):
        notebook_configs("01_baseline_ce", {**tuned, "TUNED_RECIPES": None})


def test_resplit_and_out_of_domain_reach_every_run_and_resplit_baselines_run_per_seed(tmp_path):
    """RESPLIT and OUT_OF_DOMAIN are notebook parameters like any other: every planned run carries them; with
    a split of each seed's own, the loss-free baselines (otherwise trained once, as seed 0) run for every
    seed, since the seed chooses their training and test sentences."""
    overrides = {"RESPLIT": True, "OUT_OF_DOMAIN": "auto"}
    runs = planned_runs("paper", "ed6", "minilm", [3, 4], tmp_path, ["01_baseline_ce"], overrides)
    assert runs and all(r.config.resplit and r.config.ood == "auto" for r in runs)
    baselines = sorted((r.config.method, r.config.seed) for r in runs if r.config.method != "finetune")
    assert baselines == [("encoder-lr", 3), ("encoder-lr", 4), ("tfidf-lr", 3), ("tfidf-lr", 4)]
    fixed = planned_runs("paper", "ed6", "minilm", [3, 4], tmp_path, ["01_baseline_ce"], {})
    assert {r.config.seed for r in fixed if r.config.method != "finetune"} == {0}
    assert not any(r.config.resplit or r.config.ood for r in fixed)
