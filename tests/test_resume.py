"""A run killed mid-way resumes from its last epoch (lib/training/checkpoint.py) and computes what a run
never stopped computes, bit for bit; only the same configuration resumes; a folder of the user is never
taken for a checkpoint. The tiny BERT on the toy set of tests/test_training_loop.py: seconds on a CPU."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lib.ownership import NotOursError
from lib.training import checkpoint
from lib.training.results import hardware_of
from lib.training.train import run_experiment
from tests.test_training_loop import _config, toy  # noqa: F401 - toy is a fixture

EPOCHS = 5


class Killed(Exception):
    """Stands for a kill after an epoch: raised from on_epoch, after the epoch's checkpoint."""


def _kill_after(epoch_to_kill: int):
    def on_epoch(epoch, valid, best):
        if epoch == epoch_to_kill:
            raise Killed
    return on_epoch


def _combined(toy):  # noqa: F811
    # dropout draws from torch's global generator, ArcFace has its own parameters, the balanced sampler
    # draws the data order: all of it must come back from the checkpoint
    return _config(toy, epochs=EPOCHS, patience=None, dropout=0.2, loss="ce=0.5+triplet=0.25+arcface=0.25",
                   sampler="balanced", samples_per_class=4)


def _same_results(a, b):
    for name in ("predictions.csv", "history.csv"):
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        keep = [c for c in x.columns if "seconds" not in c and c != "sentences_per_second"]
        pd.testing.assert_frame_equal(x[keep], y[keep], check_exact=True)
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    for m in (ma, mb):
        m.pop("timings")
    parts = mb.pop("trained_in_parts")
    assert ma == mb
    return parts


@pytest.fixture(scope="module")
def never_stopped(toy, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("plain") / "run"
    run_experiment(_combined(toy), out, quiet=True)
    return out


def test_a_killed_run_resumes_after_its_last_epoch_and_computes_the_same_numbers(toy, never_stopped, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(_combined(toy), out, quiet=True, resume=True, on_epoch=_kill_after(2))
    saved = checkpoint.folder(out)
    marker = json.loads((saved / checkpoint.MARKER).read_text())
    assert marker["epoch"] == 2 and len(marker["valid_macro_f1"]) == 2 and not out.exists()
    assert [p.name for p in saved.iterdir() if p.name != checkpoint.MARKER] == ["state-2.pt"]
    (saved / "state-3.pt").write_bytes(b"PK\x03")  # a kill while epoch 3's state was written: not yet named
    seen = []
    metrics = run_experiment(_combined(toy), out, quiet=True, resume=True,
                             on_epoch=lambda epoch, valid, best: seen.append(epoch))
    assert seen == [3, 4, 5] and metrics["timings"]["resumed_after_epoch"] == 2
    assert metrics["epochs_run"] == EPOCHS and len(pd.read_csv(out / "history.csv")) == EPOCHS
    parts = _same_results(never_stopped, out)
    here = hardware_of(json.loads((out / "environment.json").read_text()))
    assert parts == [{"hardware": here, "through_epoch": 2}, {"hardware": here, "through_epoch": EPOCHS}]
    assert not saved.exists()  # deleted once the run folder is published


def test_a_run_killed_twice_still_computes_the_same_numbers(toy, never_stopped, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    for epoch in (1, 3):
        with pytest.raises(Killed):
            run_experiment(_combined(toy), out, quiet=True, resume=True, on_epoch=_kill_after(epoch))
    run_experiment(_combined(toy), out, quiet=True, resume=True)
    assert [p["through_epoch"] for p in _same_results(never_stopped, out)] == [1, 3, EPOCHS]


def test_the_early_stopping_count_comes_back(toy, tmp_path, monkeypatch):  # noqa: F811
    """Patience 2: after epoch 2 (worse than epoch 1) one epoch without a better score is counted; the
    resumed run stops after epoch 3, not after epoch 4."""
    from lib.training import train

    scores = iter([0.5, 0.4, 0.45, 0.6, 0.3, 0.2])
    monkeypatch.setattr(train, "_select_score", lambda *args: next(scores))
    out = tmp_path / "run"
    cfg = _config(toy, epochs=6, patience=2)
    with pytest.raises(Killed):
        run_experiment(cfg, out, quiet=True, resume=True, on_epoch=_kill_after(2))
    metrics = run_experiment(cfg, out, quiet=True, resume=True)
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 1


def test_another_configuration_starts_anew(toy, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(_combined(toy), out, quiet=True, resume=True, on_epoch=_kill_after(2))
    other = _combined(toy)
    other.head_lr = other.head_lr / 2
    seen = []
    metrics = run_experiment(other, out, quiet=True, resume=True,
                             on_epoch=lambda epoch, valid, best: seen.append(epoch))
    assert seen == list(range(1, EPOCHS + 1)) and "resumed_after_epoch" not in metrics["timings"]
    assert "trained_in_parts" not in metrics


@pytest.mark.parametrize("field, other", [("commit", "0" * 40), ("changes", "0123456789abcdef"), ("device", "cuda")])
def test_a_checkpoint_of_other_code_or_device_starts_anew(toy, tmp_path, field, other):  # noqa: F811
    """Only the same configuration, commit (and changes to it) and kind of device resume: a checkpoint
    written by other code or on another device is not trained on (docs/troubleshooting.md)."""
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(_combined(toy), out, quiet=True, resume=True, on_epoch=_kill_after(2))
    marker = checkpoint.folder(out) / checkpoint.MARKER
    written = json.loads(marker.read_text())
    assert written[field] != other
    marker.write_text(json.dumps({**written, field: other}))  # as that code or device would have written it
    seen = []
    metrics = run_experiment(_combined(toy), out, quiet=True, resume=True,
                             on_epoch=lambda epoch, valid, best: seen.append(epoch))
    assert seen == list(range(1, EPOCHS + 1)) and "resumed_after_epoch" not in metrics["timings"]


def test_the_device_as_resolved_decides_not_as_asked(toy, tmp_path):  # noqa: F811
    """A run asked for "auto" and resumed as "cpu" on a machine without a GPU (a tuning trial taken over on
    a Ray worker that got no GPU share) goes on from its checkpoint: the same device, spelled otherwise."""
    import dataclasses

    import torch

    if torch.cuda.is_available():
        pytest.skip("auto is a GPU here")
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(dataclasses.replace(_combined(toy), device="auto"), out, quiet=True, resume=True,
                       on_epoch=_kill_after(2))
    seen = []
    metrics = run_experiment(dataclasses.replace(_combined(toy), device="cpu"), out, quiet=True, resume=True,
                             on_epoch=lambda epoch, valid, best: seen.append(epoch))
    assert seen == list(range(3, EPOCHS + 1)) and metrics["timings"]["resumed_after_epoch"] == 2


def test_without_resume_a_run_keeps_no_checkpoint(toy, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(Killed):
        run_experiment(_config(toy, epochs=3), out, quiet=True, on_epoch=_kill_after(1))
    assert not checkpoint.folder(out).exists()


def test_a_folder_of_the_user_in_the_checkpoints_place_is_refused_before_training(toy, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    mine = checkpoint.folder(out)
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(NotOursError, match="run.resume"):
        run_experiment(_config(toy, epochs=2), out, quiet=True, resume=True,
                       on_epoch=lambda *a: pytest.fail("trained"))
    assert (mine / "notes.txt").read_text() == "mine"


def test_lib_run_resume_goes_on_after_a_sigterm(toy, never_stopped, tmp_path):  # noqa: F811
    """The command line: SIGTERM once the first epoch's checkpoint is written, then the same command."""
    import os
    import shlex
    import signal
    import subprocess
    import sys
    import time

    from lib.paths import PROJECT_ROOT
    from lib.study.tuning import run_command

    out = tmp_path / "run"
    # a trial's command, scoring the test split as an ordinary run does (its predictions are compared)
    command = [w for w in shlex.split(run_command(_combined(toy), str(out)))[3:] if w != "--validation-only"]
    command += ["--resume"]
    words = [sys.executable, "-m", "lib.run", *command]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(words, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    marker, deadline = checkpoint.folder(out) / checkpoint.MARKER, time.monotonic() + 120
    while not marker.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    log = first.communicate()[0]
    assert first.returncode != 0 and not out.exists(), log  # killed before it ended
    again = subprocess.run(words, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch" in again.stdout
    _same_results(never_stopped, out)
