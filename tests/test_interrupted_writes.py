"""A SIGKILL at a random moment (no handler runs, nothing is cleaned up) never leaves a run folder,
a cached feature file or a summary that a later run reads as complete but is not.

A child process trains the same tiny frozen-encoder run over and over into one results folder
(each round writes the run folder, the feature cache and the summary again) and is killed at
random moments. Every round writes identical bytes, so whatever is found afterwards must equal
the reference round exactly, or be absent; the next run then completes. Identical bytes need one git
state: each run records the checkout's commit and dirty flag (environment.json), and summary.md names
them ("Provenance: ... from commit <hash>, clean tree"), so a commit or edit in this checkout while the
test runs would change the summary between rounds. Every round records the state read once at the start.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT

CONFIG = dict(dataset="ed6", encoder="minilm", freeze_encoder=True, epochs=1, batch_size=16, max_length=32,
              max_train_samples=96, max_eval_samples=48, num_threads=1)
KILLS = 3

CHILD = r"""
import json, sys
from pathlib import Path
import lib.training.results
from lib.training.config import ExperimentConfig
from lib.training.train import run_experiment
from lib.study.summary import build_summary, write_summary

results, features, cfg = Path(sys.argv[1]), Path(sys.argv[2]), ExperimentConfig(**json.loads(sys.argv[3]))
pinned = json.loads(sys.argv[4])
lib.training.results.git_state = lambda: pinned  # the reference round's git state (module docstring)
while True:
    for f in features.glob("*.safetensors"):
        f.unlink()  # the files this loop wrote: so that every round writes the feature cache again
    print("round", flush=True)
    run_experiment(cfg, results / "runs" / "ce1.0" / "seed0", quiet=True)
    write_summary(results, *build_summary(results, n_boot=50)[:2])
"""


# The summary alone, written over and over: a kill then lands inside a write most of the time.
SUMMARY_CHILD = r"""
import sys
from lib.study.summary import build_summary, write_summary

table, nice, _ = build_summary(sys.argv[1], n_boot=50)
print("writing", flush=True)
while True:
    write_summary(sys.argv[1], table, nice)
"""


def one_round(results: Path) -> None:
    from lib.study.summary import build_summary, write_summary
    from lib.training.config import ExperimentConfig
    from lib.training.train import run_experiment

    run_experiment(ExperimentConfig(**CONFIG), results / "runs" / "ce1.0" / "seed0", quiet=True)
    write_summary(results, *build_summary(results, n_boot=50)[:2])


def state(results: Path, features: Path) -> dict:
    """What a later run would read: the summary files and the cached features, by name."""
    found = {p.name: p.read_bytes() for p in features.glob("*.safetensors")}
    found.update({p.name: p.read_bytes() for p in (results / "summary.csv", results / "summary.md") if p.exists()})
    return found


def recorded_git(run: Path) -> dict:
    """The git state a run recorded (what its summary's provenance line is made from)."""
    return json.loads((run / "environment.json").read_text())["git"]


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_anything_read_as_complete(tmp_path, monkeypatch):
    import lib.training.results
    from lib.study.reproduce import differences
    from lib.training.results import find_runs

    results, cache = tmp_path / "results", tmp_path / "cache"
    monkeypatch.setenv("STUDY_CACHE_DIR", str(cache))
    pinned = lib.training.results.git_state()  # every round records it, the children's too (module docstring)
    monkeypatch.setattr(lib.training.results, "git_state", lambda: pinned)
    features = cache / "features"
    t0 = time.perf_counter()
    one_round(results)
    round_seconds = time.perf_counter() - t0
    run = results / "runs" / "ce1.0" / "seed0"
    reference_run = shutil.copytree(run, tmp_path / "reference")
    reference = state(results, features)
    assert len([n for n in reference if n.endswith(".safetensors")]) == 3 and "summary.csv" in reference
    assert recorded_git(run) == pinned

    rng = random.Random()
    env = dict(os.environ, STUDY_CACHE_DIR=str(cache), TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(PROJECT_ROOT))
    for k in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(results), str(features), json.dumps(CONFIG),
                                  json.dumps(pinned)],
                                 cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True)
        assert child.stdout.readline() == "round\n", "the child did not start"
        delay = rng.uniform(0, 1.5 * round_seconds)  # anywhere in its first round or early in its second
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        where = f"kill {k + 1} at {delay:.2f} s into a {round_seconds:.1f} s round"

        assert find_runs(results) in ([], [run]), where
        if run.exists():
            assert [d.text for d in differences(reference_run, run)] == [], where
            assert recorded_git(run) == pinned, where
        now = state(results, features)
        assert all(now[name] == reference[name] for name in now), where + ": a file differs from the reference"
        assert set(now) <= set(reference), where

    one_round(results)  # the next run takes over whatever the kills left
    assert find_runs(results) == [run] and differences(reference_run, run) == []
    assert state(results, features) == reference
    assert not list(results.rglob("*.partial")), "the leftover .partial is ours and was replaced"


@pytest.mark.slow
def test_sigkill_while_the_summary_is_written_leaves_the_old_or_the_new_file_whole(tmp_path):
    from lib.study.summary import build_summary, write_summary

    results = tmp_path / "results"
    shutil.copytree(PROJECT_ROOT / "results" / "ed6-minilm" / "runs" / "ce1.0" / "seed0",
                    results / "runs" / "ce1.0" / "seed0")  # a published run: no training needed
    write_summary(results, *build_summary(results, n_boot=50)[:2])
    reference = state(results, tmp_path)
    rng = random.Random()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    for k in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", SUMMARY_CHILD, str(results)], cwd=PROJECT_ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert child.stdout.readline() == "writing\n"
        delay = rng.uniform(0.05, 0.5)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert state(results, tmp_path) == reference, f"kill {k + 1} after {delay:.2f} s of writing"
