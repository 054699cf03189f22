"""run_all.sh end to end on the smoke profile (five of the seven notebooks on two seeds, 02 and 03 on the first):
every expected file, a summary row per loss, resumable; and every notebook under nbval on that smoke study."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from lib.paths import PROJECT_ROOT
from lib.study.profiles import NOTEBOOKS, TRAINING_NOTEBOOKS, notebook_parameters

pytestmark = pytest.mark.slow  # kernels, browsers or whole studies: minutes (docs/tests.md)

SEEDS = (0, 1)
# run_all.sh runs these on both seeds (06's paired statistics need CE and the combined loss on two), and 02 and
# 03 (the same papermill path, other losses) on the first seed only: one kernel each instead of two (CI time).
SMOKE_NOTEBOOKS = ("00_data_exploration", "01_baseline_ce", "04_combined", "05_tsne_analysis", "06_summary")
FIRST_SEED_NOTEBOOKS = ("02_triplet", "03_arcface")
LOSSES = {"ce=1.0", "ce=0.15+triplet=0.4+arcface=0.45", "triplet=1.0+arcface=1.0", "supcon=1.0"}


def _run_all(*args, timeout=900):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    return subprocess.run(["bash", str(PROJECT_ROOT / "run_all.sh"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=PROJECT_ROOT)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, shared_data):
    """A tiny random BERT in a folder (an encoder a user brings): what these tests check is the notebooks'
    pipeline, and MiniLM's forward and backward passes were most of their time; the real encoders train in
    tests/test_train.py, test_fresh_clone.py and test_fanout.py."""
    from lib.data.datasets import load_dataset
    from tests.tiny_encoder import make_tiny_bert

    bundle = load_dataset("ed6")
    texts = pd.concat([bundle.train.text, bundle.valid.text, bundle.test.text])
    return str(make_tiny_bert(tmp_path_factory.mktemp("encoder") / "tiny-bert", texts))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, encoder):
    results = tmp_path_factory.mktemp("smoke")
    r = _run_all("--profile", "smoke", "--encoder", encoder, "--seeds", ",".join(map(str, SEEDS)), "--results",
                 str(results), "--notebooks", ",".join(SMOKE_NOTEBOOKS))
    first = _run_all("--profile", "smoke", "--encoder", encoder, "--seeds", str(SEEDS[0]), "--results", str(results),
                     "--notebooks", ",".join(FIRST_SEED_NOTEBOOKS))
    return results, (r, first)


def test_run_all_smoke_succeeds_and_reports(smoke):
    results, (r, first) = smoke
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 done, 0 skipped, 0 failed" in first.stdout
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "0 failed" in r.stdout and f"summary: {results / 'summary.md'}" in r.stdout
    assert "[1/" in r.stdout and "elapsed" in r.stdout and "left" in r.stdout


def test_every_expected_file_exists(smoke):
    results, _ = smoke
    executed = {p.name for p in (results / "notebooks").glob("*.ipynb")}
    expected = {"00_data_exploration.ipynb", "06_summary.ipynb", f"05_tsne_analysis-seed{SEEDS[0]}.ipynb"}
    expected |= {f"{nb}-seed{s}.ipynb" for nb in TRAINING_NOTEBOOKS if nb in SMOKE_NOTEBOOKS for s in SEEDS}
    expected |= {f"{nb}-seed{SEEDS[0]}.ipynb" for nb in FIRST_SEED_NOTEBOOKS}
    assert executed == expected
    runs = [p for p in (results / "runs").glob("*/seed*")]
    assert all((p / "metrics.json").exists() and (p / "config.json").exists() for p in runs)
    for name in ("summary.csv", "summary.md", "figures/05-seed0-tsne.png", "figures/06-test_macro_f1_intervals.png",
                 "figures/01-seed0-learning_curves.png", "data/ed6-leakage.json"):
        assert (results / name).exists(), name
    assert not list(results.rglob("*.partial")) and not list(results.rglob(".*.running.ipynb"))


def test_summary_has_a_row_per_loss_with_every_seed(smoke):
    results, _ = smoke
    table = pd.read_csv(results / "summary.csv")
    primary = table[table["primary"]]
    assert LOSSES | {"tfidf-lr", "encoder-lr"} <= set(primary["method"])
    assert (primary[primary["method"].isin(LOSSES)]["seeds"] == len(SEEDS)).all()
    assert primary["method"].is_unique
    ce = primary.set_index("method").loc["ce=0.15+triplet=0.4+arcface=0.45"]
    assert 0 <= ce["p_holm"] <= 1 and ce["paired_seeds"] == len(SEEDS) and ce["tl_seeds"] == len(SEEDS)
    assert ce["rule"] == "centroid" and ce["tl_lo"] <= ce["tl_diff"] <= ce["tl_hi"]  # the seed study's rule


def test_executed_notebooks_and_the_log_are_clean(smoke):
    """No path of this project or its environment, no warning box, no kernel chatter, no bar redraws."""
    results, calls = smoke
    log = "".join(r.stdout + r.stderr for r in calls)
    assert "without encryption" not in log and "\r" not in log and str(PROJECT_ROOT) not in log
    for path in sorted((results / "notebooks").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        assert str(PROJECT_ROOT) not in text and sys.prefix not in text, path.name
        assert "TqdmWarning" not in text and "IProgress" not in text, path.name
        nb = json.loads(text)
        stderr = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]
        assert not stderr, f"{path.name}: {stderr[0]['text'][:300]}"
        assert nb["metadata"]["papermill"]["input_path"] == f"notebooks/{path.name.split('-seed')[0].removesuffix('.ipynb')}.ipynb"


def test_second_run_skips_finished_notebooks(smoke, encoder):
    results, _ = smoke
    r = _run_all("--profile", "smoke", "--encoder", encoder, "--seeds", ",".join(map(str, SEEDS)), "--results",
                 str(results), "--notebooks", "01_baseline_ce,06_summary")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("skipped (finished earlier)") == len(SEEDS)
    assert "1 done, 2 skipped, 0 failed" in r.stdout


def test_nbval_runs_every_notebook_on_the_smoke_study(smoke, encoder, tmp_path):
    """Every notebook, with the smoke parameters papermill injects (prepare only), executed by nbval as a
    reader's kernel runs it, over a copy of the smoke study: the training notebooks find its runs finished
    (run_all.sh trained them above, with the same kernel spec), 05 and 06 redraw and rewrite what was removed."""
    import papermill as pm

    results = tmp_path / "results"
    shutil.copytree(smoke[0], results)
    runs = {p: p.stat().st_mtime_ns for p in results.glob("runs/**/metrics.json")}
    assert runs
    for name in ("summary.csv", "figures/05-seed0-tsne.png"):
        (results / name).unlink()
    prepared = tmp_path / "notebooks"
    prepared.mkdir()
    for name in NOTEBOOKS:
        params = notebook_parameters("smoke", name, "ed6", encoder, SEEDS[0], str(results))
        pm.execute_notebook(str(PROJECT_ROOT / "notebooks" / f"{name}.ipynb"), str(prepared / f"{name}.ipynb"),
                            parameters=params, prepare_only=True, kernel_name="emotion-study", progress_bar=False)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "--rootdir", str(prepared), str(prepared)],
                       capture_output=True, text=True, cwd=prepared, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout and "error" not in r.stdout.splitlines()[-1]
    assert (results / "summary.csv").exists() and (results / "figures" / "05-seed0-tsne.png").exists()
    assert {p: p.stat().st_mtime_ns for p in results.glob("runs/**/metrics.json")} == runs, "a run was re-trained"


@pytest.mark.parametrize("args,message", [
    (["--profile", "huge"], "invalid choice: 'huge'"),
    (["--seeds", "0,x"], "--seeds takes comma-separated non-negative integers"),
    (["--seeds", "1,1"], "distinct non-negative integers"),
    (["--notebooks", "07_extra"], "unknown notebook(s) 07_extra"),
    (["--set", "WARMUP=3"], "no selected notebook has a parameter 'WARMUP'"),
    (["--set", "EPOCHS"], "--set takes NAME=VALUE"),
])
def test_bad_options_fail_clearly(args, message, tmp_path):
    r = _run_all(*args, "--results", str(tmp_path / "r"), timeout=300)
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "r" / "runs").exists()


def test_help_explains_every_option():
    r = _run_all("--help", timeout=300)
    for opt in ("--profile", "--dataset", "--encoder", "--seeds", "--results", "--force", "--freeze-encoder", "--set",
                "smoke", "paper"):
        assert opt in r.stdout


def test_freeze_encoder_and_set_reach_the_notebooks_and_the_runs(tmp_path, encoder):
    results = tmp_path / "frozen"
    r = _run_all("--profile", "smoke", "--encoder", encoder, "--seeds", "0", "--results", str(results),
                 "--freeze-encoder", "--set", "EPOCHS=2", "--set", "BASELINES=[]", "--notebooks",
                 "01_baseline_ce,06_summary")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "parameters set: FREEZE_ENCODER=true, EPOCHS=2, PATIENCE=5, BATCH_SIZE=128, BASELINES=[]" in r.stdout
    params = json.loads((results / "notebooks" / "01_baseline_ce-seed0.ipynb").read_text())["metadata"]["papermill"]
    assert params["parameters"]["FREEZE_ENCODER"] is True and params["parameters"]["EPOCHS"] == 2
    assert "EPOCHS" not in json.loads((results / "notebooks" / "06_summary.ipynb").read_text()
                                      )["metadata"]["papermill"]["parameters"]
    config = json.loads((results / "runs" / "ce1.0-frozen" / "seed0" / "config.json").read_text())
    assert config["freeze_encoder"] is True and config["epochs"] == 2 and config["batch_size"] == 128
    assert list(pd.read_csv(results / "summary.csv").query("primary")["method"]) == ["ce=1.0|frozen"]


def test_kernels_import_the_lib_of_the_checkout_that_runs_them(tmp_path, monkeypatch):
    """A worktree sharing another checkout's .venv: the editable install (or anything on PYTHONPATH)
    names the other checkout's lib; notebook kernels, started in notebooks/, must import this one's."""
    import subprocess
    import sys

    from lib.paths import PROJECT_ROOT
    from lib.study.runner import use_this_lib_in_kernels

    other = tmp_path / "other"
    (other / "lib").mkdir(parents=True)
    (other / "lib" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(other))
    probe = [sys.executable, "-c", "import lib; print(lib.__file__)"]
    before = subprocess.run(probe, cwd=PROJECT_ROOT / "notebooks", capture_output=True, text=True, check=True).stdout
    assert before.startswith(str(other))  # what a kernel imported without the fix
    use_this_lib_in_kernels()
    after = subprocess.run(probe, cwd=PROJECT_ROOT / "notebooks", capture_output=True, text=True, check=True).stdout
    assert after.strip() == str(PROJECT_ROOT / "lib" / "__init__.py")
    assert str(other) in os.environ["PYTHONPATH"].split(os.pathsep)[1:]  # the user's path is kept, after ours
