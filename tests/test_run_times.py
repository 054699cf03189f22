"""run_times.csv: each finished run's metrics.json time, recorded once, never rewritten."""
from __future__ import annotations

import json
import os

import pandas as pd

from lib.study.run_times import main, run_times


def _run(folder, mtime, written=None, **machine):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    (folder / "environment.json").write_text(json.dumps({**({"written_utc": written} if written else {}), **machine}))
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


def test_records_the_machine_that_trained_each_run(tmp_path):
    _run(tmp_path / "runs" / "ce1.0" / "seed0", 1_764_480_000, cpu={"model": "AMD EPYC", "cores": 2},
         device={"type": "cpu"})
    _run(tmp_path / "runs" / "ce1.0" / "seed1", 1_764_480_000, cpu={"model": "AMD EPYC"},
         device={"type": "cuda", "name": "NVIDIA H200"})
    _run(tmp_path / "runs" / "ce1.0" / "seed2", 1_764_480_000)  # older runs recorded no machine
    (tmp_path / "runs" / "ce1.0" / "seed3").mkdir()
    (tmp_path / "runs" / "ce1.0" / "seed3" / "metrics.json").write_text("{}")  # and one has no environment.json
    assert main([str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "run_times.csv")
    assert list(table.columns) == ["run", "metrics_json_mtime_utc", "written_utc", "hardware"]
    assert table["hardware"].tolist()[:2] == ["CPU AMD EPYC", "GPU NVIDIA H200"]
    assert table["hardware"].iloc[2:].isna().all()


def test_a_run_resumed_on_another_machine_names_both(tmp_path):
    run = tmp_path / "runs" / "ce1.0" / "seed0"
    _run(run, 1_764_480_000, cpu={"model": "Intel Xeon"}, device={"type": "cpu"})
    parts = [{"hardware": "CPU AMD EPYC", "through_epoch": 2}, {"hardware": "CPU AMD EPYC", "through_epoch": 4},
             {"hardware": "CPU Intel Xeon", "through_epoch": 7}]
    (run / "metrics.json").write_text(json.dumps({"trained_in_parts": parts}))
    assert run_times(tmp_path)["hardware"].tolist() == ["CPU AMD EPYC then CPU Intel Xeon"]
    parts[0]["hardware"] = "CPU Intel Xeon"  # resumed on the machine it began on: one machine
    parts[1]["hardware"] = "CPU Intel Xeon"
    (run / "metrics.json").write_text(json.dumps({"trained_in_parts": parts}))
    assert run_times(tmp_path)["hardware"].tolist() == ["CPU Intel Xeon"]
