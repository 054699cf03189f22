"""Run folders, reuse of finished runs, and the summary's guard against mixed configurations."""
from __future__ import annotations

import json
import subprocess

import pytest

from lib.training.config import ExperimentConfig
from lib.study.experiments import experiment_fields, is_published, method_key, run_folder, same_config
from lib.study.parameters_cell import declared_parameters
from lib.study.runner import absolute_if_path, default_results, executed_parameters, local_results, parse_overrides
from lib.study.summary import collect


def _fake_run(folder, cfg: ExperimentConfig, f1=0.5, encoder="minilm"):
    folder.mkdir(parents=True)
    config = cfg.to_dict()
    config["encoder"] = encoder
    (folder / "config.json").write_text(json.dumps(config))
    test = {"head": {"macro_f1": f1, "accuracy": f1}}
    (folder / "metrics.json").write_text(json.dumps({"primary_rule": "head", "method": cfg.loss, "encoder": encoder,
                                                     "valid": test, "test": test}))


def test_method_keys_and_folders(tmp_path):
    cfg = ExperimentConfig(loss="combined", seed=2).validate()
    assert method_key(cfg) == "ce=0.15+triplet=0.4+arcface=0.45"
    assert run_folder(tmp_path, cfg) == tmp_path / "runs" / "ce0.15_triplet0.4_arcface0.45" / "seed2"
    frozen = ExperimentConfig(loss="combined", freeze_encoder=True).validate()
    assert method_key(frozen).endswith("|frozen")
    assert run_folder(tmp_path, frozen, "grid").parent.parent == tmp_path / "runs" / "grid"
    assert run_folder(tmp_path, frozen) != run_folder(tmp_path, frozen, "grid")


def test_baseline_runs_are_reused_whatever_the_training_settings():
    saved = ExperimentConfig(method="tfidf-lr", epochs=2).to_dict()
    saved["encoder"] = None  # tfidf-lr records no encoder
    assert same_config(saved, ExperimentConfig(method="tfidf-lr", epochs=10, encoder="minilm", head_lr=0.1))
    assert not same_config(saved, ExperimentConfig(method="tfidf-lr", max_eval_samples=10))
    enc = ExperimentConfig(method="encoder-lr", encoder="minilm").to_dict()
    assert not same_config(enc, ExperimentConfig(method="encoder-lr", encoder="me5-small"))


def test_trained_runs_are_reused_only_with_the_same_experiment():
    saved = ExperimentConfig(loss="ce", encoder="minilm", device="cpu").to_dict()
    assert same_config(saved, ExperimentConfig(loss="ce", encoder="minilm", device="cuda", num_threads=4))
    assert not same_config(saved, ExperimentConfig(loss="ce", encoder="minilm", epochs=5))
    assert "device" not in experiment_fields(saved) and "epochs" in experiment_fields(saved)


def test_summary_refuses_runs_of_one_method_with_different_configs(tmp_path):
    _fake_run(tmp_path / "runs" / "ce1.0" / "seed0", ExperimentConfig(loss="ce", seed=0))
    _fake_run(tmp_path / "runs" / "ce1.0" / "seed1", ExperimentConfig(loss="ce", seed=1, epochs=7))
    with pytest.raises(ValueError, match="differ in epochs"):
        collect(tmp_path)


def test_summary_leaves_the_grid_out(tmp_path):
    _fake_run(tmp_path / "runs" / "ce1.0" / "seed0", ExperimentConfig(loss="ce"))
    _fake_run(tmp_path / "runs" / "grid" / "ce1.0-frozen" / "seed0", ExperimentConfig(loss="ce", freeze_encoder=True))
    assert set(collect(tmp_path)["method"]) == {"ce=1.0"}
    assert set(collect(tmp_path, group="grid")["method"]) == {"ce=1.0|frozen"}


def test_runner_helpers(tmp_path, monkeypatch):
    nb = tmp_path / "x.ipynb"
    nb.write_text(json.dumps({"metadata": {"papermill": {"parameters": {"SEED": 1}}}}))
    assert executed_parameters(nb) == {"SEED": 1} and executed_parameters(tmp_path / "none.ipynb") is None
    (tmp_path / "mine.csv").write_text("text,label\n")
    monkeypatch.chdir(tmp_path)
    assert absolute_if_path("mine.csv") == str(tmp_path / "mine.csv")
    assert absolute_if_path("ed6") == "ed6"


def test_runner_parameter_overrides():
    assert {"EPOCHS", "FREEZE_ENCODER", "BASELINES", "SEED"} <= declared_parameters("01_baseline_ce")
    assert "EPOCHS" not in declared_parameters("06_summary")
    got = parse_overrides(["EPOCHS=3", 'LOSSES=["combined"]', "ENCODER=klue/bert-base", "PATIENCE=null"],
                          ["01_baseline_ce", "04_combined"])
    assert got == {"EPOCHS": 3, "LOSSES": ["combined"], "ENCODER": "klue/bert-base", "PATIENCE": None}
    with pytest.raises(ValueError, match="no selected notebook has a parameter 'LOSSES'"):
        parse_overrides(["LOSSES=[]"], ["01_baseline_ce"])  # 04 declares it, but 04 is not selected
    with pytest.raises(ValueError, match="--set takes NAME=VALUE"):
        parse_overrides(["EPOCHS"], ["01_baseline_ce"])


def test_frozen_studies_get_their_own_folder():
    assert default_results("default", "ed32", "minilm", frozen=False) == "results/ed32-minilm"
    assert default_results("default", "ed32", "minilm", frozen=True) == "results/ed32-minilm-frozen"
    assert default_results("paper", "/data/my.csv", "/models/klue", frozen=True) == "results/my-klue-frozen"
    # a design whose seeds each have their own split, and the tuned recipes, each a folder of its own
    assert default_results("paper", "ko6", "me5-small", False, resplit=True) == "results/ko6-me5-small-resplit"
    assert default_results("paper", "ko6", "me5-small", True, tuned=True, resplit=True) == \
        "results/ko6-me5-small-frozen-resplit-tuned"


def test_a_study_trains_into_an_ignored_folder_unless_published(tmp_path):
    from lib.paths import PROJECT_ROOT

    assert local_results("default", "ed32", "minilm", frozen=False) == "results/local/ed32-minilm"
    assert local_results("paper", "ko6", "me5-small", frozen=True) == "results/local/ko6-me5-small-frozen"
    assert local_results("smoke", "ed6", "minilm", frozen=False) == "results/smoke/ed6-minilm"
    assert is_published(PROJECT_ROOT / "results" / "ed6-minilm")
    assert not is_published(PROJECT_ROOT / "results" / "local" / "ed6-minilm")
    assert not is_published(PROJECT_ROOT / "results" / "smoke" / "ed6-minilm") and not is_published(tmp_path)
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/local/ed6-minilm/summary.csv"], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0, "results/local/ is not ignored by git"


def test_notebook_order_by_notebook_or_by_seed():
    from lib.study.runner import jobs

    nbs = ["00_data_exploration", "01_baseline_ce", "04_combined", "05_tsne_analysis", "06_summary"]
    assert list(jobs([3, 7], nbs)) == [("00_data_exploration", None), ("01_baseline_ce", 3), ("01_baseline_ce", 7),
                                       ("04_combined", 3), ("04_combined", 7), ("05_tsne_analysis", 3),
                                       ("06_summary", None)]
    assert list(jobs([3, 7], nbs, by_seed=True)) == [
        ("00_data_exploration", None), ("01_baseline_ce", 3), ("04_combined", 3), ("01_baseline_ce", 7),
        ("04_combined", 7), ("05_tsne_analysis", 3), ("06_summary", None)]
    assert sorted(jobs([0, 1], nbs, by_seed=True), key=str) == sorted(jobs([0, 1], nbs), key=str)  # same set


def test_one_answer_to_whether_a_study_is_frozen():
    from lib.study.runner import is_frozen_study

    assert is_frozen_study([], True) and not is_frozen_study([], False)
    assert is_frozen_study(["FREEZE_ENCODER=true"], False) and not is_frozen_study(["FREEZE_ENCODER=false"], True)
    assert not is_frozen_study(["EPOCHS=3"], False)


def _trainer_that_must_not_run(monkeypatch):
    import lib.training.train as train

    calls = []
    monkeypatch.setattr(train, "run_experiment",
                        lambda cfg, out, quiet=True, **options: calls.append(out) or {"trained": True})
    return calls


def test_a_published_run_trained_otherwise_is_not_replaced(tmp_path, monkeypatch):
    import lib.study.experiments as experiments

    calls = _trainer_that_must_not_run(monkeypatch)
    monkeypatch.setattr(experiments, "is_published", lambda path: True)
    cfg = ExperimentConfig(loss="ce", seed=0, encoder="minilm")
    _fake_run(run_folder(tmp_path, cfg.validate()), cfg.validate())
    assert experiments.run_or_load(cfg, tmp_path)["reused"]  # the same settings: reused
    with pytest.raises(experiments.RunNotReusable, match=r"epochs: 3 there, 15 asked.*--force"):
        experiments.run_or_load(ExperimentConfig(loss="ce", seed=0, encoder="minilm", epochs=15), tmp_path)
    assert calls == []
    experiments.run_or_load(ExperimentConfig(loss="ce", seed=0, encoder="minilm", epochs=15), tmp_path, force=True)
    assert len(calls) == 1  # --force replaces it, as asked
    monkeypatch.setattr(experiments, "is_published", lambda path: False)  # results/local: retrained, as before
    experiments.run_or_load(ExperimentConfig(loss="ce", seed=0, encoder="minilm", epochs=15), tmp_path)
    assert len(calls) == 2


def test_a_notebook_fine_tune_resumes_after_a_kill_and_a_frozen_run_keeps_no_checkpoint(tmp_path, monkeypatch):
    import lib.study.experiments as experiments
    import lib.training.train as train
    from lib.training import checkpoint

    asked = []
    monkeypatch.setattr(train, "run_experiment", lambda cfg, out, quiet=True, **options: asked.append(options) or {})
    experiments.run_or_load(ExperimentConfig(loss="ce", seed=0, encoder="minilm"), tmp_path)
    experiments.run_or_load(ExperimentConfig(loss="ce", seed=0, encoder="minilm", freeze_encoder=True), tmp_path)
    assert asked == [{"resume": True}, {}]  # heads on cached features take seconds: nothing to resume
    cfg = ExperimentConfig(loss="ce", seed=1, encoder="minilm").validate()
    out = run_folder(tmp_path, cfg)
    _fake_run(out, cfg)
    left = checkpoint.folder(out)  # a kill between publishing the run and deleting its checkpoint
    left.mkdir()
    assert experiments.run_or_load(cfg, tmp_path)["reused"] and not left.exists()


def test_render_only_trains_nothing(tmp_path, monkeypatch):
    import lib.study.experiments as experiments

    calls = _trainer_that_must_not_run(monkeypatch)
    cfg = ExperimentConfig(loss="ce", seed=0, encoder="minilm")
    _fake_run(run_folder(tmp_path, cfg.validate()), cfg.validate())
    monkeypatch.setenv(experiments.RENDER_ONLY_ENV, "1")
    assert experiments.run_or_load(cfg, tmp_path)["reused"]
    with pytest.raises(experiments.RunNotReusable, match="seed1 is missing or unfinished, and --render-only"):
        experiments.run_or_load(ExperimentConfig(loss="ce", seed=1, encoder="minilm"), tmp_path)
    with pytest.raises(experiments.RunNotReusable,  # other settings: not trained either, published or not
                       match="seed0 holds a run trained with other settings \\(epochs: 3 there, 15 asked\\), and "
                             "--render-only trains nothing"):
        experiments.run_or_load(ExperimentConfig(loss="ce", seed=0, encoder="minilm", epochs=15), tmp_path)
    assert calls == []


@pytest.mark.parametrize("extra", [["--force"], ["--ray"]])
def test_render_only_takes_no_option_that_trains(extra, capsys):
    from lib.study.runner import main

    assert main(["--render-only", *extra]) == 2
    assert "--render-only trains nothing" in capsys.readouterr().err


def test_the_weight_grid_is_chosen_on_validation_and_an_empty_grid_is_said_so():
    """Notebook 04's grid cell (lib.study.experiments.grid_choice): the a-priori rule's row with the best
    validation macro-F1, never the best test score; GRID = [] trains no head and says so."""
    from lib.study.experiments import grid_choice

    def run(valid, test):
        return {"rules": ["head", "centroid"], "primary_rule": "centroid",
                "valid": {"head": {"macro_f1": 0.9}, "centroid": {"macro_f1": valid}},
                "test": {"head": {"macro_f1": 0.9, "accuracy": 0.9}, "centroid": {"macro_f1": test, "accuracy": test}}}
    text, grid = grid_choice({"ce=0.6+triplet=0.2+arcface=0.2": run(0.50, 0.70),
                              "ce=0.15+triplet=0.4+arcface=0.45": run(0.55, 0.60)})
    assert text.startswith("Chosen on validation: **Combined (seed weights)** (validation macro-F1 0.550")
    assert list(grid["rule"]) == ["centroid *", "centroid *"] and grid["valid_macro_f1"].is_monotonic_decreasing
    text, grid = grid_choice({})
    assert text == "No weight grid: GRID is empty." and grid.empty


def test_a_tuned_sum_is_listed_under_the_method_with_its_parts():
    from lib.study.experiments import display_name, listed_method

    assert listed_method("ce=0.4+triplet=0.3+arcface=0.3") == "ce=0.15+triplet=0.4+arcface=0.45"
    assert listed_method("ce=0.4+triplet=0.3+arcface=0.3|frozen") == "ce=0.15+triplet=0.4+arcface=0.45|frozen"
    assert listed_method("ce=0.2+supcon=0.8") == "ce=0.5+supcon=0.5"
    assert listed_method("ce=1.0") == "ce=1.0" and listed_method("tfidf-lr") == "tfidf-lr"
    assert listed_method("ce=0.5+supcon=0.3+arcface=0.2") == "ce=0.5+supcon=0.3+arcface=0.2"  # no listed method
    assert display_name("ce=0.2+supcon=0.8") == "CE + SupCon (weights 0.2 / 0.8)"


def test_every_field_a_published_config_lacks_is_registered_with_the_value_it_was_added_with(monkeypatch):
    """A field added to ExperimentConfig after runs were published must be in ADDED_LATER: otherwise a
    published run would read as the field's current default, whatever that is by then."""
    from dataclasses import fields

    from lib.paths import PROJECT_ROOT
    from lib.training.config import ADDED_LATER

    names = {f.name for f in fields(ExperimentConfig)}
    assert set(ADDED_LATER) <= names
    configs = [p for p in (PROJECT_ROOT / "results").rglob("config.json") if "model" not in p.parts]
    assert len(configs) > 100  # the published run folders
    lacking = set().union(*(names - set(json.loads(p.read_text(encoding="utf-8"))) for p in configs))
    assert lacking and lacking <= set(ADDED_LATER)
    old = {k: v for k, v in json.loads(configs[0].read_text(encoding="utf-8")).items() if k not in ADDED_LATER}
    monkeypatch.setitem(ADDED_LATER, "resplit", "as added")  # read from the registry, not the current default
    assert ExperimentConfig.from_dict(old).resplit == "as added"
    assert experiment_fields(old)["resplit"] == "as added"
