"""Study 2: every method trained at its tuned recipe, the winner of its equal-budget search.

A training notebook's ``TUNED_RECIPES`` names a published tuning study (lib.study.tuning; e.g.
``"results/tuning/ko6-me5-small-frozen"``). Each run the notebook plans with a loss is matched to the
method tuned there with the same loss parts, weights aside ("combined", "ce=0.15+triplet=0.4+arcface=0.45"
and a tuned "ce=0.2+triplet=0.1+arcface=0.7" are one method). The run takes from the winner's best.json
every field its search varied (search.json's space: learning rates, warm-up, epochs, weight decay,
dropout, the loss's own parameters) and its loss spec (a sum's tuned weights); the seed and the runtime
fields (device, threads) stay the notebook's. Every other field must equal the winner's (data set,
encoder, frozen or not, batch size, max length, patience, bf16, sampler, ...): a recipe tuned under other
settings is refused, not transplanted. Baselines and notebook 04's weight grid are not tuned runs
(lib.study.plan).

Provenance: an executed notebook keeps TUNED_RECIPES among its papermill parameters and prints, per
method, the best.json that gave the recipe and its sha256 (``describe``); each run's config.json holds
every value it trained with. One results folder holds runs of one recipe source (``check_results_folder``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lib.model.losses import format_loss_spec, parse_loss_spec
from lib.ownership import json_object
from lib.paths import PROJECT_ROOT
from lib.study.experiments import RUNTIME_FIELDS, TUNED_SUFFIX, resolve_results_dir
from lib.study.profiles import TRAINING_NOTEBOOKS
from lib.study.search_spaces import STICK, method_name
from lib.study.tuning import BEST, SEARCH, shown_path
from lib.study.tuning_report import is_published
from lib.training.config import ConfigError, ExperimentConfig, is_config_field

PARAMETER = "TUNED_RECIPES"
# the notebook's own: which seed, where it runs, and how it is evaluated (a split of each seed's own,
# out-of-domain sets), none of which a recipe is tuned for
NOTEBOOK_FIELDS = {"seed", "resplit", "ood"} | RUNTIME_FIELDS


class TunedRecipeError(ValueError):
    """TUNED_RECIPES gives no recipe for a planned run: one message, exit status 2 (lib.entrypoint)."""
    exit_status = 2


@dataclass(frozen=True)
class Recipe:
    """One tuned method: the winner of its search."""
    method: str  # its loss parts, as the search names it ("ce+triplet+arcface")
    best_json: Path
    sha256: str  # of best.json's bytes: which version of the record gave the recipe
    trial_id: str
    winner: ExperimentConfig  # the winning trial's configuration, validated (seed: a tuning seed)
    searched: tuple  # the fields its search varied, "loss" included (a sum's weights)
    trial: int | None = None  # the winner's place among the search's trials, and its score there: what
    score: float | None = None  # the published report.json must say too
    tuning_seeds: tuple = ()  # the search's seeds and its fresh-seed re-runs': never a tuned run's

    @property
    def parts(self) -> frozenset:
        return frozenset(self.method.split("+"))


def study_folder(value) -> Path:
    """The folder TUNED_RECIPES names (relative: to the project root, as RESULTS_DIR)."""
    if not isinstance(value, str) or not value.strip():
        raise TunedRecipeError(f"{PARAMETER} must be a tuning study folder such as "
                               f"\"results/tuning/ko6-me5-small-frozen\", or None; got {value!r}")
    return resolve_results_dir(value.strip())


def published_studies() -> list[str]:
    root = PROJECT_ROOT / "results" / "tuning"
    return [shown_path(p) for p in sorted(root.iterdir()) if p.is_dir() and is_published(p)] if root.is_dir() else []


def load(value) -> list[Recipe]:
    """Every tuned method of the published tuning study ``value`` names."""
    study = study_folder(value)
    if not is_published(study):
        raise TunedRecipeError(
            f"{PARAMETER} {value!r}: {shown_path(study)} is not a published tuning study (report.json with an equal "
            "budget and notebooks/07_tuning.ipynb, written by run_all.sh --profile tune ... --publish); published: "
            f"{', '.join(published_studies()) or 'none'}")
    # only the methods the published report covers: a search finished after publishing has no checked budget
    published = set((json_object(study / "report.json", "methods") or {}).get("methods") or {})
    recipes = [r for r in map(_recipe, sorted(study.glob(f"*/{BEST}"))) if r.method in published]
    if not recipes:
        raise TunedRecipeError(f"{PARAMETER} {value!r}: no method folder of {shown_path(study)} holds a {BEST}")
    methods = json_object(study / "report.json", "methods")["methods"]
    for r in recipes:  # a best.json written after the report (a search resumed) is not the published winner
        entry = methods[r.method]
        if (entry.get("best_trial"), entry.get("best_valid_macro_f1")) != (r.trial, r.score):
            raise TunedRecipeError(
                f"{PARAMETER} {value!r}: {shown_path(r.best_json)} names trial {r.trial} ({r.score}), the published "
                f"report.json trial {entry.get('best_trial')} ({entry.get('best_valid_macro_f1')}): the record "
                "changed after publication; publish the study again (scripts/tuning_runs.sh publish)")
    return recipes


def _recipe(best_path: Path) -> Recipe:
    best = json_object(best_path, "config", "params", "trial_id")
    search = json_object(best_path.parent / SEARCH, "budget")
    if best is None or search is None or not {"method", "space"} <= set(search["budget"]):
        raise TunedRecipeError(f"{PARAMETER}: {shown_path(best_path)} or the {SEARCH} beside it is not a record of "
                               "lib.study.tuning (unreadable, or a key missing)")
    try:
        winner = ExperimentConfig.from_dict(best["config"]).validate()
    except ConfigError as e:
        raise TunedRecipeError(f"{PARAMETER}: {shown_path(best_path)}: {e}") from None
    space = search["budget"]["space"]
    return Recipe(method=method_name(search["budget"]["method"]), best_json=best_path,
                  sha256=hashlib.sha256(best_path.read_bytes()).hexdigest(), trial_id=best["trial_id"],
                  winner=winner, searched=tuple(sorted(k for k in space if not k.startswith(STICK))) + ("loss",),
                  trial=best.get("trial"), score=best.get("search_valid_macro_f1"),
                  tuning_seeds=tuple(best.get("search_seeds") or ()) + tuple(best.get("confirm_seeds") or ()))


def recipe_for(loss: str, recipes: list[Recipe], value) -> Recipe:
    """The tuned method with ``loss``'s parts (weights aside); refused when none or several have them."""
    parts = frozenset(parse_loss_spec(loss))
    found = [r for r in recipes if r.parts == parts]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TunedRecipeError(
            f"{PARAMETER} {value!r}: loss {loss!r} has no tuned method there (tuned: "
            f"{', '.join(sorted(r.method for r in recipes))}); plan only tuned losses (--notebooks, --set "
            "'LOSSES=[...]'), or train it at the Study 1 recipe (TUNED_RECIPES None)")
    raise TunedRecipeError(f"{PARAMETER} {value!r}: loss {loss!r} matches several tuned methods ("
                           f"{', '.join(shown_path(r.best_json) for r in found)}); keep one search per set of parts")


def tuned_config(planned: ExperimentConfig, recipes: list[Recipe], value, notebook: str) -> ExperimentConfig:
    """``planned`` at its method's tuned recipe: the winner's searched fields and loss spec, the notebook's
    seed and runtime fields; refused where any other field differs from the winner's."""
    asked = replace(planned).validate()  # a bad parameter is named here, as the run would name it
    recipe = recipe_for(planned.loss, recipes, value)  # as the notebook names it
    winner = recipe.winner
    if asked.seed in recipe.tuning_seeds:  # the winner was chosen for how it did on these seeds
        raise TunedRecipeError(
            f"{notebook}: {PARAMETER} {value!r}: seed {asked.seed} is one the {recipe.method} search tuned or "
            f"re-ran its winner on ({', '.join(map(str, recipe.tuning_seeds))}, {shown_path(recipe.best_json)}); a "
            "tuned run there would repeat a run its recipe was chosen by: train on seeds no search used")
    options = [name for name in recipe.searched if not is_config_field(name)]  # a loss of one's own: in loss_options

    def setting(cfg: ExperimentConfig, name: str):  # loss_options without the searched ones
        value = getattr(cfg, name)
        if name == "loss_options" and value:
            return {k: v for k, v in value.items() if k not in options} or None
        return value

    differ = [f.name for f in fields(ExperimentConfig) if f.name not in recipe.searched + tuple(NOTEBOOK_FIELDS)
              and setting(asked, f.name) != setting(winner, f.name)]
    if differ:
        raise TunedRecipeError(
            f"{notebook}: {PARAMETER} {value!r}: the {recipe.method} recipe ({shown_path(recipe.best_json)}) was "
            f"tuned with {', '.join(f'{k} {setting(winner, k)!r}' for k in differ)}, but this notebook plans "
            f"{', '.join(f'{k} {setting(asked, k)!r}' for k in differ)}; train with the tuning study's settings "
            "(e.g. run_all.sh --freeze-encoder for a frozen one) or name the tuning study of these")
    tuned = {name: getattr(winner, name) for name in recipe.searched if is_config_field(name)}
    if options:
        tuned["loss_options"] = {**(asked.loss_options or {}), **{k: winner.loss_options[k] for k in options}}
    return replace(planned, **tuned)


def describe(configs: list[ExperimentConfig], value) -> str:
    """Where each tuned method among ``configs`` took its recipe: best.json and its sha256 (what an executed
    notebook keeps, so a reader of a run folder can tell which record gave its configuration)."""
    recipes = load(value)
    lines = {}
    for cfg in configs:
        if cfg.method == "finetune":
            r = recipe_for(cfg.loss, recipes, value)
            lines[r.best_json] = f"  {format_loss_spec(parse_loss_spec(cfg.loss))}: {shown_path(r.best_json)} " \
                                 f"(sha256 {r.sha256}, trial {r.trial_id})"
    return "\n".join([f"{PARAMETER} {value!r}: each run at its method's tuned recipe, from"] + list(lines.values()))


def _executed_with(path: Path) -> Path | None:
    """The tuning study an executed training notebook ran with (None: the Study 1 recipe)."""
    meta = (json_object(path, "metadata") or {}).get("metadata") or {}
    value = ((meta.get("papermill") or {}).get("parameters") or {}).get(PARAMETER)
    return None if value is None else resolve_results_dir(value)


def check_results_folder(results: Path, value) -> None:
    """One recipe source per results folder, so that no summary mixes the two: runs at tuned recipes go to a
    folder named ``*-tuned``, and only they; and the folder's executed training notebooks ran with ``value``
    (a folder of Study 1 runs: None). The name is what guards a notebook run by hand (JupyterLab keeps no
    executed copy): TUNED_RECIPES set with the Study 1 folder would otherwise replace its CE runs in place."""
    want = None if value is None else study_folder(value)
    name = Path(results).name
    if want is not None and not name.endswith(TUNED_SUFFIX):
        raise TunedRecipeError(f"{PARAMETER} {value!r}: runs at tuned recipes go to a results folder of their own, "
                               f"named *{TUNED_SUFFIX}; {shown_path(Path(results))} is not one (e.g. "
                               f"{shown_path(Path(results).with_name(name + TUNED_SUFFIX))})")
    if want is None and name.endswith(TUNED_SUFFIX):
        raise TunedRecipeError(f"{shown_path(Path(results))} is a folder of runs at tuned recipes (*{TUNED_SUFFIX}); "
                               f"set {PARAMETER} to the tuning study they came from, or train the Study 1 recipe "
                               "into another folder")
    for nb in TRAINING_NOTEBOOKS:
        for path in sorted(Path(results).glob(f"notebooks/{nb}-seed*.ipynb")):
            ran = _executed_with(path)
            if ran != want:
                held = "the Study 1 recipe" if ran is None else f"the tuned recipes of {shown_path(ran)}"
                raise TunedRecipeError(
                    f"{PARAMETER} {value!r}: the results folder {shown_path(results)} holds runs at {held} "
                    f"({shown_path(path)}); one folder holds one kind, so give --results another folder")
