"""What each training notebook trains: the one list the notebook runs and ``run_all.sh --ray`` fans out.

A training notebook (01-04) calls ``notebook_configs(<its name>, globals())``: the configurations
come from its UPPERCASE parameters. ``run_all.sh --ray`` calls ``notebook_runs`` with the same
parameters (the parameters cell's values with the runner's injected ones on top), trains them
on Ray, and the notebook then finds every run finished. There is no second list to keep in sync.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, replace
from typing import Mapping

from lib.paths import PROJECT_ROOT
from lib.training.config import ExperimentConfig

GRID = "grid"  # notebook 04's weight grid: run folders under runs/grid/, kept out of the summary


@dataclass(frozen=True)
class PlannedRun:
    """One run a notebook trains: its configuration and its group (None: the summary's runs)."""
    notebook: str
    config: ExperimentConfig
    group: str | None = None


def _base(p: Mapping) -> ExperimentConfig:
    return ExperimentConfig(dataset=p["DATASET"], encoder=p["ENCODER"], seed=p["SEED"], epochs=p["EPOCHS"],
                            batch_size=p["BATCH_SIZE"], max_length=p["MAX_LENGTH"], encoder_lr=p["ENCODER_LR"],
                            head_lr=p["HEAD_LR"], freeze_encoder=p["FREEZE_ENCODER"], bf16=p["BF16"], patience=p["PATIENCE"],
                            max_train_samples=p["MAX_TRAIN_SAMPLES"], max_eval_samples=p["MAX_EVAL_SAMPLES"],
                            text_column=p["TEXT_COLUMN"], label_column=p["LABEL_COLUMN"])


def notebook_runs(notebook: str, params: Mapping) -> list[PlannedRun]:
    """Every run one execution of ``notebook`` trains, in the order it trains them.

    ``params``: the notebook's parameters by name (other names, e.g. a notebook's ``globals()``,
    are ignored).
    """
    p = {k: v for k, v in params.items() if isinstance(k, str) and k.isupper()}
    base = _base(p)
    if notebook == "01_baseline_ce":
        configs = [replace(base, loss="ce")]
        # The baselines have no random parts: run once (as seed 0) and reused by the other seeds.
        configs += [replace(base, method=m, seed=0) for m in p["BASELINES"]]
        return [PlannedRun(notebook, c) for c in configs]
    if notebook == "02_triplet":
        return [PlannedRun(notebook, replace(base, loss=loss, triplet_margin=p["TRIPLET_MARGIN"],
                                             triplet_mining=p["TRIPLET_MINING"],
                                             triplet_distance=p["TRIPLET_DISTANCE"], sampler=p["SAMPLER"]))
                for loss in p["LOSSES"]]
    if notebook == "03_arcface":
        return [PlannedRun(notebook, replace(base, loss=loss, arcface_margin=p["ARCFACE_MARGIN"],
                                             arcface_scale=p["ARCFACE_SCALE"]))
                for loss in p["LOSSES"]]
    if notebook == "04_combined":
        options = dict(triplet_margin=p["TRIPLET_MARGIN"], arcface_margin=p["ARCFACE_MARGIN"],
                       arcface_scale=p["ARCFACE_SCALE"], supcon_temperature=p["SUPCON_TEMPERATURE"])
        runs = [PlannedRun(notebook, replace(base, loss=loss, **options)) for loss in p["LOSSES"]]
        frozen = p["GRID_FREEZE_ENCODER"]
        runs += [PlannedRun(notebook, replace(base, loss=f"ce={w_ce}+triplet={w_triplet}+arcface={w_arcface}",
                                              freeze_encoder=frozen, epochs=p["GRID_EPOCHS"] if frozen else p["EPOCHS"],
                                              **options), GRID)
                 for w_ce, w_triplet, w_arcface in p["GRID"]]
        return runs
    raise ValueError(f"{notebook!r} trains no runs; training notebooks are 01_baseline_ce, 02_triplet, 03_arcface, "
                     "04_combined")


def notebook_configs(notebook: str, params: Mapping, group: str | None = None) -> list[ExperimentConfig]:
    """The configurations of one group (default: the runs the summary reads) that ``notebook`` trains."""
    return [r.config for r in notebook_runs(notebook, params) if r.group == group]


def notebook_defaults(notebook: str) -> dict:
    """The values of a notebook's cell tagged 'parameters' (flat literal assignments)."""
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            out[target.id] = ast.literal_eval(node.value)
            return out
    return {}
