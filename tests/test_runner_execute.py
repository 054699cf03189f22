"""run_all.sh's sequential path (lib.study.runner.execute), with papermill stood in for: a failed notebook
is reported with its cell and kept as <name>.failed.ipynb, the others go on; a finished notebook is skipped
only when it ran with the same parameters; an interrupt leaves nothing that looks finished."""
from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest
from papermill.exceptions import PapermillExecutionError

from lib.study import runner


@pytest.fixture
def papermill_calls(monkeypatch):
    """papermill.execute_notebook replaced: writes an executed copy (its parameters in the metadata), or
    does what the next entry of ``behaviour`` says."""
    calls, behaviour = [], []

    def execute_notebook(source, output, parameters=None, **kwargs):
        calls.append((Path(source).stem, dict(parameters)))
        what = behaviour.pop(0) if behaviour else None
        if what == "fail":
            Path(output).write_text(json.dumps({"cells": [], "metadata": {}}))  # papermill writes it as it goes
            raise PapermillExecutionError(cell_index=4, exec_count=3, source="1/0", ename="ZeroDivisionError",
                                          evalue="division by zero", traceback=[])
        if what == "interrupt":
            Path(output).write_text("{}")
            raise KeyboardInterrupt
        Path(output).write_text(json.dumps({"cells": [], "metadata": {"papermill": {"parameters": parameters}},
                                            "nbformat": 4, "nbformat_minor": 5}))

    monkeypatch.setattr(pm, "execute_notebook", execute_notebook)
    return calls, behaviour


def test_a_failed_notebook_is_reported_with_its_cell_and_kept(papermill_calls, tmp_path):
    calls, behaviour = papermill_calls
    report = runner.Report()
    behaviour.append("fail")
    status = runner.execute("02_triplet", 0, {"SEED": 0}, tmp_path, False, report)
    assert status == "FAILED at cell 3: ZeroDivisionError: division by zero"
    assert report.failed == [{"notebook": "02_triplet-seed0", "cell": "cell 3", "error": "ZeroDivisionError: "
                              "division by zero", "executed_copy": str(tmp_path / "02_triplet-seed0.failed.ipynb")}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["02_triplet-seed0.failed.ipynb"]
    # the next notebook still runs, and a later success of the failed one replaces its failed copy
    assert runner.execute("03_arcface", 0, {"SEED": 0}, tmp_path, False, report) == "done"
    assert runner.execute("02_triplet", 0, {"SEED": 0}, tmp_path, False, report) == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["02_triplet-seed0.ipynb", "03_arcface-seed0.ipynb"]
    assert report.done == ["03_arcface-seed0", "02_triplet-seed0"] and len(calls) == 3


def test_a_finished_notebook_runs_again_only_with_other_parameters(papermill_calls, tmp_path, capsys):
    calls, _ = papermill_calls
    report = runner.Report()
    assert runner.execute("01_baseline_ce", 1, {"SEED": 1, "EPOCHS": 3}, tmp_path, False, report) == "done"
    assert runner.execute("01_baseline_ce", 1, {"SEED": 1, "EPOCHS": 3, "FORCE": True}, tmp_path, False, report) \
        == "skipped (finished earlier)"  # FORCE is how, not what
    assert runner.execute("01_baseline_ce", 1, {"SEED": 1, "EPOCHS": 2}, tmp_path, False, report) == "done"
    assert "01_baseline_ce-seed1 ran earlier with other parameters: running it again" in capsys.readouterr().out
    assert [params["EPOCHS"] for _, params in calls] == [3, 2] and report.skipped == ["01_baseline_ce-seed1"]
    executed = json.loads((tmp_path / "01_baseline_ce-seed1.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["EPOCHS"] == 2
    from lib.training.results import git_state

    assert executed["metadata"]["emotion_study"] == {"rendered_with": git_state()}  # the code that rendered it


def test_an_interrupted_notebook_leaves_nothing_that_looks_finished(papermill_calls, tmp_path):
    _, behaviour = papermill_calls
    behaviour.append("interrupt")
    with pytest.raises(KeyboardInterrupt):
        runner.execute("04_combined", 2, {"SEED": 2}, tmp_path, False, runner.Report())
    assert list(tmp_path.iterdir()) == []
