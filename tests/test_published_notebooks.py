"""The committed executed notebooks read cleanly: paths relative to the project root, no warning
boxes, and the frozen studies' summaries show their learning curves."""
from __future__ import annotations

import json
import re

import pytest

from lib.paths import PROJECT_ROOT

EXECUTED = sorted((PROJECT_ROOT / "results").glob("*/notebooks/*.ipynb"))
# A folder of some machine: /home/..., /work/..., /tmp/..., /Users/..., C:\...
MACHINE_PATH = re.compile(r"(?<![\w.])(/(home|work|tmp|root|Users|mnt|opt|srv|var|private)/|[A-Z]:\\\\)")


def _texts(nb):
    yield json.dumps(nb["metadata"])
    for cell in nb["cells"]:
        yield "".join(cell["source"])
        for out in cell.get("outputs", []):
            yield json.dumps({k: v for k, v in out.items() if k != "data"})
            yield json.dumps({k: v for k, v in out.get("data", {}).items() if not k.startswith("image/")})


def test_there_are_executed_notebooks():
    assert len(EXECUTED) >= 20


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_executed_notebook_names_no_machine_folder_and_has_no_warning(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for text in _texts(nb):
        assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text).string[:300]
        assert "TqdmWarning" not in text and "IProgress" not in text
    stderr = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, "".join(stderr[0]["text"])[:300]
    pm = nb["metadata"]["papermill"]
    assert pm["input_path"].startswith("notebooks/") and not pm["output_path"].startswith("/")
    assert not str(pm["parameters"].get("RESULTS_DIR", "")).startswith("/")


@pytest.mark.parametrize("study", ["ko6-me5-small-frozen", "ed32-minilm-frozen"])
def test_frozen_summary_shows_every_methods_learning_curve(study):
    """The figure used to drop every '|frozen' method, which in a frozen study is all of them."""
    nb = json.loads((PROJECT_ROOT / "results" / study / "notebooks" / "06_summary.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "learning_curves" in "".join(c["source"]))
    assert [o["output_type"] for o in cell["outputs"]] == ["display_data"]  # the figure, no legend warning
    assert "learning_curve_runs(seed_runs)" in "".join(cell["source"])
