"""The newcomer's path: in a fresh clone, the run command trains (it does not re-render the
published runs), leaves every tracked file unchanged, and ends with yours-against-published.

The clone runs ``python -m lib.runner`` (what run_all.sh execs) with PYTHONPATH at the clone, so
the notebooks' kernels import the clone's lib; the data and the encoder cache are shared.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lib.paths import PROJECT_ROOT, cache_dir, data_dir

pytestmark = pytest.mark.slow  # kernels, browsers or whole studies: minutes (docs/tests.md)

STUDY = "ed6-minilm"
# The default profile (the published study's data set and encoder), shrunk to seconds; in fp32 like the smoke
# profile: a CPU without AVX512 emulates bf16 (~40 s for this run, against ~5 s) and says so in the notebook.
TINY = ["--seeds", "0", "--notebooks", "01_baseline_ce,06_summary", "--set", "EPOCHS=1", "--set", "BATCH_SIZE=16",
        "--set", "MAX_LENGTH=32", "--set", "MAX_TRAIN_SAMPLES=64", "--set", "MAX_EVAL_SAMPLES=48",
        "--set", "BASELINES=[]", "--set", "N_BOOT=200", "--set", "BF16=false"]


def _git(clone, *args):
    return subprocess.run(["git", *args], cwd=clone, capture_output=True, text=True, check=True).stdout


def _runner(clone, *args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(clone), STUDY_DATA_DIR=str(data_dir()), STUDY_CACHE_DIR=str(cache_dir()),
               TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "lib.runner", *args], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    dest = tmp_path_factory.mktemp("fresh") / "project"
    subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(dest)], check=True)
    assert (dest / "results" / STUDY / "summary.csv").exists(), "the clone carries the published study"
    return dest


@pytest.fixture(scope="module")
def first_run(clone):
    return _runner(clone, *TINY)


def test_the_run_command_trains_and_leaves_tracked_files_unchanged(clone, first_run):
    r = first_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert _git(clone, "status", "--porcelain") == "", "a run changed or added files git tracks"
    assert "-> results/local/ed6-minilm" in r.stdout
    assert "runs: 1 trained by this command, 0 reused" in r.stdout  # CE trained, nothing re-rendered
    local = clone / "results" / "local" / STUDY
    config = json.loads((local / "runs" / "ce1.0" / "seed0" / "config.json").read_text())
    assert config["max_train_samples"] == 64 and config["epochs"] == 1 and config["bf16"] is False


def test_it_ends_with_yours_against_published_on_screen_and_in_files(clone, first_run):
    r = first_run
    local = clone / "results" / "local" / STUDY
    assert "against the published results/ed6-minilm" in r.stdout
    assert "written results/local/ed6-minilm/comparison.csv and results/local/ed6-minilm/comparison.json" in r.stdout
    table = pd.read_csv(local / "comparison.csv")
    assert list(table.columns) == sorted(table.columns)
    published = pd.read_csv(clone / "results" / STUDY / "summary.csv").query("primary").set_index("method")
    mine = pd.read_csv(local / "summary.csv").query("primary").set_index("method")
    ce = table.set_index("method").loc["ce=1.0"]
    assert ce["published"] == pytest.approx(published.loc["ce=1.0", "macro_f1"])
    assert ce["yours"] == pytest.approx(mine.loc["ce=1.0", "macro_f1"]) and ce["yours_seeds"] == 1
    assert ce["difference"] == pytest.approx(ce["yours"] - ce["published"], abs=1e-6)
    lo, hi, n_pub = published.loc["ce=1.0", ["macro_f1_lo", "macro_f1_hi", "seeds"]]
    widened = (hi - lo) / 2 * (1 + n_pub / ce["yours_seeds"]) ** 0.5  # prediction interval for 1 seed
    assert (ce["expected_lo"], ce["expected_hi"]) == pytest.approx((ce["published"] - widened, ce["published"] + widened),
                                                                   abs=2e-6)
    assert bool(ce["within_expected_range"]) == (ce["expected_lo"] <= ce["yours"] <= ce["expected_hi"])
    # a method only the published study ran is listed, with nothing of yours
    assert pd.isna(table.set_index("method").loc["supcon=1.0", "yours"])
    doc_text = (local / "comparison.json").read_text(encoding="utf-8")
    doc = json.loads(doc_text)
    assert doc_text == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert doc["published"] == "results/ed6-minilm" and doc["yours"] == "results/local/ed6-minilm"
    assert "over the published study's seeds" in doc["interval"]


def test_what_a_reader_sees_names_no_folder_of_this_machine(clone, first_run):
    r = first_run
    assert str(clone) not in r.stdout and "without encryption" not in r.stdout + r.stderr
    notebooks = sorted((clone / "results" / "local" / STUDY / "notebooks").glob("*.ipynb"))
    assert [p.name for p in notebooks] == ["01_baseline_ce-seed0.ipynb", "06_summary.ipynb"]
    for path in notebooks:
        text = path.read_text(encoding="utf-8")
        assert str(clone) not in text and sys.prefix not in text, path.name
        assert "TqdmWarning" not in text and "Warning:" not in text, path.name
        meta = json.loads(text)["metadata"]["papermill"]
        assert meta["parameters"]["RESULTS_DIR"] == "results/local/ed6-minilm"
        assert meta["input_path"].startswith("notebooks/") and meta["output_path"] == \
            f"results/local/ed6-minilm/notebooks/{path.name}"


def test_rerendering_the_published_runs_is_explicit_and_says_so(clone, first_run):
    # the published ed6 runs come from one clean commit (PROTOCOL.md): the confirmatory provenance rule
    r = _runner(clone, "--publish", "--notebooks", "06_summary", "--set", "PROVENANCE=clean")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("PUBLISHED RESULTS: writing into results/ed6-minilm, which git tracks")
    assert "reused, not re-trained" in lines[0]
    assert lines[-1].startswith("PUBLISHED RESULTS: results/ed6-minilm re-rendered:") and ", 0 trained" in lines[-1]
    # the numbers recompute exactly from the published runs: the summary is unchanged
    assert _git(clone, "status", "--porcelain", "results/ed6-minilm/summary.csv", "results/ed6-minilm/runs") == ""


def test_publish_refuses_the_smoke_profile_and_an_explicit_folder(clone):
    for extra in (["--profile", "smoke"], ["--results", "elsewhere"]):
        r = _runner(clone, "--publish", *extra, timeout=300)
        assert r.returncode == 2 and "--publish writes into the published" in r.stderr
    assert not (clone / "elsewhere").exists()
