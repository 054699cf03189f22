"""A new loss is one file in lib/model/losses/: the registry makes lib.run, the config, the plan and the
prediction rules know it, and the four built-ins behave exactly as before the registry.

The toy loss below is written as a file into a folder added to the package's path, the way a new
lib/model/losses/<name>.py would be found, and trained end to end with a tiny encoder (seconds).
"""
from __future__ import annotations

import importlib
import itertools
import json
import string
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lib.model.losses as losses
from lib.model.losses import (Loss, LossParameter, WeightedSumLoss, build_loss, enabled_rules, loss_names,
                              loss_parameters, positive_number, register, unregister)
from lib.paths import PROJECT_ROOT
from lib.training.config import ConfigError, ExperimentConfig

BUILT_INS = ("ce", "triplet", "arcface", "supcon")

# The whole of a new loss: this text as lib/model/losses/toy.py.
TOY_MODULE = '''
"""Toy loss: cross-entropy of scaled cosine similarities to learnable class centres."""
import torch
import torch.nn.functional as F
from torch import nn

from .registry import Loss, LossParameter, positive_number, register

BUILT = []  # every module built, so a test sees its parameter arrive and its centres train


class ToyLoss(nn.Module):
    def __init__(self, num_classes: int, embedding_dim: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.centres = nn.Parameter(torch.randn(num_classes, embedding_dim))
        self.initial = self.centres.detach().clone()
        BUILT.append(self)

    def logits(self, embeddings):
        return self.scale * F.normalize(embeddings, dim=1) @ F.normalize(self.centres, dim=1).T

    def forward(self, embeddings, labels):
        return F.cross_entropy(self.logits(embeddings), labels)


register(Loss(
    "toy", consumes="embeddings", rule="toy",
    build=lambda p, num_classes, embedding_dim: ToyLoss(num_classes, embedding_dim, p["toy_scale"]),
    parameters=(LossParameter("toy_scale", 1.0, "scale of the cosine logits", positive_number),),
))
'''

TINY_RUN = ["--dataset", "ed6", "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--max-train-samples",
            "48", "--max-eval-samples", "48", "--device", "cpu", "--quiet"]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """lib/model/losses/toy.py, as the package finds it; removed again afterwards."""
    folder = tmp_path / "more_losses"
    folder.mkdir()
    (folder / "toy.py").write_text(TOY_MODULE, encoding="utf-8")
    monkeypatch.setattr(losses, "__path__", [*losses.__path__, str(folder)])
    importlib.invalidate_caches()
    losses._import_loss_modules()  # what importing the package does
    try:
        yield sys.modules["lib.model.losses.toy"]
    finally:
        unregister("toy")
        sys.modules.pop("lib.model.losses.toy", None)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    from tests.tiny_encoder import make_tiny_bert

    return str(make_tiny_bert(tmp_path_factory.mktemp("encoder") / "tiny-bert", [string.printable]))


def test_the_file_registers_the_loss_after_the_built_ins(toy):
    assert loss_names() == BUILT_INS + ("toy",) and losses.LOSS_NAMES == loss_names()
    assert losses.parse_loss_spec("toy=0.5+ce=0.5") == {"ce": 0.5, "toy": 0.5}  # canonical order: built-ins first
    assert losses.format_loss_spec({"toy": 1, "arcface": 2}) == "arcface=2.0+toy=1.0"
    assert enabled_rules(["ce", "toy"]) == {"head": "ce", "toy": "toy"}


def test_a_new_loss_trains_through_lib_run(toy, tiny_encoder, tmp_path):
    from lib.run import main

    out = tmp_path / "run"
    assert main(TINY_RUN + ["--encoder", tiny_encoder, "--loss", "toy=0.5+ce=0.5", "--loss-option", "toy_scale=4",
                            "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["loss"] == "ce=0.5+toy=0.5" and config["loss_options"] == {"toy_scale": 4.0}
    [module] = toy.BUILT
    assert module.scale == 4.0  # the option reached the module, as a number
    assert not torch.equal(module.centres.detach(), module.initial)  # its own parameters were trained
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["rules"] == ["head", "centroid", "knn", "toy"] and metrics["primary_rule"] == "centroid"
    # The toy rule predicts with the loss's own logits(embeddings), on the saved test embeddings.
    predictions = pd.read_csv(out / "predictions.csv")
    embeddings = torch.from_numpy(np.load(out / "test_embeddings.npy"))
    with torch.no_grad():
        expected = module.logits(embeddings).argmax(1).numpy()
    assert (predictions["pred_toy"].to_numpy() == expected).all()
    accuracy = float(np.mean(predictions["pred_toy"].to_numpy() == predictions["label"].to_numpy()))
    assert metrics["test"]["toy"]["accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize("argv, message", [
    (["--loss", "toy", "--loss-option", "toy_scale=-1"], "loss option toy_scale must be a positive number, got '-1'"),
    (["--loss", "ce", "--loss-option", "toy_scale=2"], "toy_scale: a parameter of loss 'toy', which loss ce=1.0 "
                                                         "does not use"),
    (["--loss", "toy", "--loss-option", "toy_scal=2"], "toy_scal: no registered loss has this parameter"),
    (["--loss", "triplet", "--loss-option", "triplet_margin=2"], "--triplet-margin"),
])
def test_bad_loss_options_are_refused_naming_the_parameter(toy, argv, message, tmp_path, capsys):
    from lib.run import main

    assert main(TINY_RUN + argv + ["--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and toy.BUILT == []


def test_a_new_loss_and_its_notebook_parameter_go_through_the_plan(toy, tiny_encoder, tmp_path):
    from lib.study.experiments import run_folder, run_or_load
    from lib.study.plan import notebook_runs

    params = dict(DATASET="ed6", TEXT_COLUMN="text", LABEL_COLUMN="label", ENCODER=tiny_encoder, SEED=0, EPOCHS=1,
                  BATCH_SIZE=16, MAX_LENGTH=32, ENCODER_LR=3e-5, HEAD_LR=1e-3, FREEZE_ENCODER=False, BF16=False,
                  PATIENCE=None, MAX_TRAIN_SAMPLES=48, MAX_EVAL_SAMPLES=48, TRIPLET_MARGIN=0.3, ARCFACE_MARGIN=0.5,
                  ARCFACE_SCALE=8.0, SUPCON_TEMPERATURE=0.2, LOSSES=["toy", "supcon"], GRID=[],
                  GRID_FREEZE_ENCODER=True, GRID_EPOCHS=1, TOY_SCALE=3.0)
    toy_cfg, supcon_cfg = [r.config for r in notebook_runs("04_combined", params)]
    # A loss's parameters reach only the runs that use that loss.
    assert (toy_cfg.loss_options, toy_cfg.supcon_temperature) == ({"toy_scale": 3.0}, 0.1)
    assert (supcon_cfg.loss_options, supcon_cfg.supcon_temperature) == (None, 0.2)
    results = tmp_path / "results"
    metrics = run_or_load(toy_cfg, results, quiet=True)
    assert not metrics["reused"] and [m.scale for m in toy.BUILT] == [3.0]
    assert (run_folder(results, toy_cfg.validate()) / "metrics.json").is_file()
    assert run_or_load(toy_cfg, results, quiet=True)["reused"]  # the saved config.json reads back equal
    assert len(toy.BUILT) == 1


def test_built_in_loss_parameters_reach_only_their_runs_in_the_plan():
    """A ce run planned by notebook 02 is the same configuration as notebook 01's (one run folder)."""
    from lib.study.plan import notebook_runs

    params = dict(DATASET="ed6", TEXT_COLUMN="text", LABEL_COLUMN="label", ENCODER="minilm", SEED=0, EPOCHS=1,
                  BATCH_SIZE=16, MAX_LENGTH=32, ENCODER_LR=3e-5, HEAD_LR=1e-3, FREEZE_ENCODER=False, BF16=False,
                  PATIENCE=None, MAX_TRAIN_SAMPLES=None, MAX_EVAL_SAMPLES=None, TRIPLET_MARGIN=0.5,
                  TRIPLET_MINING="hard", TRIPLET_DISTANCE="cosine", SAMPLER="random", LOSSES=["ce", "ce+triplet"],
                  BASELINES=[])
    ce, both = [r.config for r in notebook_runs("02_triplet", params)]
    assert (ce.triplet_margin, ce.triplet_mining, ce.triplet_distance) == (0.3, "all", "euclidean")
    assert (both.triplet_margin, both.triplet_mining, both.triplet_distance) == (0.5, "hard", "cosine")
    [ce_01] = [r.config for r in notebook_runs("01_baseline_ce", params)]
    assert ce_01 == ce


# ----------------------------------------------------------------------------- the built-ins, as before


def _old_rules(weights) -> list[str]:
    """lib.training.train.run_rules (then _rules) before the registry."""
    from lib.evaluation.evaluate import RULES

    return [r for r in RULES if (r != "arcface" or "arcface" in weights) and (r != "head" or "ce" in weights)]


@pytest.mark.parametrize("names", [c for k in range(1, 5) for c in itertools.combinations(BUILT_INS, k)])
def test_built_in_losses_keep_their_rules_and_inputs(names):
    from lib.training.rules import apriori_rule
    from lib.training.train import run_rules

    spec = "+".join(names)
    assert apriori_rule("finetune", spec) == ("head" if names == ("ce",) else "centroid")
    assert run_rules(dict.fromkeys(names, 1.0)) == _old_rules(names)
    loss = build_loss(dict.fromkeys(names, 1.0), 3, 6)
    assert loss.consumes == {n: "logits" if n == "ce" else "embeddings" for n in names}


def test_built_in_parameters_are_config_fields_declared_by_their_registration():
    cfg_fields = {f.name: f for f in fields(ExperimentConfig)}
    expected = {"triplet_margin": 0.3, "triplet_mining": "all", "triplet_distance": "euclidean",
                "arcface_margin": 0.5, "arcface_scale": 8.0, "supcon_temperature": 0.1}
    assert {n: p.default for n, p in loss_parameters(BUILT_INS).items()} == expected
    assert {n for n, f in cfg_fields.items() if f.metadata.get("loss_parameter")} == set(expected)
    defaults = ExperimentConfig()
    assert {n: getattr(defaults, n) for n in expected} == expected and defaults.loss_options is None
    assert cfg_fields["triplet_mining"].metadata["choices"] == ("all", "semihard", "hard")
    assert ExperimentConfig(loss="combined").validate().loss_options is None  # built-ins need no options


def test_published_configs_still_read_as_the_same_experiment():
    """run_or_load reuses a published run when experiment_fields agree; config.json files saved before
    loss_options existed lack it (read as None)."""
    from lib.study.experiments import experiment_fields

    before = ExperimentConfig(loss="combined").validate().to_dict()
    del before["loss_options"]
    saved_configs = sorted((PROJECT_ROOT / "results").glob("**/runs/**/config.json"))
    assert len(saved_configs) > 100
    for path in [None, *saved_configs]:
        saved = before if path is None else json.loads(path.read_text(encoding="utf-8"))
        asked = experiment_fields(ExperimentConfig.from_dict(saved).validate().to_dict())
        have = experiment_fields(saved)
        assert {k: (have.get(k), v) for k, v in asked.items() if have.get(k) != v} == {}, path


# ----------------------------------------------------------------------------- registry and config checks


def _dummy(p, num_classes, embedding_dim):
    return torch.nn.Identity()


@pytest.mark.parametrize("entry, message", [
    (Loss("Bad-Name", _dummy, "embeddings"), "lower-case letters"),
    (Loss("combined", _dummy, "embeddings"), "not 'combined'"),
    (Loss("ce", _dummy, "logits", rule="head"), "registered already"),
    (Loss("toy2", _dummy, "pixels"), "consumes must be one of logits, embeddings"),
    (Loss("toy2", _dummy, "logits"), "enables the 'head' rule"),
    (Loss("toy2", _dummy, "embeddings", rule="head"), "enables the 'head' rule"),
    (Loss("toy2", _dummy, "embeddings", rule="arcface"), "rule must be None, 'head' .* or 'toy2'"),
    (Loss("toy2", _dummy, "embeddings", parameters=(LossParameter("scale", 1.0, "", positive_number),)),
     "must be named toy2_<what>"),
    (Loss("toy2", _dummy, "embeddings", parameters=(LossParameter("toy2_scale", 0.0, "", positive_number),)),
     "toy2_scale must be a positive number"),
])
def test_malformed_registrations_are_refused(entry, message):
    with pytest.raises(ValueError, match=message):
        register(entry)
    assert loss_names() == BUILT_INS


def test_a_rule_needs_the_modules_logits():
    register(Loss("toy2", _dummy, "embeddings", rule="toy2"))
    try:
        with pytest.raises(ValueError, match="no logits"):
            build_loss({"toy2": 1.0}, 3, 4)
    finally:
        unregister("toy2")


def test_loss_options_in_a_config(toy):
    cfg = ExperimentConfig(loss="ce+toy", loss_options='{"toy_scale": "2.5"}').validate()  # JSON text, number as text
    assert cfg.loss_options == {"toy_scale": 2.5} and cfg.loss_parameter_values()["toy_scale"] == 2.5
    assert ExperimentConfig(loss="toy").validate().loss_options == {"toy_scale": 1.0}  # the default, recorded
    with pytest.raises(ConfigError, match="loss_options must be a mapping"):
        ExperimentConfig(loss="toy", loss_options="toy_scale=2").validate()
    with pytest.raises(ConfigError, match="loss option toy_scale must be a positive number"):
        ExperimentConfig(loss="toy", loss_options={"toy_scale": float("nan")}).validate()


def test_loss_option_names_are_the_parameters_without_a_config_field(toy):
    from lib.training.config import is_config_field, loss_option_names

    assert loss_option_names() == ["toy_scale"]  # the built-ins' parameters are config fields
    assert loss_option_names(["ce", "triplet"]) == [] and loss_option_names(["toy"]) == ["toy_scale"]
    assert is_config_field("triplet_margin") and not is_config_field("toy_scale")


def test_weighted_sum_calls_each_part_on_what_it_consumes(toy):
    torch.manual_seed(0)
    loss = build_loss({"ce": 1.0, "toy": 1.0}, 3, 4, toy_scale=2.0)
    assert isinstance(loss, WeightedSumLoss) and loss.consumes == {"ce": "logits", "toy": "embeddings"}
    e, z, y = torch.randn(6, 4), torch.randn(6, 3), torch.arange(6) % 3
    total, parts = loss(e, z, y)
    torch.testing.assert_close(parts["ce"], torch.nn.functional.cross_entropy(z, y))
    torch.testing.assert_close(parts["toy"], loss.parts["toy"](e, y).detach())
    with pytest.raises(ValueError, match="unknown loss parameter.*toy_scal"):
        build_loss({"toy": 1.0}, 3, 4, toy_scal=2.0)


# ---- a loss of one's own on the study's other paths: run_all.sh --set, and the tuning search ----

def test_a_new_losss_parameter_reaches_the_notebooks_with_losses_from_run_all(toy, tmp_path):
    from lib.study.fanout import planned_runs
    from lib.study.parameters_cell import accepts, loss_option_parameters
    from lib.study.runner import parse_overrides

    assert "TOY_SCALE" in loss_option_parameters() and "TRIPLET_MARGIN" not in loss_option_parameters()
    assert parse_overrides(["TOY_SCALE=3", "LOSSES=[\"toy\"]"], ["04_combined"]) == {"TOY_SCALE": 3, "LOSSES": ["toy"]}
    with pytest.raises(ValueError, match="TOY_SCALE"):  # notebook 01 trains no list of losses
        parse_overrides(["TOY_SCALE=3"], ["01_baseline_ce"])
    with pytest.raises(ValueError, match="TOY_SCAL"):
        parse_overrides(["TOY_SCAL=3"], ["04_combined"])
    assert [accepts(nb, "TOY_SCALE", {"TOY_SCALE"}) for nb in ("01_baseline_ce", "02_triplet", "04_combined")] == \
        [False, True, True]
    (run,) = planned_runs("smoke", "ed6", "minilm", [0], tmp_path, ["04_combined"],
                          {"LOSSES": ["toy"], "GRID": [], "TOY_SCALE": 3.0})  # the Ray path's plan
    assert (run.config.loss, run.config.loss_options) == ("toy", {"toy_scale": 3.0})


def test_papermill_is_quiet_only_about_the_loss_parameters_passed_on_purpose(monkeypatch, caplog):
    import logging

    from lib.study.runner import quiet_papermill_about

    logger = logging.getLogger("papermill")
    monkeypatch.setattr(logger, "filters", [])  # this test's filter goes with it
    quiet_papermill_about({"TOY_SCALE"})
    with caplog.at_level(logging.WARNING, logger="papermill"):
        logger.warning("Passed unknown parameter: TOY_SCALE")
        logger.warning("Passed unknown parameter: TOY_SCAL")
    assert [r.getMessage() for r in caplog.records] == ["Passed unknown parameter: TOY_SCAL"]


def test_a_search_refuses_a_loss_without_a_space_and_tunes_one_with_its_space(toy, monkeypatch):
    from lib.study import search_spaces, tuning

    with pytest.raises(search_spaces.SearchSpaceError, match=r"loss 'toy' has no search space: add OWN\['toy'\]"):
        search_spaces.declared("ce+toy", False, 15)
    monkeypatch.setitem(search_spaces.OWN, "toy", {"toy_scale": ("log", 1.0, 16.0)})
    base = ExperimentConfig(loss="ce=0.5+toy=0.5").validate()
    search = tuning.Search(dataset="ed6", encoder="minilm", method="ce+toy", setting="x", trials=1, max_epochs=15,
                           grace_epochs=2, startup_trials=1, seeds=(100, 101), confirm_seeds=(200,), frozen=False,
                           base=base.to_dict(), folder="unused")
    point = search_spaces.recipe_point(search.base, search.method, False, 15)
    assert point["toy_scale"] == 1.0  # the recipe's value: the registered default, from loss_options
    params = {**search_spaces.config_fields({**point, "toy_scale": 6.0}, search.method), "trial_number": 0}
    configs = tuning.trial_configs(search, params, search.seeds)
    # the sampled value is the runs' parameter (not dropped for want of a config field)
    assert [(c.seed, c.loss_options) for c in configs] == [(100, {"toy_scale": 6.0}), (101, {"toy_scale": 6.0})]
    from lib.study.recipe_effect import recipe_fields

    assert "toy_scale" in recipe_fields("ce+toy")


def test_a_tuned_loss_of_ones_own_is_trained_at_its_recipe_and_compared_with_its_study_1_recipe(toy, tmp_path,
                                                                                                monkeypatch):
    """The winner's searched loss option reaches the tuned run (tuned_config), a non-searched one must agree,
    and the recipe-effect comparison accepts the two arms differing in it (check_same_settings)."""
    from lib.study import search_spaces
    from lib.study.recipe_effect import RecipeEffectError, check_same_settings

    monkeypatch.setitem(search_spaces.OWN, "toy", {"toy_scale": ("log", 1.0, 16.0)})  # as its author adds it
    from lib.study.tuned_recipes import Recipe, TunedRecipeError, tuned_config

    winner = ExperimentConfig(loss="toy", head_lr=0.004, loss_options={"toy_scale": 6.0}, seed=100).validate()
    recipe = Recipe(method="toy", best_json=Path("results/tuning/x/toy/best.json"), sha256="0", trial_id="t",
                    winner=winner, searched=("head_lr", "toy_scale", "loss"), tuning_seeds=(100, 101, 200, 201))
    tuned = tuned_config(ExperimentConfig(loss="toy", seed=300), [recipe], "x", "04_combined").validate()
    assert (tuned.head_lr, tuned.loss_options, tuned.seed) == (0.004, {"toy_scale": 6.0}, 300)
    with pytest.raises(TunedRecipeError, match="tuned with epochs 3, but this notebook plans epochs 7"):
        tuned_config(ExperimentConfig(loss="toy", seed=300, epochs=7), [recipe], "x", "04_combined")

    def arm(name: str, cfg: ExperimentConfig) -> pd.DataFrame:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
        return pd.DataFrame({"method": ["toy"], "run_path": [str(folder)]})

    study_1 = ExperimentConfig(loss="toy", seed=300).validate()  # toy_scale at its default, 1.0
    check_same_settings(arm("tuned", tuned), arm("recipe", study_1), "toy", "toy")
    with pytest.raises(RecipeEffectError, match="batch_size"):
        check_same_settings(arm("tuned64", replace(tuned, batch_size=64)), arm("recipe2", study_1), "toy", "toy")


def test_run_all_passes_a_loss_option_to_the_notebooks_with_losses_only(toy, tmp_path, monkeypatch):
    """The sequential path of run_all.sh: --set TOY_SCALE reaches 04's parameters, not 01's (papermill stood in)."""
    import papermill as pm

    from lib.study import runner

    calls = []

    def execute_notebook(source, output, parameters=None, **kwargs):
        calls.append((Path(source).stem, dict(parameters)))
        Path(output).write_text(json.dumps({"cells": [], "metadata": {"papermill": {"parameters": parameters}},
                                            "nbformat": 4, "nbformat_minor": 5}))

    monkeypatch.setattr(pm, "execute_notebook", execute_notebook)
    monkeypatch.setattr(runner, "ensure_kernel", lambda: None)
    code = runner.main(["--profile", "smoke", "--seeds", "0", "--notebooks", "01_baseline_ce,04_combined",
                        "--set", "TOY_SCALE=3", "--set", 'LOSSES=["toy"]', "--results", str(tmp_path / "study")])
    assert code == 0
    assert [(nb, params.get("TOY_SCALE")) for nb, params in calls] == [("01_baseline_ce", None),
                                                                       ("04_combined", 3)]
