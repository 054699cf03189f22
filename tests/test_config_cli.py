"""The config validates every parameter; the command line exposes every field."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from lib.training.config import ConfigError, ExperimentConfig
from lib.paths import PROJECT_ROOT
from lib.run import build_parser, main


def test_help_documents_every_config_field():
    text = build_parser().format_help()
    for f in dataclasses.fields(ExperimentConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    for flag in ("--dataset", "--encoder", "--loss", "--seed", "--epochs", "--max-train-samples", "--out"):
        assert flag in text


def test_cli_parses_into_config():
    args = build_parser().parse_args(["--loss", "ce=0.5 + supcon=0.5", "--freeze-encoder", "--max-train-samples",
                                      "100", "--triplet-mining", "hard", "--freeze-word-embeddings", "false"])
    from lib.training.config import config_from_args
    cfg = config_from_args(args).validate()
    assert cfg.loss == "ce=0.5+supcon=0.5" and cfg.freeze_encoder is True and cfg.max_train_samples == 100
    assert cfg.triplet_mining == "hard" and cfg.freeze_word_embeddings is False


def test_named_loss_is_normalised_to_its_weights():
    assert ExperimentConfig(loss="combined").validate().loss == "ce=0.15+triplet=0.4+arcface=0.45"


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be a positive integer"),
    ("batch_size", -4, "batch_size must be a positive integer"),
    ("encoder_lr", 0.0, "encoder_lr must be a positive number"),
    ("head_lr", float("nan"), "head_lr must be a positive number"),
    ("triplet_margin", -0.1, "triplet_margin must be a positive number"),
    ("arcface_margin", 28.6, "arcface_margin is in radians.*did you give degrees"),
    ("arcface_scale", 0, "arcface_scale must be a positive number"),
    ("loss", "ce=0+triplet=0", "loss:"),
    ("loss", "focal", "loss:.*focal"),
    ("triplet_mining", "easy", "triplet_mining must be one of all, semihard, hard"),
    ("dropout", 1.0, "dropout must be in"),
    ("seed", -1, "seed must be an integer in"),
])
def test_bad_parameters_name_themselves(field, value, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(**{field: value}).validate()


def test_triplet_with_a_batch_that_cannot_form_a_triplet_is_refused():
    with pytest.raises(ConfigError, match="cannot form a triplet"):
        ExperimentConfig(loss="triplet", batch_size=2).validate()
    with pytest.raises(ConfigError, match="samples_per_class must be >= 2"):
        ExperimentConfig(loss="triplet", sampler="balanced", samples_per_class=1, batch_size=8).validate()


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--epochs", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: epochs must be a positive integer") and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_unknown_dataset_exits_2_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--dataset", "nope", "--out", str(out), "--quiet"]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # not even a .partial folder


def test_python_m_lib_run_help():
    r = subprocess.run([sys.executable, "-m", "lib.run", "--help"], capture_output=True, text=True,
                       cwd=PROJECT_ROOT, timeout=120)
    assert r.returncode == 0 and "--arcface-margin" in r.stdout and "radians" in r.stdout
