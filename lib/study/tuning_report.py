"""Tables and figures of a tuning study (lib.study.tuning): what notebooks/07_tuning.ipynb shows.

Files written under the study folder (CSV and JSON, UTF-8, sorted columns and keys):

    trials.csv         one row per trial: method, number, status, score, seconds, validation score per
                       epoch, the sampled configuration
    best_so_far.csv    the best complete trial's validation score after each trial, per method (the
                       equal-budget picture: every method gets the same number of trials)
    best_configs.csv   per method and hyperparameter: the Study 1 recipe's value beside the best trial's
    importance.csv     per method and hyperparameter: Optuna's fANOVA importance over the complete trials
    budget.csv         per method: budget, trials by status, seconds per trial and seed-epochs trained, best
                       trial, its drop on fresh seeds, the Study 1
                       recipe on the same fresh seeds and what tuning bought (best minus recipe there)
    report.json        budget.csv as JSON, and whether every method had an equal, fully used budget
    figures/best_so_far.png, figures/importance.png
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from lib.study import search_spaces
from lib.training.results import write_csv, write_json

SCORE = "valid_macro_f1"
# trials.csv's columns a reader wants first (the sampled values follow)
TRIAL_COLUMNS = ["method", "trial", "status", SCORE, "seconds", "epochs_run", "valid_by_epoch", "loss"]


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def searches(study: str | Path) -> dict[str, dict]:
    """{method: {"folder", "state" (search.json), "best" (best.json or None), "records": [trial.json, ...]}}: a
    finished search's trials are those Ray Tune ran (search.json), any other folder's records are ignored."""
    out = {}
    for state_path in sorted(Path(study).glob("*/search.json")):
        folder, state = state_path.parent, _read(state_path) or {}
        budget = state.get("budget", {})
        if not budget.get("method"):
            continue
        keep = set(state.get("trials") or [])
        records = [r for r in (_read(p) for p in sorted(folder.glob("trials/*/trial.json"))) if r]
        if state.get("finished"):
            records = [r for r in records if r["trial_id"] in keep]
        out[search_spaces.method_name(budget["method"])] = {
            "folder": folder, "state": state, "budget": budget, "best": _read(folder / "best.json"),
            "recipe": _read(folder / "recipe.json"),
            "records": sorted(records, key=lambda r: r["number"])}
    return out


def trials_table(found: dict[str, dict]) -> pd.DataFrame:
    """One row per trial, the sampled values as columns (a method's own hyperparameters only)."""
    rows = []
    for method, s in found.items():
        for rank, r in enumerate(s["records"], 1):  # trial order: as the search proposed them
            epochs = r.get("epochs", [])
            row = {"method": method, "trial": rank, "trial_id": r["trial_id"], "status": r["status"],
                   SCORE: r.get(SCORE), "seconds": r.get("seconds"), "epochs_run": len(epochs),
                   "recipe": bool(r.get("recipe")),
                   "valid_by_epoch": json.dumps([round(e["valid_macro_f1"], 4) for e in epochs]),
                   "best_by_epoch": json.dumps([round(e["best_valid_macro_f1"], 4) for e in epochs]),
                   "loss": r.get("config", {}).get("loss")}
            row.update({f"{SCORE}_seed{k}": v for k, v in r.get("valid_macro_f1_per_seed", {}).items()})
            row.update({k: v for k, v in r["params"].items() if not k.startswith(search_spaces.STICK)})
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["method", "trial"]).reset_index(drop=True)


def _mean(per_seed: dict) -> float:
    return float(np.mean(list(per_seed.values())))


def best_so_far(trials: pd.DataFrame) -> pd.DataFrame:
    """Per method and trial (in the order the search proposed them): the best validation score among the
    complete trials so far (a trial ASHA stopped early has no final score and changes nothing)."""
    if trials.empty:
        return pd.DataFrame(columns=["method", "trial", SCORE, "status", "best_so_far"])
    parts = []
    for _, t in trials.groupby("method", sort=True):
        t = t.sort_values("trial")[["method", "trial", SCORE, "status"]].copy()
        complete = t[SCORE].where(t["status"] == "complete")
        t["best_so_far"] = complete.cummax().ffill()
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def _recipe_and_best(s: dict) -> tuple[list[str], dict, dict]:
    """A finished search's searched fields (and "loss"), the Study 1 recipe's config as its trial 1 was
    configured (else the search's base) and the winner's config."""
    budget = s["budget"]
    space = search_spaces.declared(budget["method"], budget["frozen"], budget["max_epochs"])
    first = next((r for r in s["records"] if r.get("recipe")), None)
    names = [n for n in space if not n.startswith(search_spaces.STICK)] + ["loss"]
    flat = search_spaces.flat_config  # a searched loss parameter without a config field is in loss_options
    return names, flat(first["config"] if first else budget["base"]), flat(s["best"]["config"])


def best_versus_recipe(found: dict[str, dict]) -> pd.DataFrame:
    """Per method: each hyperparameter of its space, the Study 1 recipe's value beside the best trial's;
    then the scores: validation macro-F1 on the tuning seeds (recipe = its trial), on fresh seeds (both
    re-run), the winner's drop, and what tuning bought (best minus recipe on the fresh seeds).
    The recipe as its trial ran it (trial 1: a sum's weights normalised to sum 1)."""
    rows = []
    for method, s in found.items():
        best = s["best"]
        if not best:
            continue
        names, recipe, chosen = _recipe_and_best(s)
        for name in names:
            rows.append({"method": method, "parameter": name, "recipe": recipe[name], "best": chosen[name]})
        rows += [
            {"method": method, "parameter": f"{SCORE} (tuning seeds)",
             "recipe": best["recipe"]["search_valid_macro_f1"], "best": best["search_valid_macro_f1"]},
            {"method": method, "parameter": f"{SCORE} (fresh seeds, the search's re-run)", "recipe": None,
             "best": best["confirm_valid_macro_f1"]},
            {"method": method, "parameter": "drop on fresh seeds", "recipe": None, "best": best["drop"]},
            {"method": method, "parameter": f"{SCORE} (fresh seeds, side by side)",
             "recipe": (s["recipe"] or {}).get(SCORE), "best": (s["recipe"] or {}).get(f"winner_rerun_{SCORE}")},
            {"method": method, "parameter": "best minus recipe (fresh seeds, side by side)", "recipe": None,
             "best": (s["recipe"] or {}).get("best_minus_recipe")}]
    frame = pd.DataFrame(rows, columns=["method", "parameter", "recipe", "best"])
    for column in ("recipe", "best"):  # mixed numbers and text: one readable column
        frame[column] = frame[column].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                          else f"{v:.4g}" if isinstance(v, float) else str(v))
    return frame


def best_configs_wide(versus: pd.DataFrame) -> pd.DataFrame:
    """best_versus_recipe for reading: one row per parameter or score, per method its recipe and best
    side by side (blank where a parameter is not in the method's space)."""
    if versus.empty:
        return versus
    order = list(dict.fromkeys(versus["parameter"]))
    wide = versus.pivot(index="parameter", columns="method", values=["recipe", "best"]).reindex(order)
    return wide.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False).fillna("")


def importance(found: dict[str, dict], min_trials: int = 4) -> pd.DataFrame:
    """Optuna's fANOVA importance of each hyperparameter over a method's complete trials (fixed seed;
    empty for a method with fewer than ``min_trials`` complete trials: too few to say)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for method, s in found.items():
        budget = s["budget"]
        dists = search_spaces.distributions(budget["method"], budget["frozen"], budget["max_epochs"])
        done = [r for r in s["records"] if r["status"] == "complete" and r.get(SCORE) is not None]
        if len(done) < min_trials:
            continue
        study = optuna.create_study(direction="maximize")
        for r in done:
            study.add_trial(optuna.trial.create_trial(params={k: r["params"][k] for k in dists},
                                                      distributions=dists, value=r[SCORE]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found_imp = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        rows += [{"method": method, "parameter": k, "importance": float(v)} for k, v in found_imp.items()]
    return pd.DataFrame(rows, columns=["method", "parameter", "importance"])


def budget_table(found: dict[str, dict]) -> pd.DataFrame:
    """Per method: the budget, the trials run by status, seconds per trial, best and fresh-seed scores."""
    rows = []
    for method, s in found.items():
        b, records = s["budget"], s["records"]
        status = pd.Series([r["status"] for r in records], dtype=object)
        seconds = [r["seconds"] for r in records if r.get("seconds") is not None]
        best, recipe = s["best"] or {}, s["recipe"] or {}
        rows.append({"method": method, "setting": b["setting"], "budget_trials": b["trials"],
                     "max_epochs": b["max_epochs"], "seeds": ",".join(map(str, b["seeds"])),
                     "finished": bool(s["state"].get("finished")), "trials": len(records),
                     "complete": int((status == "complete").sum()), "stopped": int((status == "stopped").sum()),
                     "error": int((status == "error").sum()),
                     "mean_seconds_per_trial": float(np.mean(seconds)) if seconds else None,
                     # the compute the trials used, in the unit no machine or neighbour changes: epochs trained,
                     # summed over trials and their seeds (equal trials are not equal compute under ASHA)
                     "seed_epochs_trained": int(sum(sum((r.get("epochs_run") or {}).values()) for r in records)),
                     "best_trial": next((i for i, r in enumerate(records, 1) if r["trial_id"] == best["trial_id"]),
                                        None) if best else None,
                     f"best_{SCORE}": best.get("search_valid_macro_f1"),
                     f"fresh_seeds_{SCORE}": best.get("confirm_valid_macro_f1"), "drop": best.get("drop"),
                     f"recipe_{SCORE}": (best.get("recipe") or {}).get("search_valid_macro_f1"),
                     "recipe_trial_status": (best.get("recipe") or {}).get("status"),
                     f"recipe_fresh_seeds_{SCORE}": recipe.get(SCORE),
                     f"rerun_fresh_seeds_{SCORE}": recipe.get(f"winner_rerun_{SCORE}"),
                     # both re-run side by side (recipe.json), recomputed here from their per-seed scores
                     "best_minus_recipe_fresh_seeds": (
                         _mean(recipe[f"winner_rerun_{SCORE}_per_seed"]) - _mean(recipe[f"{SCORE}_per_seed"])
                         if recipe else None),
                     "recipe_on_same_seeds": (recipe.get("seeds") == best.get("confirm_seeds")) if recipe else None,
                     "winner_reproduced": recipe.get("winner_reproduced")})
    return pd.DataFrame(rows)


BOUGHT_COLUMNS = {f"recipe_{SCORE}": "recipe, tuning seeds", f"best_{SCORE}": "best, tuning seeds",
                  f"fresh_seeds_{SCORE}": "best, fresh seeds (search)", "drop": "best's drop",
                  f"recipe_fresh_seeds_{SCORE}": "recipe, fresh seeds", f"rerun_fresh_seeds_{SCORE}":
                  "best, fresh seeds (beside recipe)", "best_minus_recipe_fresh_seeds": "best minus recipe, fresh seeds"}


def bought(budget: pd.DataFrame) -> pd.DataFrame:
    """What tuning bought each method (validation macro-F1): the Study 1 recipe and the winner on the
    tuning seeds; the winner on the fresh seeds as the search re-ran it (its drop); then the recipe and
    the winner re-run side by side on the fresh seeds (one commit, one machine: a run's score moves with
    the machine). Their difference is free of the winner's seed luck, not of its selection on this
    validation split; a mean over two seeds, with no interval."""
    if budget.empty:
        return pd.DataFrame(columns=["method", *BOUGHT_COLUMNS.values()])
    return budget[["method", *BOUGHT_COLUMNS]].rename(columns=BOUGHT_COLUMNS).round(4)


def equal_budget(budget: pd.DataFrame) -> bool:
    """Every method of the study got the same trials, maximum epochs and seeds, and used them all."""
    if budget.empty:
        return False
    same = budget[["budget_trials", "max_epochs", "seeds", "setting"]].nunique().max() == 1
    return bool(same and (budget["trials"] == budget["budget_trials"]).all() and budget["finished"].all())


def plot_best_so_far(curve: pd.DataFrame, path: str | Path | None = None):
    import matplotlib.pyplot as plt

    from lib.study.plots import save

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (method, t) in enumerate(curve.groupby("method", sort=True)):
        color = f"C{i}"
        ax.step(t["trial"], t["best_so_far"], where="post", color=color, label=method)
        done = t[t["status"] == "complete"]
        ax.scatter(done["trial"], done[SCORE], color=color, s=12, alpha=0.6)
        early = t[t["status"] != "complete"]
        ax.scatter(early["trial"], early[SCORE], color=color, s=14, marker="x", alpha=0.6)
    ax.set_xlabel("trial (equal budget per method)")
    ax.set_ylabel("validation macro-F1 (mean over tuning seeds)")
    ax.set_title("Best complete trial so far (dots: complete trials, x: stopped early)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_importance(frame: pd.DataFrame, path: str | Path | None = None):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from lib.study.plots import save

    fig, ax = plt.subplots(figsize=(7, 0.4 * max(3, frame["parameter"].nunique()) + 1))
    if frame.empty:
        ax.text(0.5, 0.5, "too few complete trials for importances", ha="center", va="center")
        ax.set_axis_off()
    else:
        table = frame.pivot(index="parameter", columns="method", values="importance")
        sns.heatmap(table, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, ax=ax, cbar=False)
        ax.set_title("Which hyperparameters mattered (fANOVA importance; blank: not in the method's space)")
    fig.tight_layout()
    return save(fig, path)


def _sorted_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reindex(columns=sorted(frame.columns))


def write_report(study: str | Path) -> dict:
    """Build every table and figure of a study folder, write them there, return them (frames, paths)."""
    import matplotlib.pyplot as plt

    study = Path(study)
    found = searches(study)
    trials = trials_table(found)
    curve = best_so_far(trials)
    versus = best_versus_recipe(found)
    imp = importance(found)
    budget = budget_table(found)
    study.mkdir(parents=True, exist_ok=True)
    for name, frame in (("trials", trials), ("best_so_far", curve), ("best_configs", versus), ("importance", imp),
                        ("budget", budget)):
        write_csv(study / f"{name}.csv", _sorted_columns(frame))
    summary = {"study": study.name, "equal_budget": equal_budget(budget),
               "methods": {row["method"]: {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                           for k, v in row.items() if k != "method"}
                           for row in budget.to_dict("records")}}
    write_json(study / "report.json", summary)
    figures = {"best_so_far": study / "figures" / "best_so_far.png", "importance": study / "figures" / "importance.png"}
    plt.close(plot_best_so_far(curve, figures["best_so_far"]))
    plt.close(plot_importance(imp, figures["importance"]))
    return {"trials": trials, "best_so_far": curve, "best_configs": versus, "importance": imp, "budget": budget,
            "summary": summary, "figures": figures}


def check_report(report: dict) -> None:
    """What the notebook asserts (so nbval fails on a broken search): an equal, fully used budget; no
    test score anywhere in the trials; every complete trial's score is the mean of its seeds."""
    budget, trials = report["budget"], report["trials"]
    assert report["summary"]["equal_budget"], f"unequal or unfinished budgets:\n{budget}"
    assert not [c for c in trials.columns if "test" in c], "a trial record carries a test score"
    seed_columns = [c for c in trials.columns if c.startswith(f"{SCORE}_seed")]
    done = trials[trials["status"] == "complete"]
    assert np.allclose(done[seed_columns].mean(axis=1), done[SCORE]), "a trial's score is not its seeds' mean"
    assert budget["recipe_on_same_seeds"].dropna().all(), f"a recipe re-run on other seeds than its winner's:\n{budget}"


# ---- across the published searches: what tuning bought (tuning_table.md; the README shows gains_markdown) ----

PART_NAMES = {"ce": "CE", "triplet": "Triplet", "arcface": "ArcFace", "supcon": "SupCon"}
TABLE_COLUMNS = ["study", "method", *BOUGHT_COLUMNS.values()]


def is_published(study: Path) -> bool:
    """A study folder whose searches are all finished, with an equal budget, and notebook 07 rendered over
    them (lib.study.tuning --publish)."""
    summary = _read(study / "report.json") or {}
    return bool(summary.get("equal_budget")) and (study / "notebooks" / "07_tuning.ipynb").is_file()


def _published_budget(path: Path) -> pd.DataFrame:
    """A published study's budget.csv, refused by name when it predates a column the table needs."""
    budget = pd.read_csv(path)
    missing = sorted({"method", "best_minus_recipe_fresh_seeds", "recipe_trial_status", *BOUGHT_COLUMNS}
                     - set(budget.columns))
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}: it was written by an older version; "
                         "publish the study again (run_all.sh --profile tune ... --publish)")
    return budget


def published_table(tuning_root: str | Path) -> pd.DataFrame:
    """One row per published study and method: what tuning bought (``bought``, rounded for reading), from
    each budget.csv; ``_gain`` keeps the unrounded fresh-seed difference."""
    parts = []
    for study in sorted(p for p in Path(tuning_root).iterdir() if p.is_dir() and is_published(p)):
        budget = _published_budget(study / "budget.csv")
        frame = bought(budget).assign(study=study.name, _gain=budget["best_minus_recipe_fresh_seeds"],
                                      _recipe_status=budget["recipe_trial_status"])
        parts.append(frame[TABLE_COLUMNS + ["_gain", "_recipe_status"]])
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame(columns=TABLE_COLUMNS + ["_gain", "_recipe_status"]))


def _method_title(name: str) -> str:
    return " + ".join(PART_NAMES.get(p, p) for p in name.split("+"))


def table_markdown(table: pd.DataFrame) -> str:
    """The table (4 decimals), then per study what tuning bought cross-entropy beside the combined loss."""
    from lib.study.summary import markdown_table

    shown = table.assign(method=table["method"].map(_method_title))[TABLE_COLUMNS]
    for column in BOUGHT_COLUMNS.values():
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:+.4f}" if "minus" in column
                                          or "drop" in column else f"{v:.4f}")
    stopped = (table["_recipe_status"] != "complete").to_numpy()
    recipe = BOUGHT_COLUMNS[f"recipe_{SCORE}"]
    shown.loc[stopped, recipe] = shown.loc[stopped, recipe] + " (stopped)"
    lines = [markdown_table(shown)]
    if stopped.any():
        lines.append("- (stopped): ASHA ended the recipe's trial early; its score is the best before it was stopped "
                     "(on the fresh seeds the recipe ran in full).")
    lines += _ce_beside_combined(table)
    return "\n".join(lines).rstrip("\n") + "\n"


def _ce_beside_combined(table: pd.DataFrame, names: dict[str, str] | None = None) -> list[str]:
    """Per study with both searches, in the order of ``names`` (folder -> name; by default the table's folders
    as they come): what tuning bought cross-entropy beside the combined loss."""
    lines = []
    for study, name in (names or {s: s for s in dict.fromkeys(table["study"])}).items():
        by = table[table["study"] == study].set_index("method")
        if {"ce", "ce+triplet+arcface"} <= set(by.index):
            ce, combined = by.loc["ce", "_gain"], by.loc["ce+triplet+arcface", "_gain"]
            lines.append(f"- {name}: tuning bought CE {ce:+.4f} and the combined loss {combined:+.4f}; CE's gain minus "
                         f"the combined loss's gain: {ce - combined:+.4f}.")
    return lines


GAIN_NOTE = ("- Each cell: the tuned recipe's validation macro-F1 (mean of two fresh seeds) and, in brackets, what tuning "
             "bought: that minus the Study 1 recipe's, re-run beside it on the same seeds (one commit, one machine); "
             "validation only, no interval; – where the study has no search of the method.")


def _study_titles(studies) -> dict[str, str]:
    """folder -> column title of the given tuning studies, in the main table's order (lib.study.studies);
    a folder the main table does not know keeps its name and comes last."""
    from lib.study.studies import report_columns

    titles = dict(report_columns())
    order = {folder: i for i, folder in enumerate(titles)}
    return {s: titles.get(s, s) for s in sorted(dict.fromkeys(studies), key=lambda s: (order.get(s, len(order)), s))}


def gains_table(table: pd.DataFrame) -> pd.DataFrame:
    """The README's short view of ``published_table``: one row per method (reading order), one column per
    published study, each cell the winner re-run on the fresh seeds beside the recipe, with the difference
    (what tuning bought)."""
    from lib.study.experiments import sort_methods

    titles = _study_titles(table["study"])
    best = BOUGHT_COLUMNS[f"rerun_fresh_seeds_{SCORE}"]
    cells = {(r["study"], r["method"]): f"{r[best]:.4f} ({r['_gain']:+.4f})" for _, r in table.iterrows()}
    rows = [{"method": _method_title(m), **{title: cells.get((s, m), "–") for s, title in titles.items()}}
            for m in sort_methods(table["method"].unique())]
    return pd.DataFrame(rows, columns=["method", *titles.values()])


def gains_markdown(table: pd.DataFrame) -> str:
    """``gains_table`` in markdown, what its cells mean, and per study (in its columns' order) what tuning
    bought cross-entropy beside the combined loss."""
    from lib.study.summary import markdown_table

    # the table's own newline, then a blank line: a list straight after a table is a row to some renderers
    return "\n".join([markdown_table(gains_table(table)), GAIN_NOTE,
                      *_ce_beside_combined(table, _study_titles(table["study"]))]) + "\n"


# ---- across the published searches: each method's tuned recipe beside Study 1's (recipes_table.md) ----

SHARED_TITLES = {"encoder_lr": "encoder lr", "head_lr": "head lr", "warmup_ratio": "warm-up", "epochs": "epochs",
                 "weight_decay": "weight decay", "dropout": "dropout"}
OWN_TITLES = {"triplet_margin": "triplet margin", "triplet_mining": "mining", "triplet_distance": "distance",
              "arcface_margin": "ArcFace margin", "arcface_scale": "ArcFace scale",
              "supcon_temperature": "SupCon temperature"}
RECIPE_COLUMNS = ["study", "method", *SHARED_TITLES.values(), "loss's own", "weights"]


def _short(value) -> str:
    """A config value for reading: a number to 3 significant digits, anything else as it is."""
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _weights(spec: str) -> str:
    return " / ".join(f"{w:.3g}" for w in search_spaces.parse_loss_spec(spec).values())


def published_recipes(tuning_root: str | Path) -> pd.DataFrame:
    """One row per published study and method: each searched hyperparameter as "best (Study 1 recipe)", read
    from the search records (best.json, trial 1's trial.json; a sum's weights likewise; "–" where the method's
    space has no such parameter, e.g. the encoder's learning rate with a frozen encoder)."""
    rows = []
    for study in sorted(p for p in Path(tuning_root).iterdir() if p.is_dir() and is_published(p)):
        for method, found in sorted(searches(study).items()):
            if not found["best"] or "config" not in found["best"]:
                raise ValueError(f"{found['folder'] / 'best.json'}: missing or without its config: publish the "
                                 "study again")
            names, recipe, best = _recipe_and_best(found)
            lacking = [n for n in names if n not in recipe or n not in best]
            if lacking:
                raise ValueError(f"{found['folder']}: the recipe or the winner lacks {', '.join(lacking)}")
            row = {"study": study.name, "method": method}
            for name, title in SHARED_TITLES.items():
                row[title] = f"{_short(best[name])} ({_short(recipe[name])})" if name in names else "–"
            own = [n for n in names if n not in SHARED_TITLES and n != "loss"]  # a loss of one's own: its name
            row["loss's own"] = "; ".join(f"{OWN_TITLES.get(name, name)} {_short(best[name])} ({_short(recipe[name])})"
                                          for name in own) or "–"
            row["weights"] = (f"{_weights(best['loss'])} ({_weights(recipe['loss'])})"
                              if len(search_spaces.parse_loss_spec(best["loss"])) > 1 else "–")
            rows.append(row)
    return pd.DataFrame(rows, columns=RECIPE_COLUMNS)


def recipes_markdown(table: pd.DataFrame) -> str:
    """The recipes table (methods by their names), with what its cells mean."""
    from lib.study.summary import markdown_table

    shown = table.assign(method=table["method"].map(_method_title))
    return (markdown_table(shown) + "\n- Each cell: the tuned value (the Study 1 recipe's, as the search's trial 1 was "
            "configured: a sum's weights scaled to sum 1); 3 significant digits; – where the method's search has no such "
            "parameter. Epochs: the length the schedule decays over (early stopping or ASHA may end a run sooner).\n")
