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
SHARED = PROJECT_ROOT / "scripts" / "worktree.sh"  # sourced: the clean worktree (also scripts/tuning_runs.sh's)
STUDIES_MODULE = ("lib/__init__.py", "lib/study/__init__.py", "lib/study/studies.py")
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
    for script in (SCRIPT, SHARED):
        shutil.copy(script, repo / "scripts" / script.name)
    for module in STUDIES_MODULE:  # the script reads the list of studies from lib/study/studies.py
        (repo / module).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / module, repo / module)
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
    out = _script(repo, worktree, "publish", "ko6-me5-small-frozen-typo")  # its arguments come from STUDIES
    assert out.returncode == 2 and "not a confirmatory study" in out.stderr and "ed6-minilm" in out.stderr


STUB_PYTHON = """#!/usr/bin/env bash
# stands in for the worktree's python: logs the runner's arguments and "trains" the primary's seed
echo "$*" >> "$CALLS"
while [[ $# -gt 0 ]]; do
  if [[ "$1" == --seeds ]]; then
    for k in ${2//,/ }; do
      run=results/local/ko6-me5-small/runs/ce1.0/seed$k
      mkdir -p "$run" && echo '{}' > "$run/config.json" && echo '{}' > "$run/metrics.json"
    done
  fi
  shift
done
sleep 0.2
"""


def test_run_trains_the_unpublished_studies_in_order_from_a_clean_worktree_and_saves_as_it_goes(checkout, tmp_path):
    repo, _ = checkout
    (repo / "scripts" / "setup_env.sh").write_text("#!/usr/bin/env bash\n")
    (repo / "scripts" / "setup_env.sh").chmod(0o755)
    (repo / ".gitignore").write_text("results/**/test_embeddings.npy\nresults/local/\n.venv/\n")
    for frozen in ("ko6-me5-small-frozen", "ed32-minilm-frozen", "goemo27-minilm-frozen"):  # published
        (repo / "results" / frozen).mkdir(parents=True)
        (repo / "results" / frozen / "run_times.csv").write_text("run,metrics_json_mtime_utc\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "the commit the study trains")
    commit = _git(repo, "rev-parse", "--short=7", "HEAD").strip()
    stub = repo / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    worktree = tmp_path / "fresh-study"  # a new machine: the worktree is made from the commit
    env = {**os.environ, "STUDY_WORKTREE": str(worktree), "STUDY_COMMIT": commit, "SAVE_EVERY": "1",
           "STUDY_DATA_DIR": str(tmp_path), "CALLS": str(tmp_path / "calls.txt")}
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "run"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert _git(worktree, "rev-parse", "--short=7", "HEAD").strip() == commit
    assert _git(worktree, "status", "--porcelain") == ""  # the .venv link is not a change
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    primary = [f"-m lib.runner --profile paper --notebooks 00_data_exploration,01_baseline_ce,04_combined --seeds {k} "
               "--results results/local/ko6-me5-small" for k in range(10)]
    assert calls == primary + [
        "-m lib.runner --profile paper --seeds 0,1,2,3,4,5,6,7,8,9 --results results/local/ko6-me5-small",
        "-m lib.runner --profile paper-secondary --by-seed --seeds 0,1,2,3,4 --results results/local/ed6-minilm",
        "-m lib.runner --profile paper-secondary --by-seed --dataset ed32 --notebooks 00_data_exploration,"
        '01_baseline_ce,04_combined,05_tsne_analysis,06_summary --set LOSSES=["combined"] --seeds 0,1,2,3,4 '
        "--results results/local/ed32-minilm"]
    # every finished run was committed, by the saver while it ran or at its exit
    saved = {p for p in _git(repo, "ls-files", "results/in-progress").split() if p.endswith("metrics.json")}
    assert saved == {f"results/in-progress/ko6-me5-small/runs/ce1.0/seed{k}/metrics.json" for k in range(10)}
    assert _git(repo, "status", "--porcelain", "results") == ""


STUDIES_2 = """
STUDIES_2 = (Study("ko6-me5-small-tuned", "ko6, me5-small fine-tuned, tuned", (300, 301),
                   "--profile paper --set TUNED_RECIPES=results/tuning/ko6-me5-small",
                   "--profile paper --notebooks 01_baseline_ce,04_combined --set TUNED_RECIPES=results/tuning/ko6-me5-small"),
             Study("ed6-minilm-tuned", "ed6, MiniLM fine-tuned, tuned", (300,),
                   "--profile paper-secondary --set 'TUNED_RECIPES=results/tuning/ed6-minilm'"))
PROTOCOLS[2] = ("PROTOCOL-2.md", STUDIES_2)
"""


def test_study_2_trains_its_own_list_seed_by_seed_first_and_needs_its_commit(checkout, tmp_path):
    repo, _ = checkout
    (repo / "scripts" / "setup_env.sh").write_text("#!/usr/bin/env bash\n")
    (repo / "scripts" / "setup_env.sh").chmod(0o755)
    (repo / ".gitignore").write_text("results/**/test_embeddings.npy\nresults/local/\n.venv/\n")
    env = {**os.environ, "STUDY_PROTOCOL": "2", "STUDY_WORKTREE": str(tmp_path / "study2"), "SAVE_EVERY": "1",
           "STUDY_DATA_DIR": str(tmp_path), "CALLS": str(tmp_path / "calls.txt")}
    run = ["bash", str(repo / "scripts" / SCRIPT.name), "run"]
    out = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == ("error: PROTOCOL-2.md names no study yet (its studies are written "
                                                  "into lib/study/studies.py with it)\n")
    module = repo / "lib" / "study" / "studies.py"  # what PROTOCOL-2.md's commit writes into it
    module.write_text(module.read_text().replace('\n\nif __name__ == "__main__":', STUDIES_2 + '\n\nif __name__ == "__main__":'))
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "Study 2's studies")
    out = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "set STUDY_COMMIT to the commit it names" in out.stderr
    stub = repo / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    commit = _git(repo, "rev-parse", "--short=7", "HEAD").strip()
    out = subprocess.run(run, cwd=repo, env={**env, "STUDY_COMMIT": commit, "STUDY_EXTRA_ARGS": "--ray h:1 --set EPOCHS=3"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == ("error: STUDY_EXTRA_ARGS: --set: only --ray options (where the runs "
                                                  "train) may be added to a protocol's runs\n")
    assert not (tmp_path / "study2").exists()  # refused before the worktree is made
    out = subprocess.run(run, cwd=repo, env={**env, "STUDY_COMMIT": commit, "STUDY_EXTRA_ARGS": "--ray 'h:6379'"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert _git(tmp_path / "study2", "rev-parse", "--short=7", "HEAD").strip() == commit
    tuned, ko6, ed6 = ("--set TUNED_RECIPES=results/tuning/ko6-me5-small", "--results results/local/ko6-me5-small-tuned",
                       "--results results/local/ed6-minilm-tuned")
    ray = "--ray h:6379"  # STUDY_EXTRA_ARGS: where the runs train, added to every call
    assert (tmp_path / "calls.txt").read_text().splitlines() == [
        f"-m lib.runner --profile paper --notebooks 01_baseline_ce,04_combined {tuned} {ray} --seeds 300 {ko6}",
        f"-m lib.runner --profile paper --notebooks 01_baseline_ce,04_combined {tuned} {ray} --seeds 301 {ko6}",
        f"-m lib.runner --profile paper {tuned} {ray} --seeds 300,301 {ko6}",
        f"-m lib.runner --profile paper-secondary --set TUNED_RECIPES=results/tuning/ed6-minilm {ray} --seeds 300 {ed6}"]
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ed6-minilm"], cwd=repo,
                         env={**env, "STUDY_COMMIT": commit}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not a confirmatory study (one of: ko6-me5-small-tuned ed6-minilm-tuned)" in out.stderr


def test_run_refuses_a_worktree_that_is_not_a_clean_checkout_of_the_commit(checkout, tmp_path):
    repo, _ = checkout
    (repo / "scripts" / "setup_env.sh").write_text("#!/usr/bin/env bash\n")
    (repo / "scripts" / "setup_env.sh").chmod(0o755)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "the commit the study trains")
    commit = _git(repo, "rev-parse", "--short=7", "HEAD").strip()
    worktree = tmp_path / "used-study"
    _git(repo, "worktree", "add", "-q", "--detach", str(worktree), "HEAD")
    (worktree / "lib" / "patch.py").write_text("")  # code that is not the commit's
    env = {**os.environ, "STUDY_WORKTREE": str(worktree), "STUDY_COMMIT": commit, "STUDY_DATA_DIR": str(tmp_path),
           "CALLS": str(tmp_path / "calls.txt")}
    run = ["bash", str(repo / "scripts" / SCRIPT.name), "run"]
    elsewhere = tmp_path / "elsewhere"  # started from another folder than the checkout
    elsewhere.mkdir()
    out = subprocess.run(run, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == f"error: {worktree} is not a clean checkout of {commit}\n"
    assert _git(worktree, "status", "--porcelain") == "?? lib/patch.py\n"  # the .venv link it made is no change
    assert (worktree / ".venv").resolve() == (repo / ".venv").resolve()
    (worktree / "lib" / "patch.py").unlink()
    _git(worktree, "checkout", "-q", "--detach", "HEAD~1")  # clean, but another commit
    out = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr == f"error: {worktree} is not a clean checkout of {commit}\n"
    assert not (tmp_path / "calls.txt").exists()  # nothing was trained


STUB_PUBLISH_PYTHON = """#!/usr/bin/env bash
# stands in for the checkout's python: logs its arguments, each in brackets (so word boundaries show);
# run_times and the runner write their files
printf '[%s]' "$@" >> "$CALLS"; echo >> "$CALLS"
if [[ "$2" == lib.study.run_times ]]; then echo "run,metrics_json_mtime_utc" > "$3/run_times.csv"; fi
if [[ "$2" == lib.runner ]]; then
  echo "summary" > results/ed32-minilm/summary.md
  if [[ "${RUNNER_EXIT:-0}" != 0 ]]; then
    mkdir -p results/ed32-minilm/notebooks; echo "why" > results/ed32-minilm/notebooks/04_combined-seed1.failed.ipynb
  fi
  exit "${RUNNER_EXIT:-0}"
fi
"""


def _commit_legacy_and_saved(repo: Path, legacy_too: bool = True) -> tuple[Path, Path]:
    """results/ed32-minilm (a legacy study) and its saved runs in results/in-progress, committed."""
    legacy = repo / "results" / "ed32-minilm"
    if legacy_too:
        _run(legacy / "runs" / "ce1.0" / "seed0", finished_at=1_600_000_000, embeddings=False)
        (legacy / "summary.md").write_text("legacy")
    saved = repo / "results" / "in-progress" / "ed32-minilm"
    _run(saved / "runs" / "ce1.0" / "seed0", finished_at=1_700_000_000, embeddings=False)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "legacy study and saved runs")
    return legacy, saved


def _publish(repo: Path, worktree: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """scripts/confirmatory_runs.sh publish ed32-minilm with STUB_PUBLISH_PYTHON as the checkout's python."""
    stub = repo / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB_PUBLISH_PYTHON)
    stub.chmod(0o755)
    env = {**os.environ, "STUDY_WORKTREE": str(worktree), "STUDY_DATA_DIR": str(tmp_path),
           "CALLS": str(tmp_path / "calls.txt"), **env}
    return subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ed32-minilm"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)


def test_publish_replaces_the_legacy_study_with_the_finished_runs_and_drops_the_saved_copy(checkout, tmp_path):
    repo, worktree = checkout
    _, saved = _commit_legacy_and_saved(repo)
    local = worktree / "results" / "local" / "ed32-minilm" / "runs"
    for seed in range(2):
        _run(local / "ce1.0" / f"seed{seed}", finished_at=1_700_000_000 + seed)
        _run(local / "ce0.15_triplet0.4_arcface0.45" / f"seed{seed}", finished_at=1_700_000_100 + seed)
    _run(local / "ce1.0" / "seed2.partial")  # an unfinished run is not published
    out = _publish(repo, worktree, tmp_path)
    assert out.returncode == 0, out.stderr
    published = repo / "results" / "ed32-minilm"
    assert sorted(str(p.relative_to(published)) for p in published.rglob("metrics.json")) == [
        f"runs/{method}/seed{seed}/metrics.json" for method in ("ce0.15_triplet0.4_arcface0.45", "ce1.0")
        for seed in range(2)]
    assert (published / "summary.md").read_text() == "summary\n"  # rendered, not the legacy one
    assert (published / "run_times.csv").exists()
    assert not (published / "runs" / "ce1.0" / "seed2.partial").exists()
    assert not saved.exists()
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    runner = ["-m", "lib.runner", "--profile", "paper-secondary", "--by-seed", "--dataset", "ed32", "--notebooks",
              "00_data_exploration,01_baseline_ce,04_combined,05_tsne_analysis,06_summary", "--set",
              'LOSSES=["combined"]', "--seeds", "0,1,2,3,4", "--results", "results/ed32-minilm", "--publish",
              "--render-only"]
    assert calls == ["[-m][lib.study.run_times][results/ed32-minilm]", "".join(f"[{a}]" for a in runner)]
    # run_times.csv is written from the files' times: the copies keep them
    for seed in range(2):
        assert (published / f"runs/ce1.0/seed{seed}/metrics.json").stat().st_mtime == 1_700_000_000 + seed
    # the legacy files and the saved copy are staged for deletion (git keeps them), the new ones untracked
    status = _git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert "D  results/ed32-minilm/summary.md" in status
    assert "D  results/in-progress/ed32-minilm/runs/ce1.0/seed0/metrics.json" in status
    assert "?? results/ed32-minilm/runs/ce0.15_triplet0.4_arcface0.45/seed1/metrics.json" in status


@pytest.mark.parametrize("published_before", [True, False], ids=["replacing-a-study", "a-new-study"])
def test_a_failed_render_leaves_the_published_study_as_git_has_it(checkout, tmp_path, published_before):
    repo, worktree = checkout
    legacy, _ = _commit_legacy_and_saved(repo, legacy_too=published_before)
    _run(worktree / "results" / "local" / "ed32-minilm" / "runs" / "ce1.0" / "seed0", finished_at=1_700_000_000)
    out = _publish(repo, worktree, tmp_path, RUNNER_EXIT="1")  # a notebook failed: a run was missing
    assert out.returncode == 1 and "ed32-minilm not published" in out.stderr
    if published_before:
        assert (legacy / "summary.md").read_text() == "legacy"
    else:
        assert not legacy.exists()
    kept = worktree / "results" / "local" / "ed32-minilm" / "publish-failed" / "04_combined-seed1.failed.ipynb"
    assert kept.read_text() == "why\n" and str(kept.parent) in out.stderr
    assert _git(repo, "status", "--porcelain", "--untracked-files=all", "results") == ""  # saved copy kept, none staged


def test_publish_refuses_runs_of_seeds_the_study_does_not_list(checkout, tmp_path):
    """ed32-minilm lists seeds 0-4: a seed 7 run in the worktree would reach the summary; nothing is published."""
    repo, worktree = checkout
    legacy, _ = _commit_legacy_and_saved(repo)
    local = worktree / "results" / "local" / "ed32-minilm" / "runs"
    _run(local / "ce1.0" / "seed0", finished_at=1_700_000_000)
    _run(local / "grid" / "ce0.6" / "seed7", finished_at=1_700_000_000)
    out = _publish(repo, worktree, tmp_path)
    assert out.returncode == 2 and out.stderr == ("error: ed32-minilm lists seeds 0 1 2 3 4; not publishing runs of "
                                                  "other seeds: runs/grid/ce0.6/seed7 (nothing was changed)\n")
    assert (legacy / "summary.md").read_text() == "legacy" and not (tmp_path / "calls.txt").exists()
    assert _git(repo, "status", "--porcelain", "--untracked-files=all", "results") == ""


def test_runs_whose_commit_failed_are_committed_by_the_next_save(checkout):
    """A held index.lock or a kill between copy and commit leaves the copies in results/in-progress, not
    committed; the next save finds them copied (it skips a run whose metrics.json is there) and commits them."""
    repo, worktree = checkout
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    env = {**os.environ, "STUDY_WORKTREE": str(worktree), "COMMIT_TRIES": "1"}
    failed = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "save"], cwd=repo, env=env,
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "could not commit" in failed.stderr
    assert (repo / "results/in-progress/ko6-me5-small/runs/ce1.0/seed0/metrics.json").is_file()
    assert _git(repo, "ls-tree", "-r", "--name-only", "HEAD", "results") == ""  # staged at most
    hook.unlink()
    saved = _script(repo, worktree, "save")
    assert saved.returncode == 0, saved.stderr
    assert len(_git(repo, "ls-files", "results/in-progress").split()) == 10  # as the first test's save commits
    assert _git(repo, "status", "--porcelain") == ""


def test_save_commits_only_what_it_saved(checkout):
    """A study being published beside a running one: its staged changes under results/ stay out of
    the saver's commit."""
    repo, worktree = checkout
    other = repo / "results" / "in-progress" / "ed6-minilm" / "runs" / "ce1.0" / "seed0"
    _run(other, finished_at=1_700_000_000, embeddings=False)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "saved runs of another study")
    _git(repo, "rm", "-rq", "results/in-progress/ed6-minilm")  # as publish does
    saved = _script(repo, worktree, "save")
    assert saved.returncode == 0, saved.stderr
    changed = _git(repo, "show", "--name-status", "--format=", "HEAD").split("\n")
    assert all(line.startswith("A\t") and "/ko6-me5-small/" in line for line in changed if line), changed
    status = _git(repo, "status", "--porcelain").splitlines()
    assert "D  results/in-progress/ed6-minilm/runs/ce1.0/seed0/metrics.json" in status


def test_save_keeps_the_embeddings_of_the_studys_first_seed(checkout, tmp_path):
    """Notebook 05 draws the first listed seed's test embeddings: Study 2's first seed is 300, not 0."""
    repo, _ = checkout
    module = repo / "lib" / "study" / "studies.py"
    module.write_text(module.read_text().replace('\n\nif __name__ == "__main__":', STUDIES_2 + '\n\nif __name__ == "__main__":'))
    _git(repo, "commit", "-qam", "Study 2's studies")
    worktree = tmp_path / "study2"
    runs = worktree / "results" / "local" / "ko6-me5-small-tuned" / "runs" / "ce1.0"
    for k in (300, 301):
        _run(runs / f"seed{k}", finished_at=1_700_000_000 + k)
    env = {**os.environ, "STUDY_PROTOCOL": "2", "STUDY_WORKTREE": str(worktree)}
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "save"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    saved = repo / "results" / "in-progress-2" / "ko6-me5-small-tuned" / "runs" / "ce1.0"
    assert [(saved / f"seed{k}" / "test_embeddings.npy").exists() for k in (300, 301)] == [True, False]
    assert (saved / "seed301" / "metrics.json").is_file()
