"""Notebooks are committed clean and thin. (That every one runs under nbval is in test_run_all.py, on
the smoke study that file trains.)"""
from __future__ import annotations

import ast
import json

import pytest

from lib.paths import PROJECT_ROOT
from lib.study.profiles import NOTEBOOKS as STUDY_NOTEBOOKS, TUNING_NOTEBOOK

NOTEBOOKS = STUDY_NOTEBOOKS + (TUNING_NOTEBOOK,)  # 00-06 run by every profile, 07 by --profile tune

pytestmark = pytest.mark.slow  # kernels, browsers or whole studies: minutes (docs/tests.md)

NB_DIR = PROJECT_ROOT / "notebooks"


def _cells(name):
    return json.loads((NB_DIR / f"{name}.ipynb").read_text())["cells"]


def test_every_prescribed_notebook_exists():
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    for cell in _cells(name):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name} has stored outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_template_carries_what_jupyterlab_adds_and_writes_to_an_ignored_folder(name):
    """Opening a template in JupyterLab must not mark it modified (tests/test_jupyterlab_browser.py
    checks it in a browser): the kernel's language_info is already there. Run by hand, a template
    writes under results/local/, which git ignores, never into the published results."""
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    info = nb["metadata"]["language_info"]
    assert nb["metadata"]["kernelspec"]["name"] == "emotion-study"
    assert {"codemirror_mode", "file_extension", "mimetype", "name", "nbconvert_exporter", "pygments_lexer",
            "version"} <= set(info) and info["version"].startswith("3.11.")
    assert nb["metadata"] == json.loads((NB_DIR / "00_data_exploration.ipynb").read_text())["metadata"]
    params = "".join(next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))["source"])
    assert 'RESULTS_DIR = "results/local/' in params


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_reads_every_parameter_the_runner_knows(name):
    """papermill parses the parameters cell line by line (name = value  # help); a line it cannot parse
    (an '=' inside the help text) it skips with a warning, and then calls a value run_all.sh injects
    an unknown parameter. Both must list the same names."""
    from papermill.translators import PythonTranslator

    from lib.study.parameters_cell import declared_parameters

    params = next(c for c in _cells(name) if "parameters" in c["metadata"].get("tags", []))
    inferred = {p.name for p in PythonTranslator.inspect({"source": "".join(params["source"])})}
    assert inferred == declared_parameters(name)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_thin(name):
    code = [c for c in _cells(name) if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and code[0] is params[0], "the first code cell must be the one tagged 'parameters'"
    for node in ast.parse("".join(params[0]["source"])).body:
        assert isinstance(node, ast.Assign) and all(t.id.isupper() for t in node.targets), \
            "the parameters cell holds flat UPPERCASE assignments only"
        ast.literal_eval(node.value)  # plain values papermill can override
    for c in code:
        tree = ast.parse("".join(c["source"]))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"{name}: define functions in lib, not in notebooks"
        assert "sys.path" not in "".join(c["source"])
