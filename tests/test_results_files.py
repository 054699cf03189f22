"""Result files: JSON that reads back to the same object, compact enough for 32-class metrics."""
from __future__ import annotations

import json
import math

from lib.training.results import dumps_json, write_json


def test_json_round_trips_with_sorted_keys_and_one_line_lists(tmp_path):
    obj = {"b": [1, 2.5, None, True, "a,b [x]"], "a": {"m": [[1, 2], [3, 4]], "e": [], "d": {}},
           "n": float("nan"), "s": "ü"}
    write_json(tmp_path / "x.json", obj)
    text = (tmp_path / "x.json").read_text()
    back = json.loads(text)
    assert math.isnan(back.pop("n")) and back == {k: v for k, v in obj.items() if k != "n"}
    assert text.index('"a"') < text.index('"b"') < text.index('"n"')
    assert '      [1, 2],\n      [3, 4]\n' in text and '"b": [1, 2.5, null, true, "a,b [x]"]' in text
    assert not list(tmp_path.glob(".x.json.*"))  # no temp file left


def test_flat_objects_take_one_line_and_nested_ones_are_indented():
    text = dumps_json({"per_class": {"joy": {"f1": 0.5, "precision": 0.4, "recall": 0.6, "support": 10}}})
    assert '    "joy": {"f1": 0.5, "precision": 0.4, "recall": 0.6, "support": 10}\n' in text
    assert dumps_json({str(i): i for i in range(7)}).count("\n") == 8  # more than 6 keys: one per line


def test_confusion_matrix_takes_one_line_per_row():
    matrix = [[i * 32 + j for j in range(32)] for i in range(32)]
    assert dumps_json({"confusion": matrix}).count("\n") == 32 + 3
