"""run_all.sh --ray: the runs as Ray tasks on a local Ray and on a two-node cluster on this machine.

Tiny smoke runs (one CE run is ~10-30 s on two cores). The cluster (a head and a worker node,
one CPU each, started with ``ray start --block``) is shared by the tests of this module and
stopped by process id at the end: only what these tests started is ever killed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT
from lib.study.reproduce import compare_runs
from tests.ray_cluster import Cluster, free_port, ray_env, session_pids

SMALL = ["--profile", "smoke", "--set", "MAX_TRAIN_SAMPLES=32", "--set", "MAX_EVAL_SAMPLES=32"]


def _runner(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib.runner", *args], capture_output=True, text=True,
                          env=ray_env(), timeout=timeout, cwd=PROJECT_ROOT)


def _hiding(folder: Path) -> list[str]:
    """A command prefix: what follows runs in a mount namespace of its own, with an empty tmpfs over ``folder``."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs tmpfs "{folder}" && exec "$0" "$@"']


def _can_hide(folder: Path) -> bool:
    """Whether ``_hiding`` works here: root, unshare, and mounts allowed (a container's profile may refuse them)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run([*_hiding(folder), "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node. Where allowed (root, unshare), the worker node runs in a mount namespace of
    its own with an empty tmpfs over ``c.hidden``: a folder every other process sees and it does not (the
    shared-folder test), and otherwise a node like the head."""
    c = Cluster(tmp_path_factory.mktemp("ray-cluster"))
    c.hidden = tmp_path_factory.mktemp("hidden-from-a-node")
    if not _can_hide(c.hidden):
        c.hidden = None
    wrap = _hiding(c.hidden) if c.hidden else []
    try:
        head = c.start_node()
        c.workers = c.start_node(wrap=wrap)  # the two nodes' ids
        c.stranger = next(i for i in c.workers if i not in head)
        yield c
    finally:
        c.stop()


def _folders(results: Path) -> dict[str, Path]:
    return {str(p.relative_to(results)): p for p in sorted((results / "runs").glob("*/*"))}


# ---- a local Ray started by the command ----

@pytest.mark.slow
def test_local_ray_gives_the_runs_of_a_sequential_study(tmp_path):
    """Same metrics, predictions and embeddings bit for bit (same CPU, same torch threads). One seed: several
    runs queued on Ray are the cluster tests' (two runs on two nodes, CE beside TF-IDF). The summary is
    left out: it is computed from these run files alone (tests/test_published_results.py)."""
    import torch

    common = [*SMALL, "--seeds", "0", "--notebooks", "01_baseline_ce", "--set", "BASELINES=[]"]
    seq = _runner(*common, "--results", str(tmp_path / "seq"))
    assert seq.returncode == 0, seq.stdout[-3000:] + seq.stderr[-3000:]
    threads = str(torch.get_num_threads())  # what the notebook kernel's torch uses in the sequential study
    on_ray = _runner(*common, "--results", str(tmp_path / "ray"), "--ray", "--ray-workers", "1",
                     "--ray-cpus-per-run", threads)
    assert on_ray.returncode == 0, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
    out = on_ray.stdout
    assert "ray: 1 run(s) needed by the notebooks, 0 finished earlier, 1 to train" in out
    assert "ray [1/1]" in out and "done 1, running 0, failed 0, left 0" in out
    # the notebook trained nothing: it found the run finished, trained with the config it asks for
    assert "reused a finished run" in (tmp_path / "ray" / "notebooks" / "01_baseline_ce-seed0.ipynb").read_text()
    seq_runs, ray_runs = _folders(tmp_path / "seq"), _folders(tmp_path / "ray")
    assert list(seq_runs) == list(ray_runs) == ["runs/ce1.0/seed0"]
    for name in seq_runs:
        assert compare_runs(seq_runs[name], ray_runs[name]) == [], name
        assert json.loads((ray_runs[name] / "config.json").read_text())["num_threads"] == int(threads)
        # what the summary reads besides: the machine and packages (the commit may move between the two runs;
        # the time written differs)
        seq_env, ray_env_ = (json.loads((r[name] / "environment.json").read_text()) for r in (seq_runs, ray_runs))
        assert set(ray_env_["git"]) == set(seq_env["git"]) == {"commit", "dirty"}
        moving = {"git", "written_utc"}
        assert {k: v for k, v in seq_env.items() if k not in moving} == \
            {k: v for k, v in ray_env_.items() if k not in moving}


@pytest.mark.parametrize("given,problem", [
    ({}, None),
    ({"ray_workers": 2}, "--ray-workers only apply with --ray"),
    ({"ray_cpus_per_run": 2}, "--ray-cpus-per-run only apply with --ray"),
    ({"ray_workers": 2, "ray_cpus_per_run": 1}, "--ray-workers and --ray-cpus-per-run only apply with --ray"),
    ({"ray": "local", "ray_workers": 2, "ray_cpus_per_run": 1}, None),
    ({"ray": "10.0.0.1:6379", "ray_cpus_per_run": 1}, None),
    ({"ray": "10.0.0.1:6379", "ray_workers": 2}, "--ray-workers sets the runs at once on a local Ray"),
])
def test_ray_options_that_cannot_apply_are_named(given, problem):
    from lib.study.ray_options import options_problem

    args = argparse.Namespace(**{"ray": None, "ray_workers": None, "ray_cpus_per_run": None, **given})
    found = options_problem(args)
    assert found is None if problem is None else (found or "").startswith(problem)


def test_ray_options_that_cannot_apply_are_refused_before_anything_loads(tmp_path):
    """Answered from the arguments alone: nothing loaded, no Ray started or joined, no folder made."""
    r = _runner(*SMALL, "--ray-workers", "2", "--notebooks", "01_baseline_ce", "--results", str(tmp_path / "r"),
                timeout=300)
    assert r.returncode == 2 and r.stderr == "error: --ray-workers only apply with --ray\n"
    r = _runner(*SMALL, "--ray", f"127.0.0.1:{free_port()}", "--ray-workers", "2", "--results", str(tmp_path / "r"),
                timeout=300)
    assert r.returncode == 2 and "--ray-workers sets the runs at once on a local Ray" in r.stderr
    assert not (tmp_path / "r").exists()


def test_a_sweep_over_published_runs_trained_otherwise_stops_before_ray_starts(tmp_path, monkeypatch, capsys):
    import lib.study.fanout as fanout

    monkeypatch.setattr(fanout, "is_published", lambda path: True)
    plan = ("smoke", "ed6", "minilm", [0], tmp_path, ["01_baseline_ce"], {"BASELINES": []})
    (run,) = fanout.planned_runs(*plan)
    run.folder.mkdir(parents=True)
    (run.folder / "config.json").write_text(json.dumps({**run.config.to_dict(), "epochs": 99}))
    (run.folder / "metrics.json").write_text("{}")
    monkeypatch.setattr(fanout, "_connect", lambda *a: pytest.fail("Ray was started"))
    args = argparse.Namespace(ray=fanout.LOCAL, ray_workers=None, ray_cpus_per_run=None, force=False, by_seed=False)
    assert fanout.ray_sweep(args, *plan).exit_code == 2
    assert "1 published run(s) were trained with other settings" in capsys.readouterr().err
    assert json.loads((run.folder / "config.json").read_text())["epochs"] == 99  # not replaced


class _InProcessRay:
    """Stands in for ray in ray_sweep: each task runs here when it is submitted, on one node of one CPU."""

    def __init__(self):
        self.done = []

    def remote(self, fn):
        ray = self

        class Task:
            def options(self, **_):
                return self

            def remote(self, *args):
                ray.done.append(fn(*args))
                return len(ray.done) - 1

        return Task()

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return self.done[ref]

    def cluster_resources(self):
        return {"CPU": 1}

    def get_runtime_context(self):
        return argparse.Namespace(get_node_id=lambda: "node0000")

    def shutdown(self):
        pass


def test_save_model_set_for_a_notebook_reaches_the_runs_trained_on_ray(tmp_path, monkeypatch, capsys):
    """--set SAVE_MODEL=true: the fine-tuned run is trained on Ray with its model/ (the baseline, which has
    none, without), a finished run without one is trained again, and the notebook then reuses it."""
    import types
    from dataclasses import replace

    import lib.study.fanout as fanout
    import lib.training.train as train
    from lib.study.experiments import run_or_load
    from lib.training.saved_model import INFO_FILE, MODEL_DIR

    calls = []

    def run_experiment(cfg, out, quiet=False, save_model=False, resume=False):  # a complete run folder, model/ if asked
        calls.append((cfg.method, save_model))
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict()))
        (out / "metrics.json").write_text('{"test_macro_f1": 0.5}')
        if save_model:
            (out / MODEL_DIR).mkdir()
            (out / MODEL_DIR / INFO_FILE).write_text("{}")
        return {"test_macro_f1": 0.5}

    monkeypatch.setattr(train, "run_experiment", run_experiment)
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    stub = _InProcessRay()
    for name in ("remote", "wait", "get", "cluster_resources", "get_runtime_context", "shutdown"):
        setattr(sys.modules["ray"], name, getattr(stub, name))
    monkeypatch.setattr(fanout, "_connect", lambda *a: None)
    monkeypatch.setattr(fanout, "check_shared_folder", lambda *a: None)
    monkeypatch.setattr(fanout, "_resources", lambda *a: ({"num_cpus": 1}, 1, "1 CPU(s) per run"))
    plan = ("smoke", "ed6", "minilm", [0], tmp_path, ["01_baseline_ce"], {"BASELINES": ["tfidf-lr"],
                                                                          "SAVE_MODEL": True})
    ce, tfidf = fanout.planned_runs(*plan)
    run_experiment(replace(ce.config).validate(), ce.folder)  # the same experiment, trained without its model
    calls.clear()
    args = argparse.Namespace(ray=fanout.LOCAL, ray_workers=None, ray_cpus_per_run=None, force=False, by_seed=False,
                              ray_retries=0)
    sweep = fanout.ray_sweep(args, *plan)
    assert sweep.exit_code is None and sweep.failed == [], capsys.readouterr().err
    assert "ray: 2 run(s) needed by the notebooks, 0 finished earlier, 2 to train" in capsys.readouterr().out
    assert sorted(calls) == [("finetune", True), ("tfidf-lr", False)]
    assert (ce.folder / MODEL_DIR / INFO_FILE).is_file() and not (tfidf.folder / MODEL_DIR).exists()
    # what notebook 01 then calls (SAVE_MODEL = True): the run trained on Ray, not a second training
    assert run_or_load(ce.config, tmp_path, save_model=True)["reused"] is True
    assert len(calls) == 2


def test_a_published_run_without_the_model_save_model_asks_for_stops_before_ray_starts(tmp_path, monkeypatch,
                                                                                       capsys):
    from dataclasses import replace

    import lib.study.fanout as fanout

    monkeypatch.setattr(fanout, "is_published", lambda path: True)
    plan = ("smoke", "ed6", "minilm", [0], tmp_path, ["01_baseline_ce"], {"BASELINES": [], "SAVE_MODEL": True})
    (run,) = fanout.planned_runs(*plan)
    run.folder.mkdir(parents=True)
    (run.folder / "config.json").write_text(json.dumps(replace(run.config).validate().to_dict()))
    (run.folder / "metrics.json").write_text("{}")
    monkeypatch.setattr(fanout, "_connect", lambda *a: pytest.fail("Ray was started"))
    args = argparse.Namespace(ray=fanout.LOCAL, ray_workers=None, ray_cpus_per_run=None, force=False, by_seed=False)
    assert fanout.ray_sweep(args, *plan).exit_code == 2
    err = capsys.readouterr().err
    assert f"1 published run(s) have no saved model (model/), e.g. {run.folder}" in err and "other settings" not in err
    assert sorted(p.name for p in run.folder.iterdir()) == ["config.json", "metrics.json"]  # not retrained


# ---- a two-node cluster on this machine ----

@pytest.mark.slow
def test_a_sweep_through_the_address_runs_on_both_nodes(cluster, tmp_path):
    results = tmp_path / "r"
    r = _runner(*SMALL, "--seeds", "0", "--notebooks", "02_triplet", "--results", str(results),
                "--ray", cluster.address, "--ray-cpus-per-run", "1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ray: 1 CPU(s) per run, 2 CPUs on 2 node(s): 2 run(s) at once" in r.stdout
    per_node = next(line for line in r.stdout.splitlines() if "runs per node:" in line)
    assert sorted(n[:8] for n in cluster.workers) == sorted(part.split(":")[0].strip()
                                                        for part in per_node.split("runs per node:")[1].split(","))
    assert set(_folders(results)) == {"runs/triplet1.0/seed0", "runs/ce1.0_triplet1.0/seed0"}
    assert (results / "notebooks" / "02_triplet-seed0.ipynb").exists()
    assert not list(results.glob(".ray-shared-check*")), "the shared-folder markers are removed"


@pytest.mark.slow
def test_more_cpus_per_run_than_any_node_has_is_refused(cluster, tmp_path):
    r = _runner(*SMALL, "--seeds", "0", "--notebooks", "02_triplet", "--results", str(tmp_path / "r"),
                "--ray", cluster.address, "--ray-cpus-per-run", "2", timeout=300)
    assert r.returncode == 2 and "error: --ray-cpus-per-run 2: no Ray node has 2 CPUs (the largest has 1)" in r.stderr
    assert not (tmp_path / "r" / "runs").exists()


def _ray_task_pids(cluster: Cluster, name: str) -> list[int]:
    """Worker processes of our cluster running a task whose name starts with ``name``."""
    pids = []
    for proc in cluster.nodes:
        for pid in session_pids(proc.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if title.startswith(f"ray::{name}"):
                pids.append(pid)
    return pids


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_never_leaves_a_complete_looking_run(cluster, tmp_path):
    results = tmp_path / "r"
    run = results / "runs" / "ce1.0" / "seed0"
    cmd = [sys.executable, "-m", "lib.runner", *SMALL, "--seeds", "0", "--notebooks", "01_baseline_ce", "--set",
           "BASELINES=[]", "--set", "EPOCHS=3", "--results", str(results), "--ray", cluster.address,
           "--ray-cpus-per-run", "1", "--ray-retries", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ray_env(),
                            cwd=PROJECT_ROOT)
    try:
        deadline = time.time() + 300
        while not (run.with_name("seed0.partial") / "STATUS.json").exists():  # training has begun
            assert proc.poll() is None and time.time() < deadline, "the run never started"
            time.sleep(0.1)
        pids = _ray_task_pids(cluster, "train 01_baseline_ce seed 0")
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        assert not run.exists(), "a killed run must not look complete"
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    assert "ray [1/1] 01_baseline_ce seed 0: ce=1.0 seed 0: done" in out
    assert (run / "metrics.json").exists() and (run / "predictions.csv").exists()
    assert not run.with_name("seed0.partial").exists()


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_a_second_one_trains_only_what_is_missing(cluster, tmp_path):
    results = tmp_path / "r"
    ce, tfidf = results / "runs" / "ce1.0" / "seed0", results / "runs" / "tfidf-lr" / "seed0"
    # CE outlasts the trigger below (its first epoch and TF-IDF done) by at least PATIENCE (3) epochs, by
    # up to 14 (~10 s) unless it stops early; the second command trains it in full
    args = [*SMALL, "--seeds", "0", "--notebooks", "01_baseline_ce", "--set", 'BASELINES=["tfidf-lr"]', "--set",
            "EPOCHS=15", "--results", str(results), "--ray", cluster.address, "--ray-cpus-per-run", "1"]
    # A child inherits an ignored SIGINT (some earlier in-process code may have set SIG_IGN), and
    # Python then never raises KeyboardInterrupt: give the runner the terminal's default.
    proc = subprocess.Popen([sys.executable, "-m", "lib.runner", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ray_env(), cwd=PROJECT_ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not ((ce.with_name("seed0.partial") / "STATUS.json").exists() and (tfidf / "metrics.json").exists()):
            assert proc.poll() is None and time.time() < deadline, "the runs never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:] + err[-3000:]
    assert "interrupted" in err and not ce.exists()  # the CE run never looks complete
    assert not (results / "notebooks" / "01_baseline_ce-seed0.ipynb").exists()
    deadline = time.time() + 60  # the cancelled task's worker is killed
    while _ray_task_pids(cluster, "train 01_baseline_ce seed 0") and time.time() < deadline:
        time.sleep(0.5)
    assert not _ray_task_pids(cluster, "train 01_baseline_ce seed 0")

    again = _runner(*args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "ray: 2 run(s) needed by the notebooks, 1 finished earlier, 1 to train" in again.stdout
    assert (ce / "metrics.json").exists() and not ce.with_name("seed0.partial").exists()


@pytest.mark.slow
def test_a_run_that_raises_is_reported_and_the_others_go_on(cluster, tmp_path):
    """HEAD_LR=1e38 overflows the optimizer step: the CE run raises (FAILED.json), TF-IDF (no heads) trains."""
    results = tmp_path / "r"
    r = _runner(*SMALL, "--seeds", "0", "--notebooks", "01_baseline_ce", "--set", "HEAD_LR=1e38", "--set",
                'BASELINES=["tfidf-lr"]', "--results", str(results), "--ray", cluster.address,
                "--ray-cpus-per-run", "1")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    failed_json = results / "runs" / "ce1.0" / "seed0.partial" / "FAILED.json"
    assert "ray: FAILED 01_baseline_ce seed 0: ce=1.0 seed 0" in r.stderr
    assert '"head_lr": 1e+38' in r.stderr and "error RuntimeError: " in r.stderr  # its configuration, its error
    assert f"see {failed_json}" in r.stderr and "RuntimeError" in failed_json.read_text()
    assert "done 1, running 0, failed 1, left 0" in r.stdout  # the other run went on
    assert set(_folders(results)) == {"runs/ce1.0/seed0.partial", "runs/tfidf-lr/seed0"}
    assert not (results / "notebooks" / "01_baseline_ce-seed0.ipynb").exists()  # its notebook was not executed
    assert "FAILED 01_baseline_ce-seed0 at Ray run runs/ce1.0/seed0" in r.stdout


@pytest.mark.slow
def test_a_results_folder_a_node_cannot_see_is_refused(cluster):
    """The worker node sees an empty tmpfs over the results' parent folder (the cluster fixture)."""
    if cluster.hidden is None:
        pytest.skip("needs unshare --mount (root) to give one node another view of the filesystem")
    results = cluster.hidden / "results"
    r = _runner(*SMALL, "--seeds", "0", "--notebooks", "01_baseline_ce", "--set", "BASELINES=[]", "--results",
                str(results), "--ray", cluster.address, "--ray-cpus-per-run", "1")
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    error = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "must be on a filesystem every Ray node sees" in error[0]
    assert cluster.stranger[:8] in error[0] and "nothing was trained" in error[0]
    assert not (results / "runs").exists() and not list(results.glob(".ray-shared-check*"))
