"""What the tuned recipe changed, method by method, on the test split: ``python -m lib.study.recipe_effect``.

Study 2 trains each method at its tuned recipe (``TUNED_RECIPES``, a ``-tuned`` results folder) and,
on the same seeds, at the Study 1 recipe (another folder). Per method of the tuned folder, the same
method of the recipe folder (its loss parts: a tuned sum is the method at other weights), paired by
seed on one test set: tuned − recipe under each method's a-priori rule, the t view over seeds and the
two-level bootstrap (seeds and test sentences), Holm's adjustment over the methods (one family per
split); "significant" needs both adjusted p-values below 0.05 (PROTOCOL.md amendment 4(b)). The same
on every out-of-domain set both folders' runs scored. Baselines without a loss have no recipe and are
left out. Arms that differ outside the recipe (bf16, the data's split, out-of-domain sets, batch size...)
are refused: their difference would not be the recipe's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from lib.data.out_of_domain import SCORING_NOTE
from lib.evaluation.pvalues import holm
from lib.ownership import check_owned
from lib.study.baseline_comparison import compare_out_of_domain, compare_to_baseline
from lib.training.config import ADDED_LATER
from lib.study.experiments import (RUNTIME_FIELDS, loss_parts, resolve_results_dir, same_method,
                                   sort_methods)
from lib.study.results_folder import csv_header_has
from lib.study.run_files import ood_sets
from lib.study.search_spaces import SHARED, flat_config, own_space, parts_of
from lib.study.summary import collect
from lib.training.results import write_csv

class RecipeEffectError(ValueError):
    """The two folders cannot be compared method by method: one message, exit status 2."""
    exit_status = 2


TUNED, RECIPE = "tuned", "recipe"  # the two arms' labels inside one comparison table
COLUMNS = ["split", "method", "recipe_method", "seeds", "diff", "diff_lo", "diff_hi", "p_ttest", "p_ttest_holm",
           "tl_seeds", "tl_diff", "tl_lo", "tl_hi", "tl_se", "tl_p", "tl_p_is_bound", "p_holm", "significant"]


def pairs(tuned: pd.DataFrame, recipe: pd.DataFrame) -> list[tuple[str, str]]:
    """(tuned method, recipe method): every trained method of the tuned folder with its counterpart."""
    out, missing = [], []
    for method in sort_methods(set(tuned["method"])):
        if loss_parts(method) is None:
            continue  # a baseline: no recipe to tune
        match = [m for m in set(recipe["method"]) if same_method(m, method)]
        if len(match) != 1:
            missing.append(method)
            continue
        out.append((method, match[0]))
    if missing:
        raise RecipeEffectError(f"no single method with the same loss parts in the recipe folder for {', '.join(missing)} "
                         f"(it holds {', '.join(sorted(set(recipe['method'])))}); train the Study 1 recipe of every "
                         "tuned method on the same seeds")
    return out


def recipe_fields(method: str) -> set[str]:
    """The configuration fields in which a method's tuned recipe may differ from its Study 1 recipe: what
    its search varied (lib.study.search_spaces: the shared fields and its parts' own; the loss spec for a
    sum's weights), besides the seed and where a run ran."""
    own = {name for part in parts_of(method) for name in own_space(part)}
    return set(SHARED) | own | {"loss", "seed"} | RUNTIME_FIELDS


def check_same_settings(tuned: pd.DataFrame, recipe: pd.DataFrame, method: str, recipe_method: str) -> None:
    """Refuse arms that differ outside the recipe (e.g. bf16 against fp32, another encoder or batch size):
    their difference would not be the recipe's effect."""
    def config(runs, m):
        path = Path(runs.loc[runs["method"] == m, "run_path"].iloc[0]) / "config.json"
        # a field added after a run was saved reads as the behaviour that run had; the parameters of a loss of
        # one's own (loss_options) are compared one by one, as the search varied them
        saved = {**ADDED_LATER, **json.loads(path.read_text(encoding="utf-8"))}
        return path, flat_config(saved)

    (tuned_path, a), (recipe_path, b) = config(tuned, method), config(recipe, recipe_method)
    allowed = recipe_fields(method)
    differ = sorted(k for k in set(a) | set(b) if k not in allowed and a.get(k) != b.get(k))
    if differ:
        shown = ", ".join(f"{k} {a.get(k)!r} against {b.get(k)!r}" for k in differ)
        raise RecipeEffectError(
            f"{method}: the arms differ outside the recipe ({tuned_path} against {recipe_path}): {shown}; train "
            "the Study 1 recipe with the tuned runs' other settings (e.g. the same bf16), so that only the recipe "
            "differs")


def _arms(tuned: pd.DataFrame, recipe: pd.DataFrame, method: str, recipe_method: str) -> pd.DataFrame:
    return pd.concat([tuned[tuned["method"] == method].assign(method=TUNED),
                      recipe[recipe["method"] == recipe_method].assign(method=RECIPE)], ignore_index=True)


def recipe_effect(tuned_results: str | Path, recipe_results: str | Path, n_boot: int = 10_000,
                  random_state: int = 0) -> pd.DataFrame:
    """One row per method and split (``test``, ``ood:<set>``): tuned − recipe, paired by seed (``COLUMNS``)."""
    tuned, recipe = collect(tuned_results), collect(recipe_results)
    for folder, runs in ((tuned_results, tuned), (recipe_results, recipe)):
        if runs.empty:
            raise RecipeEffectError(f"no complete runs under {resolve_results_dir(folder) / 'runs'}")
    rows = []
    found_pairs = pairs(tuned, recipe)
    if not found_pairs:
        raise RecipeEffectError(f"no method with a loss under {resolve_results_dir(tuned_results) / 'runs'} "
                                "(baselines have no recipe to compare)")
    for method, recipe_method in found_pairs:
        check_same_settings(tuned, recipe, method, recipe_method)
        both = _arms(tuned, recipe, method, recipe_method)
        seeds = set(both.loc[both["method"] == TUNED, "seed"]) & set(both.loc[both["method"] == RECIPE, "seed"])
        if not seeds:
            raise RecipeEffectError(f"{method}: the tuned and the recipe runs share no seed; the comparison is paired by seed")
        found = [compare_to_baseline(both, RECIPE, n_boot=n_boot, random_state=random_state).assign(split="test")]
        found += [compare_out_of_domain(both, RECIPE, name, n_boot=n_boot, random_state=random_state)
                  .assign(split=f"ood:{name}") for name in ood_sets(both)]
        for frame in found:
            if len(frame):
                rows.append(frame.assign(method=method, recipe_method=recipe_method))
    table = pd.concat(rows, ignore_index=True)
    parts = []
    for _, family in table.groupby("split", sort=False):  # Holm within each split's family of methods
        family = family.assign(p_holm=holm(family["tl_p"].to_numpy()),
                               p_ttest_holm=holm(family["p_ttest"].to_numpy()))
        parts.append(family.assign(significant=(family["p_holm"] < 0.05) & (family["p_ttest_holm"] < 0.05)))
    out = pd.concat(parts, ignore_index=True)
    return out[[c for c in COLUMNS if c in out.columns]].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.study.recipe_effect", description=__doc__.splitlines()[0])
    p.add_argument("--tuned", required=True, help="results folder of the runs at the tuned recipes")
    p.add_argument("--recipe", required=True, help="results folder of the same methods and seeds at the Study 1 recipe")
    p.add_argument("--out", default=None, help="CSV to write (default: <tuned>/recipe_effect.csv)")
    p.add_argument("--n-boot", type=int, default=10_000)
    args = p.parse_args(argv)
    table = recipe_effect(args.tuned, args.recipe, n_boot=args.n_boot)
    out = Path(args.out) if args.out else resolve_results_dir(args.tuned) / "recipe_effect.csv"
    check_owned(out, lambda path: csv_header_has(path, COLUMNS), "a table written by python -m lib.study.recipe_effect")
    write_csv(out, table)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table[["split", "method", "seeds", "tl_diff", "tl_lo", "tl_hi", "p_holm", "p_ttest_holm",
                     "significant"]].to_string(index=False))
    if table["split"].astype(str).str.startswith("ood:").any():
        print(f"ood:<set> rows: {SCORING_NOTE}")
    return 0


if __name__ == "__main__":
    from lib.entrypoint import run_main

    sys.exit(run_main(main))
