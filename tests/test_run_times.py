"""run_times.csv: each finished run's metrics.json time, recorded once, never rewritten."""
from __future__ import annotations

import json
import os

import pandas as pd

from lib.study.run_times import main


def _run(folder, mtime, written=None):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / "environment.json").write_text(json.dumps({"written_utc": written} if written else {}))
    os.utime(folder / "metrics.json", (mtime, mtime))


def test_records_each_finished_run_once(tmp_path, capsys):
    _run(tmp_path / "runs" / "ce1.0" / "seed0", 1_764_480_000)  # 2025-11-30T05:20:00Z
    _run(tmp_path / "runs" / "ce1.0" / "seed1", 1_764_483_600, written="2025-11-30T06:20:01+00:00")
    _run(tmp_path / "runs" / "ce1.0" / "seed2.partial", 1_764_490_000)
    assert main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "run_times.csv")
    assert list(table["run"]) == ["runs/ce1.0/seed0", "runs/ce1.0/seed1"]  # the unfinished run left out
    assert list(table["metrics_json_mtime_utc"]) == ["2025-11-30T05:20:00+00:00", "2025-11-30T06:20:00+00:00"]
    assert pd.isna(table.loc[0, "written_utc"]) and table.loc[1, "written_utc"] == "2025-11-30T06:20:01+00:00"
    before = (tmp_path / "run_times.csv").read_text()
    os.utime(tmp_path / "runs" / "ce1.0" / "seed0" / "metrics.json", None)  # e.g. a fresh checkout
    assert main([str(tmp_path)]) == 2 and "not rewritten" in capsys.readouterr().err
    assert (tmp_path / "run_times.csv").read_text() == before


def test_refuses_a_folder_without_runs(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2 and "no runs/" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    assert main([str(tmp_path)]) == 2 and "no finished runs" in capsys.readouterr().err
    assert not (tmp_path / "run_times.csv").exists()
