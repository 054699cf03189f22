"""Benchmark: the smoke study sequential vs ``--ray`` on this machine, and Ray's overhead per run.

    STUDY_DATA_DIR=... .venv/bin/python benchmarks/ray_sweep.py            # smoke profile, both ways
    STUDY_DATA_DIR=... .venv/bin/python benchmarks/ray_sweep.py --quick    # notebook 02, one seed

Prints the wall time of ``python -m lib.runner --profile smoke`` without and with ``--ray`` (a
local Ray, ``--ray-workers``), their ratio, and Ray's fixed and per-run costs: starting a local
Ray, the shared-folder check, a task in a fresh worker that imports the project (what every run
pays once per worker) and a no-op task round trip (what every run pays). Results go to a
temporary folder that is removed at the end; ``--json`` writes the numbers to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sweep(args: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lib.runner", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"lib.runner {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                         f"{r.stderr[-3000:]}")
    return seconds, r.stdout


def _import_project() -> float:
    t = time.perf_counter()
    import torch  # noqa: F401

    import lib.study.experiments  # noqa: F401
    import lib.training.train  # noqa: F401
    return time.perf_counter() - t


def _noop() -> int:
    return os.getpid()


def overhead(workers: int, folder: Path) -> dict:
    """Ray's own costs: start, shared-folder check, a cold worker importing the project, a task round trip."""
    import ray

    from lib.study.fanout import check_shared_folder, worker_env

    t = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, object_store_memory=200 * 1024 ** 2,
             runtime_env={"env_vars": worker_env()}, log_to_driver=False, configure_logging=False)
    out = {"ray_start_s": time.perf_counter() - t}
    try:
        t = time.perf_counter()
        assert check_shared_folder(ray, folder) is None
        out["shared_folder_check_s"] = time.perf_counter() - t
        t = time.perf_counter()
        inside = ray.get(ray.remote(_import_project).options(num_cpus=1).remote())
        out["cold_worker_with_imports_s"] = time.perf_counter() - t
        out["of_which_imports_in_the_worker_s"] = inside
        noop = ray.remote(_noop).options(num_cpus=1)
        ray.get(noop.remote())
        t = time.perf_counter()
        n = 20
        for _ in range(n):
            ray.get(noop.remote())
        out["task_round_trip_s"] = (time.perf_counter() - t) / n
    finally:
        ray.shutdown()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="notebook 02_triplet with one seed instead of the smoke study")
    p.add_argument("--workers", type=int, default=2, help="--ray-workers of the Ray sweep (default 2)")
    p.add_argument("--json", help="also write the numbers to this file")
    args = p.parse_args(argv)
    path = [str(ROOT)] + [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join(path))
    study = ["--profile", "smoke"] + (["--seeds", "0", "--notebooks", "02_triplet"] if args.quick else [])
    with tempfile.TemporaryDirectory(prefix="ray-sweep-bench-") as tmp:
        tmp = Path(tmp)
        seq_s, _ = _sweep([*study, "--results", str(tmp / "seq")], env)
        print(f"sequential: {seq_s:.1f} s", flush=True)
        ray_s, out = _sweep([*study, "--results", str(tmp / "ray"), "--ray", "--ray-workers", str(args.workers)], env)
        m = re.search(r"ray: (\d+) run\(s\) trained, (\d+) failed, in (\d+)m(\d+)s", out)
        runs, train_s = (int(m.group(1)), int(m.group(3)) * 60 + int(m.group(4))) if m else (None, None)
        print(f"--ray --ray-workers {args.workers}: {ray_s:.1f} s ({runs} runs trained on Ray in {train_s} s, "
              f"then the notebooks)", flush=True)
        result = {"study": " ".join(study), "workers": args.workers, "cores": os.cpu_count(),
                  "sequential_s": round(seq_s, 1), "ray_s": round(ray_s, 1), "ray_sweep_s": train_s,
                  "runs": runs, "speedup_ray_over_sequential": round(seq_s / ray_s, 3)}
        (tmp / "probe").mkdir()
        result.update({k: round(v, 3) for k, v in overhead(args.workers, tmp / "probe").items()})
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
