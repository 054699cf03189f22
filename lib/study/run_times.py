"""When each run of a study was written, from the file system, recorded when the study is published.

Runs made before ``environment.json`` gained ``written_utc`` (the confirmatory runs of commit
1e99608) carry no time of their own, and git keeps no file times. So that a reader can set a
protocol amendment's commit against the runs it governs, ``python -m lib.study.run_times
results/<study>`` writes ``run_times.csv`` there *before the runs are committed*: one row per run,
its ``metrics.json`` modification time (UTC) and, where the run records it, ``written_utc`` and the
machine that trained it (``hardware``: "CPU <model>" or "GPU <name>", ``hardware_of``; a study's
sessions may land on different machines, whose float kernels round differently; a run resumed on
another machine after a kill names each, "A then B", from its ``trained_in_parts``). A fresh clone's
file times are checkout times, so the file is never rewritten once it exists: the files of the
studies published before the ``hardware`` column keep their three columns (their summary.md says
which machines trained how many runs).
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lib.training.results import hardware_of, run_hardware, write_csv

COLUMNS = ["run", "metrics_json_mtime_utc", "written_utc", "hardware"]


def run_times(study: Path) -> pd.DataFrame:
    """One row per finished run folder under ``study/runs`` (partial folders skipped), sorted by run."""
    rows = []
    for metrics in sorted((study / "runs").rglob("metrics.json")):
        run = metrics.parent
        if run.name.endswith(".partial"):
            continue
        mtime = datetime.fromtimestamp(metrics.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        env = _environment(run)
        rows.append({"run": run.relative_to(study).as_posix(), "metrics_json_mtime_utc": mtime,
                     "written_utc": env.get("written_utc"), "hardware": _machines(metrics, env)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _machines(metrics: Path, env: dict) -> str | None:
    try:
        return run_hardware(json.loads(metrics.read_text(encoding="utf-8")), env)
    except (OSError, ValueError):
        return hardware_of(env)


def _environment(run: Path) -> dict:
    """The run's environment.json; {} where it is missing or not a JSON object (older runs)."""
    try:
        env = json.loads((run / "environment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return env if isinstance(env, dict) else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.study.run_times", description=__doc__.splitlines()[0])
    ap.add_argument("study", help="a study folder holding runs/ (before its runs are committed)")
    args = ap.parse_args(argv)
    study = Path(args.study)
    out = study / "run_times.csv"
    if not (study / "runs").is_dir():
        print(f"error: {study}: no runs/ folder", file=sys.stderr)
        return 2
    if out.exists() or out.is_symlink():
        print(f"error: {out} exists; run times are recorded once, before the runs are committed (a clone's "
              "file times are checkout times), so it is not rewritten", file=sys.stderr)
        return 2
    table = run_times(study)
    if table.empty:
        print(f"error: {study}: no finished runs under runs/", file=sys.stderr)
        return 2
    write_csv(out, table)
    print(f"{len(table)} runs, written {table['metrics_json_mtime_utc'].min()} to "
          f"{table['metrics_json_mtime_utc'].max()} (UTC) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
