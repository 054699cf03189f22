"""``run_all.sh --ray [ADDRESS]``: train every run the selected notebooks need as Ray tasks, first.

The list of runs comes from ``lib.study.plan``, the same function the notebooks call, with the
parameters the runner injects; the notebooks then execute as usual and find every run finished.
Tasks, not notebook kernels, go to Ray (kernels started side by side race for ZMQ ports).

- Where: the cluster at ADDRESS, or a Ray started here for the sweep (``--ray-workers`` runs at
  once, ``--ray-cpus-per-run`` CPUs each: by default the cores divided by the workers).
- Resources: a run asks for 1 GPU when the cluster has GPUs, else its CPUs; torch uses as many
  threads as the run has CPUs (``num_threads``, a runtime field: the run is the same experiment).
- Saved models: a fine-tuned run is trained with ``save_model`` (its ``model/``) when a notebook
  that needs it has ``SAVE_MODEL`` set (``--set SAVE_MODEL=true``), as that notebook would train it.
- Shared results: before any training a task on every node reads a marker the driver wrote in
  the results folder and writes one back; a node that cannot stops the sweep with one message.
- Faults: a worker that dies is retried (``--ray-retries``); a run that raises is reported with
  its configuration, error and FAILED.json while the others go on, and the notebooks that need
  it are not executed; Ctrl-C cancels the sweep (runs are built in ``<out>.partial/`` and only
  renamed when complete); a second sweep trains only what is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from lib.paths import PROJECT_ROOT
from lib.study.experiments import is_published, method_key, run_folder, same_config
from lib.study.parameters_cell import accepts, loss_option_parameters, notebook_defaults
from lib.study.plan import notebook_runs
from lib.study.profiles import TRAINING_NOTEBOOKS, notebook_parameters
from lib.study.ray_options import LOCAL  # the --ray options themselves: standard library only, for --help
from lib.training.config import ExperimentConfig
from lib.training.results import PARTIAL_SUFFIX, is_complete
from lib.training.saved_model import has_saved_model

MARKER = ".ray-shared-check"
# Passed on to every worker: where the project, data and encoders are, and offline switches.
FORWARDED_ENV = ("STUDY_DATA_DIR", "STUDY_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class SweepRun:
    """One run of the sweep and the notebook executions that read it."""
    config: ExperimentConfig
    group: str | None
    folder: Path
    needed_by: list = field(default_factory=list)  # [(notebook, seed), ...]
    save_model: bool = False  # keep its model/: a notebook that needs it has SAVE_MODEL (fine-tuned runs only)

    @property
    def label(self) -> str:
        nb, seed = self.needed_by[0]
        where = f"{self.group}/" if self.group else ""
        return f"{nb} seed {seed}: {where}{method_key(self.config)} seed {self.config.seed}"


@dataclass
class Sweep:
    """What main needs back: an exit status to stop with, notebooks not to execute, failures to report."""
    exit_code: int | None = None
    blocked: set = field(default_factory=set)
    failed: list = field(default_factory=list)
    done: int = 0
    reused: int = 0


def planned_runs(profile: str, dataset: str, encoder: str, seeds: list[int], results: Path, selected: list[str],
                 overrides: dict, columns: dict | None = None, by_seed: bool = False,
                 frozen: bool | None = None) -> list[SweepRun]:
    """Every run the selected training notebooks execute for these seeds, each once, in notebook order
    (``by_seed``: seed by seed, notebook order within a seed; Ray starts them in this order). ``frozen``
    is the runner's answer (``is_frozen_study``); without it, ``FREEZE_ENCODER`` in the overrides."""
    if frozen is None:
        frozen = bool(overrides.get("FREEZE_ENCODER"))
    runs: dict[Path, SweepRun] = {}
    loss_options = loss_option_parameters()  # a loss of one's own: its parameters reach the notebooks with LOSSES
    for nb in selected:
        if nb not in TRAINING_NOTEBOOKS:
            continue
        defaults = notebook_defaults(nb)
        for seed in seeds:
            params = {**defaults, **notebook_parameters(profile, nb, dataset, encoder, seed, str(results), columns,
                                                        frozen=frozen),
                      **{k: v for k, v in overrides.items() if accepts(nb, k, loss_options)}}
            for planned in notebook_runs(nb, params):
                folder = run_folder(results, planned.config, planned.group)
                run = runs.setdefault(folder, SweepRun(planned.config, planned.group, folder))
                if (nb, seed) not in run.needed_by:
                    run.needed_by.append((nb, seed))
                # as run_or_load: baselines ignore SAVE_MODEL; one notebook asking for the model is enough
                run.save_model |= bool(params.get("SAVE_MODEL")) and planned.config.method == "finetune"
    ordered = list(runs.values())
    return sorted(ordered, key=lambda r: min(seed for _, seed in r.needed_by)) if by_seed else ordered


def same_experiment(run: SweepRun) -> bool:
    """A complete run of the same experiment is in the run's folder (with or without its model)."""
    if not is_complete(run.folder):
        return False
    try:
        return same_config(json.loads((run.folder / "config.json").read_text()), run.config.validate())
    except (OSError, ValueError):
        return False


def finished(run: SweepRun) -> bool:
    """What the notebook would reuse: the same experiment, with its model/ where it must keep one."""
    return same_experiment(run) and not (run.save_model and not has_saved_model(run.folder))


def changed_fields(cfg: ExperimentConfig) -> dict:
    """The configuration as the fields that differ from the defaults (how a failed run is reported)."""
    default = ExperimentConfig()
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}


# ---- what runs on the workers (module-level functions: Ray imports them from lib on each node) ----

def _train_task(config: dict, results: str, group: str | None, force: bool, save_model: bool = False) -> dict:
    import ray

    from lib.study.experiments import run_or_load

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t = time.perf_counter()
    metrics = run_or_load(ExperimentConfig.from_dict(config), results, force=force, quiet=True, group=group,
                          save_model=save_model)
    return {"test_macro_f1": metrics.get("test_macro_f1"), "reused": metrics.get("reused"),
            "node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "seconds": time.perf_counter() - t}


def _marker_task(results: str, token: str, node_id: str) -> str | None:
    """On one node: read the driver's marker, write this node's. None when fine, else what went wrong."""
    folder = Path(results)
    try:
        seen = (folder / f"{MARKER}-{token}").read_text()
    except OSError as e:
        return f"cannot read {folder / f'{MARKER}-{token}'} ({e.strerror or e})"
    if seen != token:
        return f"{folder} holds another marker than the one written by the driver: it is another folder there"
    try:
        (folder / f"{MARKER}-{token}-{node_id}").write_text(token)
    except OSError as e:
        return f"cannot write in {folder} ({e.strerror or e})"
    return None


# ---- the driver ----

def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _error(message: str) -> Sweep:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return Sweep(exit_code=2)


def worker_env() -> dict:
    """Environment of the Ray workers: the project importable, the driver's data and offline settings."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    path = [str(PROJECT_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(path)), TOKENIZERS_PARALLELISM="false")
    return env


def check_shared_folder(ray, results: Path, timeout: float = 120.0) -> str | None:
    """A task on every alive node reads the driver's marker in ``results`` and writes one back.

    Returns None when every node sees the folder, else one message naming the node(s).
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(8)
    mine = results / f"{MARKER}-{token}"
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    written = [mine] + [results / f"{MARKER}-{token}-{n['NodeID']}" for n in nodes]  # removed in any case
    try:
        mine.write_text(token)
        probe = ray.remote(_marker_task)
        refs = {probe.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(str(results), token, n["NodeID"]): n for n in nodes}
        problems = []
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in ready:
            node = refs[ref]
            try:
                problem = ray.get(ref)
            except Exception as e:  # e.g. the project itself cannot be imported there
                problem = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}"
            back = results / f"{MARKER}-{token}-{node['NodeID']}"
            if problem is None and not (back.is_file() and back.read_text() == token):
                problem = f"the marker it wrote in {results} does not appear here"
            if problem:
                problems.append(f"node {node['NodeManagerAddress']} ({node['NodeID'][:8]}): {problem}")
        for ref in pending:
            ray.cancel(ref, force=True)
            node = refs[ref]
            problems.append(f"node {node['NodeManagerAddress']} ({node['NodeID'][:8]}): no answer in {timeout:.0f} s")
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    if not problems:
        return None
    return (f"the results folder {results} must be on a filesystem every Ray node sees at the same path (NFS, "
            f"Lustre, ...), with the project at {PROJECT_ROOT} too; " + "; ".join(problems) +
            ". Pass --results a folder on the shared filesystem; nothing was trained.")


def local_shape(args) -> tuple[int, int, int]:
    """A local Ray's (runs at once, CPUs per run, GPUs): --ray-workers (default: the GPUs here, else half the
    cores) and --ray-cpus-per-run (default: the cores divided by the workers)."""
    cores, gpus = os.cpu_count() or 1, _local_gpus()
    workers = args.ray_workers or gpus or max(1, cores // 2)
    return workers, args.ray_cpus_per_run or max(1, cores // workers), min(gpus, workers)


def _connect(ray, args) -> str | None:
    """Start or join Ray; None when connected, else the error message."""
    runtime_env = {"env_vars": worker_env()}
    try:
        if args.ray == LOCAL:
            workers, per_run, gpus = local_shape(args)
            ray.init(address="local", num_cpus=workers * per_run, num_gpus=gpus, include_dashboard=False,
                     object_store_memory=200 * 1024 ** 2, runtime_env=runtime_env, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=args.ray, runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
    except Exception as e:  # ConnectionError, a bad address, a version mismatch with the cluster
        where = "start a local Ray" if args.ray == LOCAL else f"connect to the Ray cluster at {args.ray}"
        hint = " (the cluster uses token authentication: export RAY_AUTH_MODE=token, with its token in " \
               "~/.ray/auth_token or RAY_AUTH_TOKEN)" if "auth" in f"{e} {e.__cause__}".lower() else ""
        return f"cannot {where}: {type(e).__name__}: {str(e).strip()[:500]}{hint}"
    return None


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _resources(ray, args) -> tuple[dict, int, str]:
    """Per-run Ray resources, torch threads per run, and a line describing them."""
    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if total.get("GPU", 0) >= 1:
        cpus = args.ray_cpus_per_run or 1
        return {"num_gpus": 1, "num_cpus": cpus}, cpus, f"1 GPU and {cpus} CPU(s) per run, " \
                                                         f"{int(total['GPU'])} GPU(s) on {len(nodes)} node(s)"
    if args.ray == LOCAL:
        cpus = local_shape(args)[1]
    else:
        smallest = min((int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1),
                       default=1)
        cpus = args.ray_cpus_per_run or max(1, min(4, smallest))
    biggest = max((int(n["Resources"].get("CPU", 0)) for n in nodes), default=0)
    if cpus > biggest:  # Ray would wait forever for a node that large
        raise ValueError(f"--ray-cpus-per-run {cpus}: no Ray node has {cpus} CPUs (the largest has {biggest})")
    slots = int(total.get("CPU", 0)) // cpus
    return {"num_cpus": cpus}, cpus, f"{cpus} CPU(s) per run, {int(total.get('CPU', 0))} CPUs on {len(nodes)} " \
                                     f"node(s): {slots} run(s) at once"


def ray_sweep(args, profile: str, dataset: str, encoder: str, seeds: list[int], results: Path, selected: list[str],
              overrides: dict, columns: dict | None = None, frozen: bool | None = None) -> Sweep | None:
    """The runner's hook: None without --ray; else train what is missing on Ray and say what main should do.
    The runner has checked the options first (lib.study.ray_options.options_problem)."""
    if args.ray is None:
        return None
    try:
        import ray
    except ImportError:
        return _error("--ray needs the ray package: .venv/bin/pip install -r requirements.txt")
    runs = planned_runs(profile, dataset, encoder, seeds, results, selected, overrides, columns,
                        by_seed=bool(getattr(args, "by_seed", False)), frozen=frozen)
    force = bool(getattr(args, "force", False))
    todo = runs if force else [r for r in runs if not finished(r)]
    stale = [r for r in todo if not force and is_published(results) and is_complete(r.folder)]
    other = [r for r in stale if not same_experiment(r)]
    if other:  # run_or_load would refuse each one on its worker; say so before Ray starts
        return _error(f"{len(other)} published run(s) were trained with other settings than this command's, e.g. "
                      f"{other[0].folder}; they are not replaced and nothing was trained (--force replaces them)")
    if stale:  # the same experiments, without the model/ SAVE_MODEL asks for: refused there too
        return _error(f"{len(stale)} published run(s) have no saved model (model/), e.g. {stale[0].folder}; they are "
                      "not retrained and nothing was trained (train into results/local, without --publish, to keep "
                      "a model, or pass --force to replace them)")
    sweep = Sweep(reused=len(runs) - len(todo))
    print(f"ray: {len(runs)} run(s) needed by the notebooks, {sweep.reused} finished earlier, {len(todo)} to train",
          flush=True)
    if not todo:
        return sweep
    problem = _connect(ray, args)
    if problem:
        return _error(problem)
    try:
        problem = check_shared_folder(ray, results)
        if problem:
            return _error(problem)
        try:
            resources, threads, described = _resources(ray, args)
        except ValueError as e:
            return _error(str(e))
        print(f"ray: {described}", flush=True)
        _run_all(ray, todo, results, resources, threads, args.ray_retries, force, sweep)
    except KeyboardInterrupt:
        print("\nray: interrupted: the sweep was cancelled; unfinished runs stay in <run>.partial/ folders, which "
              "nothing reads as results. Run the same command again to finish what is missing.", file=sys.stderr,
              flush=True)
        sweep.exit_code = 130
    finally:
        ray.shutdown()
    return sweep


def _run_all(ray, todo: list[SweepRun], results: Path, resources: dict, threads: int, retries: int, force: bool,
             sweep: Sweep) -> None:
    from dataclasses import replace

    train = ray.remote(_train_task)
    slots = max(1, int(ray.cluster_resources().get("GPU" if "num_gpus" in resources else "CPU", 0)
                       // (resources.get("num_gpus") or resources["num_cpus"])))
    refs = {}
    for run in todo:
        cfg = replace(run.config, num_threads=threads)  # a runtime field: the same experiment
        ref = train.options(max_retries=retries, retry_exceptions=False, name=f"train {run.label}",
                            **resources).remote(cfg.to_dict(), str(results), run.group, force, run.save_model)
        refs[ref] = run
    t0 = time.perf_counter()
    pending, nodes = list(refs), {}
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            run = refs[ready[0]]
            try:
                out = ray.get(ready[0])
                sweep.done += 1
                nodes[out["node"]] = nodes.get(out["node"], 0) + 1
                status = f"done in {_fmt(out['seconds'])} on node {out['node'][:8]} ({out['host']})" + \
                         (f", test macro-F1 {out['test_macro_f1']:.4f}" if out.get("test_macro_f1") is not None else "")
            except Exception as e:  # the run raised, or its worker died more often than --ray-retries
                _record_failure(run, e, retries, results, sweep)
                status = "FAILED"
            finished_n = sweep.done + len(sweep.failed)
            elapsed = time.perf_counter() - t0
            left = len(todo) - finished_n
            estimate = elapsed / finished_n * left  # finished runs per second so far, runs in parallel included
            print(f"ray [{finished_n}/{len(todo)}] {run.label}: {status} | done {sweep.done}, running "
                  f"{min(left, slots)}, failed {len(sweep.failed)}, left {left} | elapsed {_fmt(elapsed)}, "
                  f"about {_fmt(estimate)} to go", flush=True)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    print(f"ray: {sweep.done} run(s) trained, {len(sweep.failed)} failed, in {_fmt(time.perf_counter() - t0)}; runs "
          f"per node: " + ", ".join(f"{n[:8]}: {c}" for n, c in sorted(nodes.items())), flush=True)


def _record_failure(run: SweepRun, error: Exception, retries: int, results: Path, sweep: Sweep) -> None:
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(cause, BaseException):
        cause = None
    if cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    elif type(error).__name__ in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError"):
        text = f"{type(error).__name__}: its worker died {retries + 1} time(s) (--ray-retries {retries})"
    else:
        text = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
    failed_json = run.folder.with_name(run.folder.name + PARTIAL_SUFFIX) / "FAILED.json"
    config = json.dumps(changed_fields(run.config), sort_keys=True)
    where = f"see {failed_json}" if failed_json.exists() else \
        "no FAILED.json (it failed before its run folder was made, or its worker was killed)"
    print(f"ray: FAILED {run.label}\n     config {config}\n     error {text[:500]}\n     {where}", file=sys.stderr,
          flush=True)
    for nb, seed in run.needed_by:
        sweep.blocked.add((nb, seed))
    sweep.failed.append({"notebook": f"{run.needed_by[0][0]}-seed{run.needed_by[0][1]}",
                         "cell": f"Ray run {run.folder.relative_to(results)}",
                         "error": f"{text[:300]}; config {config}"[:600],
                         "executed_copy": str(failed_json if failed_json.exists() else failed_json.parent)})
