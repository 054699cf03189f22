"""One real (tiny) training run end to end: files, determinism, failures, frozen mode."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import torch

from lib.training import train
from lib.training.results import collect_runs, find_runs
from lib.training.train import NonFiniteLossError, run_experiment

RUN_FILES = {"config.json", "environment.json", "history.csv", "leakage.json", "metrics.json", "predictions.csv",
             "test_embeddings.npy"}


@pytest.fixture(scope="module")
def combined_run(tmp_path_factory):
    from lib.training.config import ExperimentConfig
    from tests.conftest import TINY

    cfg = ExperimentConfig(**{k: v for k, v in TINY.items() if k != "quiet"}, loss="combined", seed=3)
    out = tmp_path_factory.mktemp("runs") / "combined"
    metrics = run_experiment(cfg, out, quiet=True)
    return cfg, out, metrics


def test_run_folder_is_complete(combined_run):
    cfg, out, metrics = combined_run
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert not out.with_name(out.name + ".partial").exists()
    saved = json.loads((out / "config.json").read_text())
    assert saved["loss"] == "ce=0.15+triplet=0.4+arcface=0.45" and saved["encoder"] == "minilm"
    # The seed study's rule for its combined loss (PROTOCOL.md): the nearest class centroid.
    assert metrics["primary_rule"] == "centroid" and set(metrics["test"]) == {"head", "centroid", "knn", "arcface"}
    for key in ("precision_at_1", "map_at_r", "silhouette_cosine"):
        assert np.isfinite(metrics["embedding_test"][key])
    assert 0 <= metrics["test"]["head"]["ece"] <= 1
    env = json.loads((out / "environment.json").read_text())
    assert env["packages"]["torch"].startswith("2.13.0") and "commit" in env["git"]
    assert env["device"] == {"type": "cpu"}
    written = datetime.fromisoformat(env["written_utc"])
    assert written.tzinfo is not None and abs((datetime.now(timezone.utc) - written).total_seconds()) < 3600
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 48 and preds["id"].is_monotonic_increasing
    emb = np.load(out / "test_embeddings.npy", allow_pickle=False)
    assert emb.shape == (48, 128)
    hist = pd.read_csv(out / "history.csv")
    assert {"train_loss_ce", "train_loss_triplet", "train_loss_arcface", "valid_macro_f1"} <= set(hist.columns)


def test_same_config_and_seed_give_identical_results(combined_run, tmp_path):
    cfg, out, metrics = combined_run
    again = run_experiment(cfg, tmp_path / "again", quiet=True)
    for key in ("test", "valid", "embedding_test", "best_epoch"):
        assert again[key] == metrics[key], key
    assert (pd.read_csv(out / "predictions.csv").equals(pd.read_csv(tmp_path / "again" / "predictions.csv")))
    assert np.array_equal(np.load(out / "test_embeddings.npy"), np.load(tmp_path / "again" / "test_embeddings.npy"))


def test_another_seed_gives_another_model(combined_run, tmp_path, tiny_config):
    _, out, metrics = combined_run
    other = tiny_config(loss="combined", seed=4)
    run_experiment(other, tmp_path / "s4", quiet=True)
    assert not np.array_equal(np.load(out / "test_embeddings.npy"), np.load(tmp_path / "s4" / "test_embeddings.npy"))


def test_arcface_centres_are_trained(tiny_config, tmp_path, monkeypatch):
    seen = {}
    real = train.build_optimizer

    def spy(model, loss_fn, cfg, steps):
        seen["before"] = loss_fn.parts["arcface"].centres.detach().clone()
        seen["module"] = loss_fn.parts["arcface"]
        return real(model, loss_fn, cfg, steps)

    monkeypatch.setattr(train, "build_optimizer", spy)
    run_experiment(tiny_config(loss="arcface", max_train_samples=16, max_eval_samples=16), tmp_path / "arc", quiet=True)
    assert not torch.allclose(seen["before"], seen["module"].centres.detach())


def test_frozen_encoder_mode_trains_heads_on_cached_vectors(tiny_config, tmp_path):
    m = run_experiment(tiny_config(loss="triplet", freeze_encoder=True, epochs=2), tmp_path / "frozen", quiet=True)
    assert m["primary_rule"] == "centroid" and "encode_seconds" in m["timings"]
    # No cross-entropy, so the classifier never trained: no head rule, no ECE, no confidence column.
    assert set(m["test"]) == {"centroid", "knn"} and "ece" not in m["test"]["centroid"]
    assert "head_confidence" not in pd.read_csv(tmp_path / "frozen" / "predictions.csv").columns
    again = run_experiment(tiny_config(loss="triplet", freeze_encoder=True, epochs=2), tmp_path / "f2", quiet=True)
    assert again["test"] == m["test"]


def test_non_finite_loss_stops_and_marks_the_run_failed(tiny_config, tmp_path, monkeypatch):
    from lib.model.losses import triplet

    monkeypatch.setattr(triplet.TripletLoss, "forward", lambda self, e, y: e.sum() * float("nan"))
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1: part\\(s\\) triplet"):
        run_experiment(tiny_config(loss="ce+triplet"), out, quiet=True)
    assert not out.exists()
    failed = json.loads((tmp_path / "nan.partial" / "FAILED.json").read_text())
    assert failed["status"] == "failed" and "NonFiniteLossError" in failed["error"]
    assert find_runs(tmp_path) == []


def test_collect_runs_reads_complete_runs_only(combined_run, tmp_path):
    _, out, metrics = combined_run
    table = collect_runs(out.parent)
    assert set(table["method"]) == {"ce=0.15+triplet=0.4+arcface=0.45"}
    primary = table[(table["split"] == "test") & table["primary"]]
    assert len(primary) == 1 and primary["macro_f1"].iloc[0] == pytest.approx(metrics["test_macro_f1"])
    assert primary["hardware"].iloc[0].startswith("CPU ")  # the machine, for the summary's provenance


def test_bf16_on_a_gpu_without_bfloat16_is_refused_with_the_parameter_named(monkeypatch):
    from lib.training.config import ConfigError

    # torch.cuda.is_bf16_supported() says True on a T4 (it counts emulation): the compute capability decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    with pytest.raises(ConfigError, match="Tesla T4.*BF16 = False"):
        train.pick_device("auto", bf16=True)
    assert train.pick_device("auto", bf16=False).type == "cuda"  # fp32 on that GPU is fine
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))  # A100
    assert train.pick_device("cuda:0", bf16=True) == torch.device("cuda:0")


def test_a_running_run_reports_each_epoch_in_its_status_file(tiny_config, tmp_path, monkeypatch):
    from lib.training.results import RunDir

    seen = []
    real = RunDir.status

    def watch(self, **progress):
        real(self, **progress)
        seen.append(json.loads((self.partial / "STATUS.json").read_text()))
    monkeypatch.setattr(RunDir, "status", watch)
    metrics = run_experiment(tiny_config(loss="ce", epochs=2, patience=None, max_train_samples=16, max_eval_samples=16),
                             tmp_path / "run", quiet=True)
    assert [s["epoch"] for s in seen] == [1, 2] and all(s["status"] == "running" and s["epochs"] == 2 for s in seen)
    assert seen[-1]["best_epoch"] == metrics["best_epoch"]
    assert seen[-1]["best_valid_macro_f1"] == max(s["valid_macro_f1"] for s in seen)
    assert not (tmp_path / "run" / "STATUS.json").exists()  # a finished run has no status file


# on a CPU that emulates bf16 the run warns that it is slow (tests/test_slow_bf16.py); here that is expected
@pytest.mark.filterwarnings("ignore:bf16 autocast on this CPU:RuntimeWarning")
def test_bf16_autocast_trains_and_changes_the_numbers(tiny_config, tmp_path):
    """The notebooks' default mode (BF16 = True): the run completes, records it, and autocast was really on.
    A third of TINY's sentences and half its length: CPUs without bfloat16 emulate it, ~5x slower than fp32."""
    small = dict(loss="combined", seed=3, max_train_samples=16, max_eval_samples=16, max_length=16)
    run_experiment(tiny_config(**small), tmp_path / "fp32", quiet=True)
    m16 = run_experiment(tiny_config(**small, bf16=True), tmp_path / "bf16", quiet=True)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["bf16"] is True
    assert np.isfinite(m16["valid"]["centroid"]["macro_f1"]) and m16["best_epoch"] >= 1
    e32, e16 = np.load(tmp_path / "fp32" / "test_embeddings.npy"), np.load(tmp_path / "bf16" / "test_embeddings.npy")
    assert e16.shape == e32.shape and not np.array_equal(e16, e32)
    assert np.abs(e16 - e32).max() < 0.5  # bfloat16 rounding, not another model
