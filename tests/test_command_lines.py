"""Command-line help: ./run_all.sh --help prints its options without creating or installing
anything, and lib.run's help states each default once."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from lib.paths import PROJECT_ROOT


def test_run_all_help_creates_no_environment_and_imports_nothing_heavy(tmp_path):
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(PROJECT_ROOT / "run_all.sh", copy / "run_all.sh")
    shutil.copytree(PROJECT_ROOT / "lib", copy / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_ROOT / "scripts", copy / "scripts")
    # A python that cannot import torch, pandas, Ray or papermill stands in for one before set-up.
    (copy / "python3").write_text(
        "#!/usr/bin/env bash\n"
        f"exec {sys.executable} -c \"import sys, runpy; sys.modules.update(dict.fromkeys(['torch', 'pandas', "
        "'numpy', 'transformers', 'papermill', 'ray', 'sklearn'])); sys.argv = ['lib.runner'] + sys.argv[3:]; "
        "runpy.run_module('lib.runner', run_name='__main__')\" \"$@\"\n")
    (copy / "python3").chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(copy / "python3"), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", "run_all.sh", "--help"], cwd=copy, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: run_all.sh") and "--render-only" in out.stdout and "--ray" in out.stdout
    assert sorted(p.name for p in copy.iterdir()) == ["lib", "python3", "run_all.sh", "scripts"]  # no .venv


def test_run_all_help_of_the_tune_profile_lists_the_searchs_options():
    """With the environment made, the other arguments go along with --help (the search has its own)."""
    if not (PROJECT_ROOT / ".venv" / "bin" / "python").is_file():
        pytest.skip("needs the project's .venv (scripts/setup_env.sh)")
    out = subprocess.run(["bash", "run_all.sh", "--profile", "tune", "--help"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m lib.study.tuning") and "--setting" in out.stdout


def test_lib_run_help_states_each_default_once():
    out = subprocess.run([sys.executable, "-m", "lib.run", "--help"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    options = re.split(r"\n  (?=--)", out)
    twice = [o.split()[0] for o in options if o.count("(default") > 1]
    assert not twice, twice
    assert re.search(r"--num-threads NUM_THREADS\s+CPU threads for torch \(default: all cores\)\n", out)


def test_setup_refuses_a_python_too_old_before_making_anything(tmp_path):
    copy = tmp_path / "project"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "scripts" / "setup_env.sh", copy / "scripts" / "setup_env.sh")
    old = tmp_path / "python3"  # answers as a Python 3.9 would
    old.write_text("#!/usr/bin/env bash\n[[ \"$1\" == -c ]] && [[ \"$2\" == *version_info* ]] && exit 1\n"
                   "echo Python 3.9.18\n")
    old.chmod(0o755)
    out = subprocess.run(["bash", str(copy / "scripts" / "setup_env.sh")], env={"PATH": "/usr/bin:/bin",
                         "PYTHON": str(old)}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "is Python 3.9.18; the project needs Python 3.10 or later" in out.stderr
    assert not (copy / ".venv").exists()
