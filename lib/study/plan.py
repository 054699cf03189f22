"""What each training notebook trains: the one list the notebook runs and ``run_all.sh --ray`` fans out.

A training notebook (01-04) calls ``notebook_configs(<its name>, globals())``: the configurations
come from its UPPERCASE parameters. ``run_all.sh --ray`` calls ``notebook_runs`` with the same
parameters (the parameters cell's values with the runner's injected ones on top), trains them
on Ray, and the notebook then finds every run finished. There is no second list to keep in sync.

A loss's parameters come from the notebook parameter named like the registered parameter, upper-cased
(TRIPLET_MARGIN for triplet_margin; lib/model/losses/), and reach the runs whose loss uses them.

With TUNED_RECIPES (a published tuning study), each run with a loss is trained at its method's tuned
recipe instead (lib.study.tuned_recipes); the loss-free baselines and notebook 04's weight grid keep the
notebook's settings (the grid explores weights at the Study 1 recipe; the searches tuned each sum's
weights already).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from lib.model.losses import loss_parameters, parse_loss_spec
from lib.training.config import ExperimentConfig, is_config_field

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
                            text_column=p["TEXT_COLUMN"], label_column=p["LABEL_COLUMN"],
                            resplit=p.get("RESPLIT", False), ood=p.get("OUT_OF_DOMAIN"))


def _with_loss(base: ExperimentConfig, loss: str, p: Mapping, **changes) -> ExperimentConfig:
    """``base`` training ``loss``, with each parameter of the losses it uses that the notebook sets (the
    parameter's name upper-cased): a built-in's into its config field, any other's into ``loss_options``.
    Only runs that use a loss get its parameters, so a run (``ce`` in 01 and 02) is one configuration
    wherever it is planned."""
    try:
        used = loss_parameters(parse_loss_spec(loss))
    except ValueError:  # a bad spec: validate() names it as the loss parameter
        return replace(base, loss=loss, **changes)
    settings = {name: p[name.upper()] for name in used if is_config_field(name) and name.upper() in p}
    options = {name: p[name.upper()] for name in used if not is_config_field(name) and name.upper() in p}
    return replace(base, loss=loss, loss_options=options or None, **settings, **changes)


def _upper(params: Mapping) -> dict:
    """The notebook's parameters: UPPERCASE names (a notebook's ``globals()`` holds other names too)."""
    return {k: v for k, v in params.items() if isinstance(k, str) and k.isupper()}


def notebook_runs(notebook: str, params: Mapping) -> list[PlannedRun]:
    """Every run one execution of ``notebook`` trains, in the order it trains them.

    ``params``: the notebook's parameters by name (other names, e.g. a notebook's ``globals()``,
    are ignored). With TUNED_RECIPES, the runs with a loss at their tuned recipes (TunedRecipeError,
    exit status 2, where one has none).
    """
    p = _upper(params)
    runs = _recipe_runs(notebook, p)
    study = p.get("TUNED_RECIPES")
    if study is None:
        return runs
    from lib.study.tuned_recipes import load, tuned_config

    recipes = load(study)
    return [replace(r, config=tuned_config(r.config, recipes, study, notebook)) if _is_tuned(r) else r for r in runs]


def _is_tuned(run: PlannedRun) -> bool:
    return run.config.method == "finetune" and run.group != GRID


def _recipe_runs(notebook: str, p: dict) -> list[PlannedRun]:
    """The runs at the notebook's own settings (the Study 1 recipe with the default parameters)."""
    base = _base(p)
    if notebook == "01_baseline_ce":
        configs = [_with_loss(base, "ce", p)]
        # The baselines have no random parts: run once (as seed 0) and reused by the other seeds; with a
        # split of each seed's own (RESPLIT) once per seed, since the seed chooses their data.
        configs += [replace(base, method=m, seed=base.seed if base.resplit else 0) for m in p["BASELINES"]]
        return [PlannedRun(notebook, c) for c in configs]
    if notebook == "02_triplet":
        return [PlannedRun(notebook, _with_loss(base, loss, p, sampler=p["SAMPLER"])) for loss in p["LOSSES"]]
    if notebook == "03_arcface":
        return [PlannedRun(notebook, _with_loss(base, loss, p)) for loss in p["LOSSES"]]
    if notebook == "04_combined":
        runs = [PlannedRun(notebook, _with_loss(base, loss, p)) for loss in p["LOSSES"]]
        frozen = p["GRID_FREEZE_ENCODER"]
        runs += [PlannedRun(notebook, _with_loss(base, f"ce={w_ce}+triplet={w_triplet}+arcface={w_arcface}", p,
                                                 freeze_encoder=frozen,
                                                 epochs=p["GRID_EPOCHS"] if frozen else p["EPOCHS"]), GRID)
                 for w_ce, w_triplet, w_arcface in p["GRID"]]
        return runs
    raise ValueError(f"{notebook!r} trains no runs; training notebooks are 01_baseline_ce, 02_triplet, 03_arcface, "
                     "04_combined")


def notebook_configs(notebook: str, params: Mapping, group: str | None = None) -> list[ExperimentConfig]:
    """The configurations of one group (default: the runs the summary reads) that ``notebook`` trains.

    With TUNED_RECIPES it prints, per tuned method, the best.json that gave the recipe and its sha256: the
    executed notebook keeps the line (provenance of the run folders)."""
    runs = [r for r in notebook_runs(notebook, params) if r.group == group]
    study = _upper(params).get("TUNED_RECIPES")
    if "RESULTS_DIR" in _upper(params):  # one recipe source and one design per folder, also run by hand
        from lib.study.experiments import check_design_folder, resolve_results_dir
        from lib.study.tuned_recipes import check_results_folder

        folder = resolve_results_dir(_upper(params)["RESULTS_DIR"])
        check_results_folder(folder, study)
        check_design_folder(folder, bool(_upper(params).get("RESPLIT")))
    if study is not None and any(_is_tuned(r) for r in runs):
        from lib.study.tuned_recipes import describe

        print(describe([r.config for r in runs if _is_tuned(r)], study))
    return [r.config for r in runs]
