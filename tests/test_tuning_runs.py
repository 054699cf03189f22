"""scripts/tuning_runs.sh: the records of finished trials survive a stopped machine (save commits
them, and only them; restore puts them back into a new worktree, where the searches resume)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "tuning_runs.sh"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _script(repo: Path, worktree: Path, commit: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNING_WORKTREE": str(worktree), "TUNING_COMMIT": commit}
    return subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "main"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts" / SCRIPT.name)
    shutil.copy(PROJECT_ROOT / "scripts" / "worktree.sh", repo / "scripts" / "worktree.sh")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.name", "t")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "init")
    return repo, _git(repo, "rev-parse", "HEAD").strip()


def _trial(search: Path, trial: str, finished: bool) -> None:
    folder = search / "trials" / trial
    (folder / "seed100").mkdir(parents=True)
    (folder / "seed100" / "metrics.json").write_text("{}")  # a trial's run folder: stays in the worktree
    if finished:
        out = folder / "again-seed100"  # the record's re-run command names a folder of this worktree
        (folder / "trial.json").write_text(json.dumps({"trial_id": trial, "status": "complete",
                                                       "commands": {"100": f"python -m lib.run --out {out}"}}))


def test_save_commits_only_the_records_and_restore_brings_them_back(repo, tmp_path):
    repo, commit = repo
    worktree = tmp_path / "tuning"
    out = _script(repo, worktree, commit, "restore")  # makes the worktree; nothing saved yet
    assert out.returncode == 0, out.stderr
    study = worktree / "results" / "tuning" / "ko6-me5-small-frozen" / "ce"
    _trial(study, "t1", finished=True)
    _trial(study, "t2", finished=False)  # still training: no record
    (study / "search.json").write_text('{"finished": false}')
    (study / ".ray").mkdir()
    (study / ".ray" / "trial.json").write_text("{}")  # Ray Tune's own state: never a result
    out = _script(repo, worktree, commit, "save")
    assert out.returncode == 0, out.stderr
    committed = set(_git(repo, "ls-files", "results").split())
    assert committed == {"results/tuning/ko6-me5-small-frozen/ce/search.json",
                         "results/tuning/ko6-me5-small-frozen/ce/trials/t1/trial.json"}
    assert _git(repo, "status", "--porcelain") == ""
    assert _script(repo, worktree, commit, "save").stdout == ""  # nothing new: no empty commit
    (study / "search.json").write_text('{"finished": true}')  # a record that changed is saved again
    assert "committed 1 record(s)" in _script(repo, worktree, commit, "save").stdout

    fresh = tmp_path / "new-machine"  # another machine: a new worktree, the records come back
    out = _script(repo, fresh, commit, "restore")
    assert out.returncode == 0, out.stderr
    back = fresh / "results" / "tuning" / "ko6-me5-small-frozen" / "ce"
    record = json.loads((back / "trials" / "t1" / "trial.json").read_text())
    assert record["status"] == "complete"
    assert record["commands"]["100"] == (  # project-relative: no folder of the machine that ran it
        "python -m lib.run --out results/tuning/ko6-me5-small-frozen/ce/trials/t1/again-seed100")
    assert json.loads((back / "search.json").read_text()) == {"finished": True}
    assert not (back / "trials" / "t2").exists()


def test_save_never_puts_back_a_record_of_the_worktree_commit_that_main_has_since_changed(repo, tmp_path):
    """Searches run from different commits: ed6's record, committed at the commit ko6's worktree is at and
    finished since by ed6's own saver, must not go back to that commit's copy when ko6's saver saves."""
    repo, _ = repo
    record = repo / "results" / "tuning" / "ed6-minilm" / "ce" / "search.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"finished": false}')
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ed6 record so far")
    commit = _git(repo, "rev-parse", "HEAD").strip()  # ko6's searches start from here
    record.write_text('{"finished": true}')  # ed6's saver, later
    _git(repo, "commit", "-qam", "ed6 finished")
    worktree = tmp_path / "tuning-ko6"
    assert _script(repo, worktree, commit, "restore").returncode == 0
    _trial(worktree / "results" / "tuning" / "ko6-me5-small" / "ce", "k1", finished=True)
    out = _script(repo, worktree, commit, "save")
    assert out.returncode == 0, out.stderr
    assert "committed 1 record(s)" in out.stdout
    assert json.loads(record.read_text()) == {"finished": True} and _git(repo, "status", "--porcelain") == ""
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "results/tuning/ko6-me5-small/ce/trials/k1/trial.json"]


def test_a_record_whose_commit_failed_is_committed_by_the_next_save(repo, tmp_path):
    """An index.lock held (the user's commit, or a stale one) or a kill between copy and commit: the copy is
    in main, identical to the worktree's, and not committed; the next save commits it."""
    repo, commit = repo
    worktree = tmp_path / "tuning"
    assert _script(repo, worktree, commit, "restore").returncode == 0
    _trial(worktree / "results" / "tuning" / "ko6-me5-small" / "ce", "t1", finished=True)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")  # every commit fails, as with a held index.lock
    hook.chmod(0o755)
    env = {**os.environ, "TUNING_WORKTREE": str(worktree), "TUNING_COMMIT": commit, "COMMIT_TRIES": "1"}
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "save"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "could not commit" in out.stderr
    assert (repo / "results" / "tuning" / "ko6-me5-small" / "ce" / "trials" / "t1" / "trial.json").is_file()
    assert "trial.json" not in _git(repo, "ls-tree", "-r", "--name-only", "HEAD")  # staged at most
    hook.unlink()
    out = _script(repo, worktree, commit, "save")
    assert out.returncode == 0 and "committed 1 record(s)" in out.stdout, out.stderr
    assert _git(repo, "ls-files", "results").split() == ["results/tuning/ko6-me5-small/ce/trials/t1/trial.json"]


def test_a_record_the_search_found_interrupted_is_taken_back(repo, tmp_path):
    """A Ctrl-C (or the stop after TUNING_STOP_AFTER_MIN) makes Ray stop the trial in progress, which writes
    a record; the search renames it trial.interrupted.json once it sees the trial had not ended. A save in
    between committed trial.json: the next save removes it, and a restore never brings it back as ended."""
    repo, commit = repo
    worktree = tmp_path / "tuning"
    assert _script(repo, worktree, commit, "restore").returncode == 0
    study = worktree / "results" / "tuning" / "ko6-me5-small" / "ce"
    _trial(study, "t1", finished=True)
    _trial(study, "t2", finished=True)
    assert "committed 2 record(s)" in _script(repo, worktree, commit, "save").stdout
    record = study / "trials" / "t2" / "trial.json"
    record.replace(record.with_name("trial.interrupted.json"))  # what lib.study.tuning does after the fit
    assert _script(repo, worktree, commit, "restore").stdout.startswith("restored 0 record(s)")
    assert not record.exists()
    out = _script(repo, worktree, commit, "save")
    assert out.returncode == 0 and "committed 1 record(s)" in out.stdout, out.stderr
    assert _git(repo, "ls-files", "results").split() == ["results/tuning/ko6-me5-small/ce/trials/t1/trial.json"]
    assert _git(repo, "status", "--porcelain") == ""
    assert _script(repo, worktree, commit, "save").stdout == ""


def test_it_refuses_a_commit_given_by_a_name_that_moves(repo, tmp_path):
    repo, _ = repo
    for name in ("HEAD", "main", "master"):
        out = _script(repo, tmp_path / "w", name, "restore")
        assert out.returncode == 2 and "give the commit's hash" in out.stderr, out.stderr
    assert not (tmp_path / "w").exists()


def test_it_refuses_a_commit_whose_pins_the_shared_environment_no_longer_has(repo, tmp_path):
    """The worktree trains with main's .venv, installed from main's pins: a package added since is harmless,
    a version changed since would make the search's later trials run other libraries than its commit says."""
    repo, _ = repo
    (repo / "requirements.txt").write_text("# pins\noptuna==5.1.0\ntorch==2.13.0\n")
    _git(repo, "add", "requirements.txt")
    _git(repo, "commit", "-qm", "pins")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "requirements.txt").write_text("# pins\noptuna==5.1.0\nray[tune]==2.50.0\ntorch==2.13.0\n")
    out = _script(repo, tmp_path / "w", commit, "restore")
    assert out.returncode == 0, out.stderr
    (repo / "requirements.txt").write_text("# pins\noptuna==5.2.0\nray[tune]==2.50.0\ntorch==2.13.0\n")
    out = _script(repo, tmp_path / "w", commit, "restore")
    assert out.returncode == 2 and "pins optuna==5.1.0 in requirements.txt" in out.stderr, out.stderr


def test_it_refuses_without_a_commit_or_with_an_unknown_search(repo, tmp_path):
    repo, commit = repo
    out = _script(repo, tmp_path / "w", "", "restore")
    assert out.returncode == 2 and "TUNING_COMMIT" in out.stderr
    env = {**os.environ, "TUNING_WORKTREE": str(tmp_path / "w"), "TUNING_COMMIT": commit,
           "STUDY_DATA_DIR": str(tmp_path)}
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "run", "ko6-typo"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "ko6-typo is not a search" in out.stderr
    out = _script(repo, tmp_path / "w", commit)
    assert out.returncode == 2 and "tuning_runs.sh save" in out.stderr


def test_every_search_is_one_the_tuning_command_accepts():
    import shlex

    from lib.study.search_spaces import parts_of
    from lib.study.tuning import build_parser

    lines = subprocess.run(["bash", str(SCRIPT), "list"], capture_output=True, text=True, check=True).stdout
    searches = dict(line.split("|", 1) for line in lines.splitlines())
    assert list(searches)[:3] == ["ko6-me5-small-frozen", "ed32-minilm-frozen", "goemo27-minilm-frozen"]
    for name, words in searches.items():
        args = build_parser().parse_args(shlex.split(words))
        assert args.profile == "tune" and name == f"{args.dataset}-{args.encoder}" + (
            "-frozen" if args.setting == "frozen" else ""), name  # the folder the search writes
        for method in (m for item in args.method for m in item.split(",")):
            assert parts_of(method), method  # a loss spec the search space knows
    assert {"ko6-me5-small", "ed6-minilm"} <= set(searches)


def _stand_in_search(repo: Path, python: str) -> str:
    """Commit a stand-in for the worktree's python (``python``: its bash text) and a no-op setup_env.sh;
    the commit the searches run from."""
    (repo / "scripts" / "setup_env.sh").write_text("#!/usr/bin/env bash\n")
    (repo / "scripts" / "setup_env.sh").chmod(0o755)
    stub = repo / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(python)
    stub.chmod(0o755)
    (repo / ".gitignore").write_text(".venv/\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "the commit the searches run from")
    return _git(repo, "rev-parse", "HEAD").strip()


STUB_PYTHON = """#!/usr/bin/env bash
# stands in for the worktree's python: logs each call; the first run of the first search is "interrupted"
echo "$*" >> "$CALLS"
n=$(wc -l < "$CALLS")
if [[ $n == 1 ]]; then exit 130; fi
"""


def test_run_resumes_a_search_that_ended_interrupted_then_goes_on_in_order(repo, tmp_path):
    repo, _ = repo
    commit = _stand_in_search(repo, STUB_PYTHON)
    env = {**os.environ, "TUNING_WORKTREE": str(tmp_path / "w"), "TUNING_COMMIT": commit, "SAVE_EVERY": "1",
           "STUDY_DATA_DIR": str(tmp_path), "CALLS": str(tmp_path / "calls.txt")}
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "run", "ko6-me5-small-frozen",
                          "ed32-minilm-frozen"], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert [c.split("--dataset ")[1].split()[0] for c in calls] == ["ko6", "ko6", "ed32"]  # resumed once, then on
    assert "resuming from its records, run 2 of 5" in out.stdout


STUB_TRIAL = """#!/usr/bin/env bash
# stands in for the worktree's python: a search whose first trial ends once the watcher is watching, then a
# long second trial
echo "$*" >> "$CALLS"
until ls "$TMPDIR"/tuning-stop.*/watching > /dev/null 2>&1; do sleep 0.1; done  # the watcher has counted
mkdir -p results/tuning/ko6-me5-small-frozen/ce/trials/t1
echo '{"trial_id": "t1", "status": "complete"}' > results/tuning/ko6-me5-small-frozen/ce/trials/t1/trial.json
for _ in $(seq 600); do sleep 0.1; done  # this process (its name: a runner's) stays until it is stopped
touch "$TMPDIR/second-trial-ran-to-its-end"
"""


def test_stop_after_min_stops_the_search_when_its_next_trial_ends_and_saves_it(repo, tmp_path):
    repo, _ = repo
    commit = _stand_in_search(repo, STUB_TRIAL)
    env = {**os.environ, "TUNING_WORKTREE": str(tmp_path / "w"), "TUNING_COMMIT": commit, "SAVE_EVERY": "1",
           "STUDY_DATA_DIR": str(tmp_path), "CALLS": str(tmp_path / "calls.txt"), "TUNING_STOP_AFTER_MIN": "0",
           "STOP_POLL": "0.2", "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "run", "ko6-me5-small-frozen",
                          "ed32-minilm-frozen"], cwd=repo, env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "second-trial-ran-to-its-end").exists()  # stopped, not waited for
    assert "ko6-me5-small-frozen: stopped after a trial ended" in out.stdout
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1  # the next search never started
    assert _git(repo, "show", "--stat", "HEAD").count("trials/t1/trial.json") == 1  # saved at exit
    bad = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "run"], cwd=repo, capture_output=True,
                         text=True, env={**env, "TUNING_STOP_AFTER_MIN": "soon"})
    assert bad.returncode == 2 and "TUNING_STOP_AFTER_MIN=soon" in bad.stderr


STUB_PUBLISH = """#!/usr/bin/env bash
# stands in for the worktree's python: a publish writes the report (a notebook naming this worktree, a figure
# without a final newline), and trains a recipe run (ignored by git, as in the project)
echo "$PWD $*" >> "$CALLS"
study=results/tuning/ko6-me5-small-frozen
mkdir -p $study/notebooks $study/figures $study/ce/recipe/seed200
echo "{\\"path\\": \\"$PWD/$study/ce\\"}" > $study/notebooks/07_tuning.ipynb
printf '\\211PNG\\r\\n\\032\\n\\000' > $study/figures/best_so_far.png
echo '{}' > $study/ce/recipe/seed200/metrics.json
echo '{"equal_budget": true}' > $study/report.json
"""


def test_publish_commits_the_report_written_in_a_clean_worktree_at_head(repo, tmp_path):
    repo, _ = repo
    commit = _stand_in_search(repo, STUB_PUBLISH)
    shutil.copy(PROJECT_ROOT / ".gitignore", repo / ".gitignore")  # the project's: run folders are ignored
    _git(repo, "commit", "-qam", "the project's ignore rules")
    head = _git(repo, "rev-parse", "--short=12", "HEAD").strip()
    env = {**os.environ, "STUDY_DATA_DIR": str(tmp_path), "CALLS": str(tmp_path / "calls.txt")}
    env.pop("PUBLISH_WORKTREE", None)
    out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ko6-me5-small-frozen"], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    worktree = tmp_path / f"publish-{head}"
    (call,) = (tmp_path / "calls.txt").read_text().splitlines()  # before the second publish below
    assert call.startswith(f"{worktree} -m lib.runner --profile tune --setting frozen --dataset ko6 ")
    assert call.endswith(" --publish") and commit != head  # from HEAD, not from the searches' commit
    study = "results/tuning/ko6-me5-small-frozen"
    assert sorted(_git(repo, "show", "--name-only", "--format=", "HEAD").split()) == [
        f"{study}/figures/best_so_far.png", f"{study}/notebooks/07_tuning.ipynb", f"{study}/report.json"]
    assert f"clean worktree at {head}" in _git(repo, "log", "-1", "--format=%s")
    assert json.loads((repo / study / "notebooks" / "07_tuning.ipynb").read_text()) == {"path": f"{study}/ce"}
    assert (repo / study / "figures" / "best_so_far.png").read_bytes() == b"\x89PNG\r\n\x1a\n\x00"  # as written
    assert _git(repo, "status", "--porcelain") == "" and not worktree.exists()  # the worktree it made: gone
    published = _git(repo, "rev-parse", "HEAD")
    again = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ko6-me5-small-frozen"], cwd=repo,
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr  # the same report again
    assert _git(repo, "rev-parse", "HEAD") == published
    bad = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ko6-typo"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "ko6-typo is not a search" in bad.stderr
    (repo / study / "report.json").write_text("my edit")  # a change of the user's there is never replaced
    again = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ko6-me5-small-frozen"], cwd=repo,
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "not committed" in again.stderr
    assert (repo / study / "report.json").read_text() == "my edit" and len(
        (tmp_path / "calls.txt").read_text().splitlines()) == 2


@pytest.mark.parametrize("running", [["ko6-me5-small-frozen"], ["ed32-minilm-frozen", "ko6-me5-small-frozen"], []])
def test_publish_refuses_while_a_run_of_the_search_goes_on(repo, tmp_path, running):
    """A search's run re-runs the recipe and the winner after its last trial: a publish meanwhile would re-run
    them itself and report other numbers than the recipe.json the run commits later."""
    repo, _ = repo
    sleeper = tmp_path / "elsewhere" / "tuning_runs.sh"  # stands for the script a running search was started as
    sleeper.parent.mkdir()
    sleeper.write_text("sleep 60\n")
    others = subprocess.Popen(["bash", str(sleeper), "run", "ed32-minilm-frozen"])  # another search: no bar
    search = subprocess.Popen(["bash", str(sleeper), "run", *running])
    try:
        env = {**os.environ, "STUDY_DATA_DIR": str(tmp_path)}
        out = subprocess.run(["bash", str(repo / "scripts" / SCRIPT.name), "publish", "ko6-me5-small-frozen"],
                             cwd=repo, env=env, capture_output=True, text=True, timeout=60)
        # a run of such a search elsewhere on this machine may be named first: the refusal is what counts
        assert out.returncode == 2 and "still running ko6-me5-small-frozen (pid " in out.stderr

        def searching(name: str) -> list[str]:
            return subprocess.run(["bash", "-c", f"source <(sed -n '/^searching() {{/,/^}}/p' {SCRIPT}); "
                                   f"searching {name}"], capture_output=True, text=True, timeout=30).stdout.split()

        assert str(search.pid) in searching("ko6-me5-small-frozen")
        search.kill()
        search.wait()
        assert str(search.pid) not in searching("ko6-me5-small-frozen")  # ended: no bar any more
        assert str(others.pid) in searching("ed32-minilm-frozen")
        assert str(others.pid) not in searching("ko6-me5-small-frozen")  # it runs another search
    finally:
        for p in (search, others):
            p.kill()
            p.wait()
