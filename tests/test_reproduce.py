"""`python -m lib.run --reproduce RUN` re-runs a finished run and proves it identical (or says what differs)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from lib.study.reproduce import compare_runs
from lib.run import main

TINY_ARGS = ["--dataset", "ed6", "--encoder", "minilm", "--loss", "combined", "--epochs", "1", "--batch-size", "16",
             "--max-length", "32", "--max-train-samples", "64", "--max-eval-samples", "32", "--quiet"]


@pytest.mark.slow
def test_reproduce_a_run_then_detect_tampering(tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    assert main([*TINY_ARGS, "--seed", "3", "--out", str(first)]) == 0
    # Config options other than --reproduce/--out are ignored: the run's own config.json rules.
    assert main(["--reproduce", str(first), "--out", str(again), "--seed", "9", "--quiet"]) == 0
    assert "reproduced exactly" in capsys.readouterr().out
    assert json.loads((again / "config.json").read_text())["seed"] == 3
    assert compare_runs(first, again) == []

    tampered = tmp_path / "tampered"
    shutil.copytree(again, tampered)
    metrics = json.loads((tampered / "metrics.json").read_text())
    metrics["test"]["head"]["macro_f1"] += 1e-9
    metrics["timings"]["total_seconds"] = 1.0  # wall clock: never compared
    (tampered / "metrics.json").write_text(json.dumps(metrics))
    emb = np.load(tampered / "test_embeddings.npy")
    emb[0, 0] = np.nextafter(emb[0, 0], np.float32(np.inf))
    np.save(tampered / "test_embeddings.npy", emb)
    found = compare_runs(first, tampered)
    assert [d.split(" (relative")[0] for d in found] == [
        f"metrics.json test.head.macro_f1: {metrics['test']['head']['macro_f1'] - 1e-9!r} != "
        f"{metrics['test']['head']['macro_f1']!r}",
        "test_embeddings.npy: arrays differ"]
    # Both are float rounding: a tolerance lets them through, a label change never.
    assert compare_runs(first, tampered, rtol=1e-5) == []
    assert main(["--reproduce", str(tampered), "--out", str(tmp_path / "again2"), "--rtol", "1e-5"]) == 0
    assert "reproduced within --rtol 1e-05: 2 float value(s) differ" in capsys.readouterr().out
    assert main(["--reproduce", str(tampered), "--out", str(tmp_path / "again3")]) == 1
    assert "only float values differ" in capsys.readouterr().err

    predictions = pd.read_csv(tampered / "predictions.csv", dtype={"id": str})
    predictions.loc[0, "pred_head"] = (predictions.loc[0, "pred_head"] + 1) % 6
    predictions.to_csv(tampered / "predictions.csv", index=False)
    assert "predictions.csv column pred_head: 1 value(s) differ" in compare_runs(first, tampered, rtol=1.0)


def test_published_runs_without_embeddings_are_compared_on_the_rest(tmp_path):
    # Committed runs leave test_embeddings.npy out: a re-run that has them is not a difference.
    original, again = tmp_path / "original", tmp_path / "again"
    for run in (original, again):
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"test": {"macro_f1": 0.5, "n": 3}, "timings": {"s": 1.0}}))
        pd.DataFrame({"id": ["01", "02"], "label": [0, 1], "pred_head": [0, 1]}).to_csv(run / "predictions.csv",
                                                                                         index=False)
    np.save(again / "test_embeddings.npy", np.zeros((2, 3), dtype=np.float32))
    assert compare_runs(original, again) == []
    (again / "test_embeddings.npy").rename(original / "test_embeddings.npy")
    assert compare_runs(original, again) == ["test_embeddings.npy: only in the original"]


def test_reproduce_refuses_what_it_cannot_check(tmp_path, capsys):
    assert main(["--reproduce", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text("{}")
    assert main(["--reproduce", str(run)]) == 2
    assert "--reproduce needs --out" in capsys.readouterr().err
    assert main(["--reproduce", str(run), "--out", str(run)]) == 2
    assert "--out must differ" in capsys.readouterr().err
    assert main(["--reproduce", str(run), "--out", str(tmp_path / "y"), "--rtol", "-1"]) == 2
    assert main([*TINY_ARGS, "--rtol", "1e-4"]) == 2
    assert "--rtol" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json"]


def _run_with_ood(run, pred=(0, 3), macro_f1=0.5, sets=("reviews",)):
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"test": {"macro_f1": 0.5}}))
    pd.DataFrame({"id": ["01", "02"], "label": [0, 1], "pred_head": [0, 1]}).to_csv(run / "predictions.csv",
                                                                                     index=False)
    for name in sets:
        (run / "ood" / name).mkdir(parents=True)
        (run / "ood" / name / "metrics.json").write_text(json.dumps({"macro_f1": macro_f1, "rows": 2,
                                                                     "shared_classes": ["a", "b"]}))
        pd.DataFrame({"id": ["row-1", "row-2"], "source_label": ["행복", "분노"], "label": [0, 1],
                      "pred_head": list(pred)}).to_csv(run / "ood" / name / "predictions.csv", index=False)
    return run


def test_out_of_domain_files_are_compared_like_the_others(tmp_path):
    original = _run_with_ood(tmp_path / "original")
    assert compare_runs(original, _run_with_ood(tmp_path / "same")) == []
    assert compare_runs(original, _run_with_ood(tmp_path / "label", pred=(0, 1))) == [
        "ood/reviews/predictions.csv column pred_head: 1 value(s) differ"]  # a label: never let through
    rounded = _run_with_ood(tmp_path / "rounded", macro_f1=0.5 + 1e-12)
    assert [d.split(" (relative")[0] for d in compare_runs(original, rounded)] == [
        f"ood/reviews/metrics.json macro_f1: 0.5 != {0.5 + 1e-12!r}"]
    assert compare_runs(original, rounded, rtol=1e-9) == []


def test_a_missing_out_of_domain_file_is_a_difference(tmp_path):
    original = _run_with_ood(tmp_path / "original")
    assert compare_runs(original, _run_with_ood(tmp_path / "none", sets=())) == [
        "ood/reviews/metrics.json: only in the original", "ood/reviews/predictions.csv: only in the original"]
    extra = _run_with_ood(tmp_path / "extra", sets=("reviews", "tweets"))
    assert compare_runs(original, extra, rtol=1.0) == [
        "ood/tweets/metrics.json: only in the new run", "ood/tweets/predictions.csv: only in the new run"]
    (extra / "ood" / "reviews" / "predictions.csv").unlink()
    assert "ood/reviews/predictions.csv: only in the original" in compare_runs(original, extra)
