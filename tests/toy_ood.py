"""The toy out-of-domain pair of tests/test_out_of_domain.py and tests/test_summary_ood.py: a 4-class data
set whose classes are told apart by their words, a tiny encoder knowing its characters, and an
out-of-domain CSV with a mapping onto three of those classes (shame has no counterpart; bored is left out)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

WORDS = {"joy": "sunny glad smile", "anger": "furious rage shout", "fear": "dark afraid tremble",
         "shame": "blush sorry hide"}
OOD_WORDS = {"happy": "glad smile", "mad": "rage shout", "scared": "afraid dark", "bored": "dull grey"}
MAPPING = {"happy": "joy", "mad": "anger", "scared": "fear"}
CLASSES = ("anger", "fear", "joy", "shame")  # the toy run's classes, sorted as load_csv sorts them
ROWS_PER_CLASS = 12


def write_toy(folder: Path, ood_rows_per_label: int, extra_texts=()) -> Path:
    """toy.csv, reviews.csv (``ood_rows_per_label`` rows of each OOD label) and map.json in ``folder``, and a
    tiny encoder in folder/encoder whose vocabulary covers them and ``extra_texts``; returns the encoder."""
    from tests.tiny_encoder import make_tiny_bert

    rows = [(f"{w.split()[i % 3]} day number {i} {w.split()[(i + 1) % 3]}", label)
            for label, w in WORDS.items() for i in range(ROWS_PER_CLASS)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / "toy.csv", index=False)
    ood_rows = [(f"{w} again {i}", label) for label, w in OOD_WORDS.items() for i in range(ood_rows_per_label)]
    pd.DataFrame(ood_rows, columns=["text", "label"]).to_csv(folder / "reviews.csv", index=False)
    (folder / "map.json").write_text(json.dumps(MAPPING))
    return make_tiny_bert(folder / "encoder", [r[0] for r in rows + ood_rows] + list(extra_texts))
