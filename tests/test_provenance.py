"""Provenance: what a run records about the code that made it."""
from __future__ import annotations

import subprocess

from lib.training import results


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_dirty_means_changed_code_not_new_results(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    (repo / "lib" / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(results, "PROJECT_ROOT", repo)
    assert results.git_state()["dirty"] is False
    (repo / "results" / "study" / "runs").mkdir(parents=True)
    (repo / "results" / "study" / "runs" / "metrics.json").write_text("{}")
    assert results.git_state()["dirty"] is False  # the study's own output
    (repo / "lib" / "new.py").write_text("y = 2\n")
    assert results.git_state()["dirty"] is True  # untracked code
    (repo / "lib" / "new.py").unlink()
    (repo / "lib" / "a.py").write_text("x = 2\n")
    state = results.git_state()
    assert state["dirty"] is True and len(state["commit"]) == 40
