"""Executed notebooks name no folder of the machine that made them, and carry no tqdm warning box."""
from __future__ import annotations

import json

from lib.study.executed import absolute_paths, relativise, strip_root


def test_strip_root_leaves_sibling_folders_alone(tmp_path):
    root = tmp_path / "proj"
    text = f"{root}/results/x, {root}-old/y, {root}"
    assert strip_root(text, root) == f"results/x, {root}-old/y, ."


def test_relativise_rewrites_metadata_sources_and_text_outputs_only(tmp_path):
    root = tmp_path / "proj"
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "a", "metadata": {},
                     "source": [f'RESULTS_DIR = "{root}/results/s"\n'],
                     "outputs": [{"name": "stderr", "output_type": "stream",
                                  "text": [f"{root}/.venv/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"]},
                                 {"name": "stdout", "output_type": "stream", "text": [f"written {root}/results/s/a.csv\n"]},
                                 {"output_type": "display_data", "metadata": {},
                                  "data": {"image/png": "iVBOR", "text/plain": [f"<Figure {root}>"]}}]}],
          "metadata": {"papermill": {"input_path": f"{root}/notebooks/n.ipynb",
                                     "output_path": f"{root}/results/s/notebooks/.n.running.ipynb",
                                     "parameters": {"RESULTS_DIR": f"{root}/results/s"}}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    assert absolute_paths(path, root)
    assert relativise(path, final_name="n.ipynb", root=root) is True
    out = json.loads(path.read_text())
    assert absolute_paths(path, root) == []
    assert out["metadata"]["papermill"]["output_path"] == "results/s/notebooks/n.ipynb"
    assert out["metadata"]["papermill"]["parameters"]["RESULTS_DIR"] == "results/s"
    outputs = out["cells"][0]["outputs"]
    assert [o.get("name") for o in outputs] == ["stdout", None]  # the warning box is gone
    assert outputs[0]["text"] == ["written results/s/a.csv\n"] and outputs[1]["data"]["image/png"] == "iVBOR"
    assert relativise(path, final_name="n.ipynb", root=root) is False  # nothing left to do: file untouched
