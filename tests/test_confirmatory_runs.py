"""scripts/confirmatory_runs.sh: finished runs survive a stopped machine (save commits them, restore
brings them back with the time they finished); unfinished runs and later seeds' embeddings are not kept."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "confirmatory_runs.sh"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _script(repo: Path, worktree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDY_WORKTREE": str(worktree)}
    return subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), *args], cwd=repo, env=env,
                          capture_output=True, text=True)


def _run(folder: Path, finished_at: float | None = None, embeddings: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "predictions.csv").write_text("id,label\n")
    if embeddings:
        (folder / "test_embeddings.npy").write_bytes(b"\x93NUMPY")
    if finished_at is not None:
        (folder / "metrics.json").write_text('{"test": {}}')
        os.utime(folder / "metrics.json", (finished_at, finished_at))


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "main"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts" / SCRIPT.name)
    (repo / ".gitignore").write_text("results/**/test_embeddings.npy\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    _git(repo, "config", "user.name", "t")
    _git(repo, "config", "user.email", "t@t")
    local = tmp_path / "study" / "results" / "local"
    _run(local / "ko6-me5-small" / "runs" / "ce1.0" / "seed0", finished_at=1_700_000_000)
    _run(local / "ko6-me5-small" / "runs" / "ce1.0" / "seed1", finished_at=1_700_000_600)
    _run(local / "ko6-me5-small" / "runs" / "grid" / "ce0.6-frozen" / "seed0", finished_at=1_700_000_900)
    _run(local / "ko6-me5-small" / "runs" / "ce1.0" / "seed2.partial")  # still training
    _run(local / "ko6-me5-small" / "runs" / "ce1.0" / "seed3")  # killed before metrics.json
    return repo, tmp_path / "study"


def test_save_commits_finished_runs_and_restore_brings_them_back(checkout):
    repo, worktree = checkout
    saved = _script(repo, worktree, "save")
    assert saved.returncode == 0, saved.stderr
    committed = set(_git(repo, "ls-files", "results/in-progress").split())
    runs = "results/in-progress/ko6-me5-small/runs/ce1.0"
    grid = "results/in-progress/ko6-me5-small/runs/grid/ce0.6-frozen/seed0"
    assert committed == {f"{runs}/seed0/config.json", f"{runs}/seed0/metrics.json", f"{runs}/seed0/predictions.csv",
                         f"{runs}/seed0/test_embeddings.npy",  # seed 0's, for notebook 05's t-SNE
                         f"{runs}/seed1/config.json", f"{runs}/seed1/metrics.json", f"{runs}/seed1/predictions.csv",
                         f"{grid}/config.json", f"{grid}/metrics.json",  # a grid run: what makes it reusable
                         "results/in-progress/ko6-me5-small/run_times.csv"}
    assert _git(repo, "status", "--porcelain") == ""
    times = (repo / "results/in-progress/ko6-me5-small/run_times.csv").read_text().splitlines()
    assert times == ["run,metrics_json_mtime_utc", "runs/ce1.0/seed0,2023-11-14T22:13:20+00:00",
                     "runs/ce1.0/seed1,2023-11-14T22:23:20+00:00",
                     "runs/grid/ce0.6-frozen/seed0,2023-11-14T22:28:20+00:00"]

    again = _script(repo, worktree, "save")  # nothing new: no commit
    assert again.returncode == 0 and again.stdout == ""
    assert len(_git(repo, "log", "--oneline").splitlines()) == 2

    # A new machine: the worktree's files are gone, the checkout's file times are today's.
    shutil.rmtree(worktree / "results")
    for metrics in (repo / "results" / "in-progress").rglob("metrics.json"):
        os.utime(metrics)
    restored = _script(repo, worktree, "restore")
    assert restored.returncode == 0, restored.stderr
    local = worktree / "results" / "local" / "ko6-me5-small" / "runs" / "ce1.0"
    assert sorted(p.name for p in local.iterdir()) == ["seed0", "seed1"]
    assert (local / "seed0" / "test_embeddings.npy").exists()
    assert (local / "seed0" / "metrics.json").stat().st_mtime == 1_700_000_000
    assert (local / "seed1" / "metrics.json").stat().st_mtime == 1_700_000_600
    grid = worktree / "results" / "local" / "ko6-me5-small" / "runs" / "grid" / "ce0.6-frozen" / "seed0"
    assert (grid / "metrics.json").stat().st_mtime == 1_700_000_900


def test_without_a_command_it_prints_its_usage_and_fails(checkout):
    repo, worktree = checkout
    out = _script(repo, worktree)
    assert out.returncode == 2 and "confirmatory_runs.sh save" in out.stderr
