"""The GPU path: every loss gives the CPU's value and gradients on CUDA, a run trains on the GPU (fp32,
bf16, frozen encoder) and says so in environment.json, and a GPU run follows the CPU run of the same
seed. Skipped where torch sees no CUDA device (CI); run on a GPU machine with
``STUDY_DATA_DIR=... python -m pytest tests/test_cuda.py`` (it trains on a few `ed6` sentences). The
encoder is a tiny random BERT (tests/tiny_encoder.py), so nothing needs downloading there."""
from __future__ import annotations

import copy
import json
import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from lib.data.datasets import load_dataset
from lib.model.losses import build_loss, parse_loss_spec
from lib.training.config import ConfigError, ExperimentConfig
from lib.training.train import run_experiment
from tests.tiny_encoder import make_tiny_bert

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _has_bf16() -> bool:
    return torch.cuda.get_device_capability(0)[0] >= 8  # Ampere or later; older GPUs refuse bf16 runs


LOSSES = ["ce", "triplet", "arcface", "supcon", "combined", "ce=0.5+supcon=0.5"]


def _batch(n: int = 48, dim: int = 16, classes: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes  # every class has positives
    return torch.randn(n, dim, generator=g), torch.randn(n, classes, generator=g), labels


# mining and distance only change the triplet loss: every option with it, the default for the others
CASES = [(spec, mining, distance) for spec in LOSSES
         for mining, distance in itertools.product(["all", "semihard", "hard"], ["euclidean", "cosine"])
         if "triplet" in parse_loss_spec(spec) or (mining, distance) == ("all", "euclidean")]


@pytest.mark.parametrize("spec, mining, distance", CASES)
def test_each_loss_gives_the_cpu_value_and_gradients_on_the_gpu(spec, mining, distance):
    weights = parse_loss_spec(spec)
    torch.manual_seed(0)  # the ArcFace centres
    on_cpu = build_loss(weights, 6, 16, triplet_mining=mining, triplet_distance=distance)
    on_gpu = copy.deepcopy(on_cpu).cuda()
    emb, logits, labels = _batch()
    results = []
    for loss_fn, device in ((on_cpu, "cpu"), (on_gpu, "cuda")):
        e = emb.to(device, copy=True).requires_grad_()  # a fresh leaf per device
        z = logits.to(device, copy=True).requires_grad_()
        total, parts = loss_fn(e, z, labels.to(device))
        total.backward()
        grads = [e.grad, z.grad] + [p.grad for p in loss_fn.parameters()]
        results.append((total.item(), {k: v.item() for k, v in parts.items()},
                        [g.cpu() if g is not None else None for g in grads]))
    (cpu_total, cpu_parts, cpu_grads), (gpu_total, gpu_parts, gpu_grads) = results
    assert gpu_total == pytest.approx(cpu_total, rel=1e-4, abs=1e-6)
    assert gpu_parts == pytest.approx(cpu_parts, rel=1e-4, abs=1e-6)
    for c, g in zip(cpu_grads, gpu_grads):
        assert (c is None) == (g is None)
        if c is not None:
            torch.testing.assert_close(g, c, rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    bundle = load_dataset("ed6")
    texts = pd.concat([bundle.train["text"], bundle.valid["text"], bundle.test["text"]])
    return str(make_tiny_bert(tmp_path_factory.mktemp("encoder") / "tiny-bert", texts))


def _config(encoder: str, **overrides) -> ExperimentConfig:
    fields = dict(dataset="ed6", encoder=encoder, epochs=2, batch_size=16, max_length=64, max_train_samples=96,
                  max_eval_samples=64, dropout=0.0, seed=1)
    fields.update(overrides)
    return ExperimentConfig(**fields)


@pytest.mark.parametrize("loss", ["ce", "combined", "supcon"])
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("frozen", [False, True])
def test_a_run_trains_on_the_gpu_and_records_it(tiny_encoder, tmp_path, monkeypatch, loss, bf16, frozen):
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))  # the frozen path caches encoder outputs
    out = tmp_path / "run"
    cfg = _config(tiny_encoder, loss=loss, bf16=bf16, freeze_encoder=frozen, device="cuda")
    if bf16 and not _has_bf16():
        with pytest.raises(ConfigError, match="bf16 autocast needs a GPU with bfloat16 support"):
            run_experiment(cfg, out, quiet=True)
        return
    metrics = run_experiment(cfg, out, quiet=True)
    env = json.loads((out / "environment.json").read_text())
    assert env["device"]["type"] == "cuda" and env["device"]["name"] == torch.cuda.get_device_name(0)
    assert metrics["device"].startswith("cuda")
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 64
    for rule, scores in metrics["test"].items():  # each rule's score is the one its predictions give
        assert scores["macro_f1"] == pytest.approx(f1_score(preds["label"], preds[f"pred_{rule}"], average="macro"))
    hist = pd.read_csv(out / "history.csv")
    assert np.isfinite(hist["train_loss_total"]).all() and len(hist) == 2
    assert np.isfinite(np.load(out / "test_embeddings.npy")).all()


def test_a_gpu_run_follows_the_cpu_run_of_the_same_seed(tiny_encoder, tmp_path):
    """Same weights, data order and seed, no dropout, fp32: only the arithmetic differs, so the loss
    curves agree closely and the test predictions almost everywhere (a large encoder learning rate,
    so that the tiny encoder moves and differences have room to grow)."""
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = _config(tiny_encoder, loss="combined", device=device, epochs=3, encoder_lr=1e-3)
        run_experiment(cfg, tmp_path / device, quiet=True)
        runs[device] = (pd.read_csv(tmp_path / device / "history.csv"),
                        pd.read_csv(tmp_path / device / "predictions.csv"))
    (h_cpu, p_cpu), (h_gpu, p_gpu) = runs["cpu"], runs["cuda"]
    print("train loss per epoch, cpu:", h_cpu["train_loss_total"].tolist(), "cuda:", h_gpu["train_loss_total"].tolist())
    np.testing.assert_allclose(h_gpu["train_loss_total"], h_cpu["train_loss_total"], rtol=1e-3)
    pred = [c for c in p_cpu.columns if c.startswith("pred")]
    assert pred, p_cpu.columns
    agree = (p_cpu[pred].to_numpy() == p_gpu[pred].to_numpy()).mean()
    print(f"test predictions equal in {agree:.3f} of rows x rules")
    assert agree >= 0.9


@pytest.mark.parametrize("bf16", [False, True])
def test_a_gpu_rerun_of_the_same_seed_is_close_but_not_promised_identical(tiny_encoder, tmp_path, bf16):
    """On a GPU, attention's backward pass is not deterministic (torch warns so), unlike the CPU's
    kernels: the re-run of a seed may differ in the last digits (on an H200 it was identical).
    Printed for README; asserted loosely."""
    from lib.study.reproduce import differences

    if bf16 and not _has_bf16():
        pytest.skip("this GPU has no bfloat16")
    cfg = _config(tiny_encoder, loss="combined", device="cuda", bf16=bf16, epochs=3, encoder_lr=1e-3)
    run_experiment(cfg, tmp_path / "a", quiet=True)
    run_experiment(cfg, tmp_path / "b", quiet=True)
    found = differences(tmp_path / "a", tmp_path / "b")
    floats = [d.relative for d in found if d.relative is not None]
    print(f"bf16={bf16}: {len(found)} differences, {len(found) - len(floats)} not floats, "
          f"largest relative {max(floats, default=0.0):.1e}")
    h_a, h_b = (pd.read_csv(tmp_path / x / "history.csv") for x in "ab")
    np.testing.assert_allclose(h_b["train_loss_total"], h_a["train_loss_total"], rtol=1e-3)
