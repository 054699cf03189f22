"""A notebook's cell tagged 'parameters': the one reader of it (flat literal assignments).

papermill injects values after this cell; the runner checks ``--set`` names against it, the plan
and the Ray fan-out start from its values.
"""
from __future__ import annotations

import ast
import json

from lib.paths import PROJECT_ROOT


def notebook_defaults(notebook: str) -> dict:
    """{NAME: value} of ``notebooks/<notebook>.ipynb``'s parameters cell ({} if it has none)."""
    path = PROJECT_ROOT / "notebooks" / f"{notebook}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse("".join(cell["source"])).body:
                if not isinstance(node, ast.Assign):
                    continue
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        try:
                            out[target.id] = ast.literal_eval(node.value)
                        except ValueError:  # the design asks for literals: say which one is not
                            raise ValueError(f"{path}: parameter {target.id} is not a literal value") from None
            return out
    return {}


def declared_parameters(notebook: str) -> set[str]:
    """The names a notebook's parameters cell assigns."""
    return set(notebook_defaults(notebook))


def loss_option_parameters() -> set[str]:
    """The notebook spelling (upper-cased) of every parameter of a loss registered without a config field
    (a loss of one's own: its values go to ``loss_options``). No parameters cell declares them; a notebook
    that trains a list of losses (``LOSSES``) passes them from its globals to the runs that use the loss
    (lib.study.plan). Imports the loss registry (torch): called only for a name no cell declares."""
    from lib.training.config import loss_option_names

    return {name.upper() for name in loss_option_names()}


def accepts(notebook: str, name: str, loss_options: set[str]) -> bool:
    """Whether ``--set NAME=...`` reaches ``notebook``: a name its parameters cell assigns, or one of
    ``loss_options`` (``loss_option_parameters()``) in a notebook that declares ``LOSSES``."""
    declared = declared_parameters(notebook)
    return name in declared or (name in loss_options and "LOSSES" in declared)
