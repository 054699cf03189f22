"""Failures are clear and harmless: killed runs, unwritable folders, bad CSVs, long texts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lib.paths import PROJECT_ROOT
from lib.training.results import find_runs
from lib.run import main
from lib.training.train import run_experiment

TINY_ARGS = ["--dataset", "ed6", "--encoder", "minilm", "--epochs", "3", "--batch-size", "16", "--max-length", "32",
             "--max-train-samples", "96", "--max-eval-samples", "48", "--quiet"]


@pytest.mark.slow
def test_killed_run_leaves_nothing_complete_and_the_rerun_completes(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "lib.run", *TINY_ARGS, "--out", str(out)], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    partial = tmp_path / "run.partial"
    deadline = time.time() + 120
    while not (partial / "STATUS.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert partial.exists(), "the run never started"
    time.sleep(1.0)  # inside training
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists() and find_runs(tmp_path) == []
    failed = json.loads((partial / "FAILED.json").read_text())
    assert failed["status"] == "failed" and "SystemExit" in failed["error"]
    assert main([*TINY_ARGS, "--epochs", "1", "--out", str(out)]) == 0
    assert find_runs(tmp_path) == [out] and not partial.exists()


def test_results_folder_that_cannot_be_written_fails_before_training(tmp_path, tiny_config, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="is a file, not a folder"):
        run_experiment(tiny_config(), blocker / "run", quiet=True)
    assert main([*TINY_ARGS, "--out", str(blocker / "run")]) == 2
    assert "cannot create the run folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


def test_a_folder_that_refuses_writing_fails_before_training(tmp_path, tiny_config, capsys, monkeypatch):
    """The probe with a temporary file, as a read-only mount answers it (a chmod does not stop root, who
    runs CI); lib.run says so with exit status 2 and nothing is made."""
    from lib.training import results

    def refused(*args, dir=None, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(results.tempfile, "TemporaryFile", refused)
    with pytest.raises(PermissionError, match=f"cannot write the run folder .*: {tmp_path} is not writable "
                                               r"\(Read-only file system\)"):
        run_experiment(tiny_config(), tmp_path / "results" / "run", quiet=True)
    assert main([*TINY_ARGS, "--out", str(tmp_path / "results" / "run")]) == 2
    assert "is not writable (Read-only file system)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_csv_exits_2_with_one_message_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "mine.csv"
    data.write_text("sentence,label\nhello,joy\n")
    out = tmp_path / "results" / "run"
    assert main(["--dataset", str(data), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has no column 'text' (set --text-column)" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_long_texts_are_truncated_and_counted(tmp_path, tiny_config):
    m = run_experiment(tiny_config(max_length=8), tmp_path / "short", quiet=True)
    assert m["data"]["truncated"]["train"] > 0 and m["data"]["truncated"]["train"] <= 48
