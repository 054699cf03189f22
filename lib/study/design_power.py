"""Study 2's seed count, from Study 1's measured variance: ``python -m lib.study.design_power``.

Reads the committed runs of the primary study (``results/ko6-me5-small``: the a-priori rules'
test predictions, combined against cross-entropy) and splits the variance of their difference into
the part seeds average away and the part the 900 test sentences fix (lib.evaluation.power
``variance_components``). Then the minimum detectable effect (two-sided 0.05, 80% power) for n
seeds on the seed study's split, and for n runs each on its own random split of the same sizes (a
larger test pool; a model, since the training-set draw adds spread no fixed-split study can
measure). Writes ``results/study2-design/power.json`` and ``.md``: the numbers Study 2's protocol
cites.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lib.evaluation.bootstrap import two_level_bootstrap
from lib.evaluation.power import fit_se_by_seeds, minimum_detectable_effect, variance_components
from lib.ownership import check_owned, json_object
from lib.paths import PROJECT_ROOT
from lib.study.experiments import resolve_results_dir
from lib.study.run_files import load_primary_predictions, reference_test_set
from lib.study.summary import MARGIN, PRIMARY_METHOD, collect, markdown_table
from lib.training.results import write_json, write_text

BASELINE = "ce=1.0"
SEED_COUNTS = (5, 10, 15, 20, 30, 40)
OUT = "study2-design/power"
WRITTEN_BY = "lib.study.design_power"


def paired_predictions(study: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None, list[int]]:
    """(combined, CE, labels, class count, seeds): each method's a-priori-rule test predictions, one row per
    seed both ran."""
    runs = collect(study)
    if runs.empty:
        raise FileNotFoundError(f"no runs under {study / 'runs'}")
    y, ids, k = reference_test_set(runs, BASELINE)
    a = load_primary_predictions(runs, PRIMARY_METHOD, ids)
    b = load_primary_predictions(runs, BASELINE, ids)
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"{study}: {len(seeds)} seed(s) ran both {PRIMARY_METHOD} and {BASELINE}; need 2 or more")
    return np.stack([a[s] for s in seeds]), np.stack([b[s] for s in seeds]), y, k, seeds


def measure(study: Path, n_boot: int = 10_000, random_state: int = 0, subsets: int = 10,
            subset_boot: int = 2_000) -> dict:
    """The variance components of combined - CE in ``study`` (sentence bootstraps with seeds fixed), and
    the verdict's own SE (the two-level bootstrap's, seeds and sentences) measured on ``subsets`` random
    subsets of every size from 3 seeds up, fitted as SE(n)^2 = F^2 + S^2 / n."""
    a, b, y, k, seeds = paired_predictions(study)
    boot = dict(n_boot=n_boot, random_state=random_state, n_classes=k)
    per_seed_var = np.array([two_level_bootstrap(a[i], b[i], y, resample="sentences", **boot)["se"] ** 2
                             for i in range(len(seeds))])
    mean = two_level_bootstrap(a, b, y, resample="sentences", **boot)
    parts = variance_components(per_seed_var, mean["se"] ** 2, mean["per_seed_diff"])
    rng = np.random.default_rng(random_state)
    sizes, ses = [], []
    for m in range(3, len(seeds) + 1):
        for r in range(subsets if m < len(seeds) else 1):
            pick = np.sort(rng.choice(len(seeds), m, replace=False))
            ses.append(two_level_bootstrap(a[pick], b[pick], y, n_boot=subset_boot, random_state=r,
                                           n_classes=k)["se"])
            sizes.append(m)
    floor, spread = fit_se_by_seeds(sizes, ses)
    full = two_level_bootstrap(a, b, y, **boot)["se"]
    sizes_of = json.loads(next((study / "runs").glob("*/seed*/metrics.json")).read_text(encoding="utf-8"))
    pool = sizes_of["data"]["sizes"]["train"] + sizes_of["data"]["sizes"]["test"]  # what a resplit draws from
    return {**parts, "diff": mean["diff"], "seed_list": seeds, "test_sentences": len(y), "n_boot": n_boot,
            "pool_sentences": pool,
            "random_state": random_state, "verdict_se_floor": floor, "verdict_se_per_seed": spread,
            "verdict_se_all_seeds": full, "subsets_per_size": subsets, "subset_n_boot": subset_boot}


def mde_table(parts: dict, seed_counts=SEED_COUNTS) -> pd.DataFrame:
    """Per n seeds (2 runs each), under the verdict's fitted SE: on the seed study's split, SE(n)^2 =
    F^2 + S^2 / n, and its minimum detectable effect two-sided at 0.05 and one-sided at 0.05 (the 90%
    interval's lower bound above 0); with each seed on its own random split (RESPLIT: test sets of the same
    size drawn from the pool of training and test sentences), the floor averages too, down to what the pool
    itself shares, SE(n)^2 = F^2 t / p + (F^2 + S^2) / n (t test sentences of a pool of p): a model, not a
    measurement (it leaves out the training-set draw's spread, which no fixed-split study measures)."""
    floor, spread = parts["verdict_se_floor"], parts["verdict_se_per_seed"]
    pool_floor = floor * math.sqrt(parts["test_sentences"] / parts["pool_sentences"])
    rows = []
    for n in [*seed_counts, None]:
        fixed = floor if n is None else math.sqrt(floor ** 2 + spread ** 2 / n)
        splits = pool_floor if n is None else math.sqrt(pool_floor ** 2 + (floor ** 2 + spread ** 2) / n)
        rows.append({"n": "infinite" if n is None else n, "runs": None if n is None else 2 * n, "verdict_se": fixed,
                     "mde_two_sided_05": minimum_detectable_effect(fixed),
                     "mde_one_sided_05": minimum_detectable_effect(fixed, alpha=0.10),
                     "splits_se_model": splits,
                     "splits_mde_two_sided_05_model": minimum_detectable_effect(splits)})
    return pd.DataFrame(rows)


def render(parts: dict, table: pd.DataFrame, study: str) -> str:
    shown = table.copy()
    for c in shown.columns[2:]:
        shown[c] = shown[c].map(lambda v: f"{v:.4f}")
    shown["runs"] = shown["runs"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    return "\n".join([
        f"# Study 2's seed count from Study 1's variance ({study}, combined − CE, a-priori rules, test macro-F1)",
        "",
        f"Written by `python -m {WRITTEN_BY}` from the committed runs ({len(parts['seed_list'])} seeds, "
        f"{parts['test_sentences']} test sentences). Minimum detectable effect: (z + z 0.8) × SE, 80% power; "
        f"the seed study's claimed gain is +{MARGIN}.",
        "",
        "**The verdict's SE** (the two-level bootstrap over seeds and test sentences, as the protocol's interval "
        f"uses it), measured on {parts['subsets_per_size']} random subsets of every size from 3 seeds up "
        f"({parts['subset_n_boot']} replicates each) and fitted as SE(n)² = F² + S²/n: "
        f"F = {parts['verdict_se_floor']:.4f} (the floor no number of seeds on this test set removes), "
        f"S = {parts['verdict_se_per_seed']:.4f}; with all {len(parts['seed_list'])} seeds it is "
        f"{parts['verdict_se_all_seeds']:.4f}.",
        "",
        f"**Variance components** (sentence bootstraps with the seeds fixed, {parts['n_boot']} resamples; a model "
        "that assumes a seed's own sentence noise independent across seeds): per-seed SD of the difference on the "
        f"fixed test set {parts['seed_sd']:.4f}; shared sentence SE {parts['shared_se']:.4f}; seed-by-sentence SD "
        f"{parts['interaction_sd']:.4f} (these model parts need not add up to the verdict's SE, whose bootstrap "
        "counts a seed's own sentence noise at both levels).",
        "",
        "`splits_*`: each seed on its own random split (`RESPLIT`: a test set of the same size drawn from the "
        f"{parts['pool_sentences']} training and test sentences), so the floor averages too, down to what the pool "
        f"itself shares: SE(n)² = F²·{parts['test_sentences']}/{parts['pool_sentences']} + (F² + S²)/n. A model, not "
        "a measurement: it leaves out the training-set draw's spread, which no fixed-split study measures, and it is "
        "the SE of the procedure, not of an interval: the summary's two-stage bootstrap "
        "(`split_bootstrap`) counts each split's sentence noise at both stages, so its SE is up to √2 times the "
        "procedure's (where sentence noise dominates; tests/test_split_bootstrap.py), while the t over seeds alone "
        "leaves out the pool's floor.",
        "",
        markdown_table(shown),
    ]).rstrip("\n") + "\n"


def _ours(path: Path) -> bool:
    return (json_object(path, "written_by") or {}).get("written_by") == WRITTEN_BY


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {WRITTEN_BY}", description=__doc__.splitlines()[0])
    p.add_argument("--study", default="results/ko6-me5-small", help="the study whose runs give the variance")
    p.add_argument("--results", default="results", help="where study2-design/ is written (default: results)")
    p.add_argument("--n-boot", type=int, default=10_000)
    args = p.parse_args(argv)
    study = resolve_results_dir(args.study)
    out = resolve_results_dir(args.results) / OUT
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    check_owned(json_path, _ours, f"a file written by python -m {WRITTEN_BY}")
    check_owned(md_path, lambda path: _ours(json_path), f"a file written by python -m {WRITTEN_BY}")
    parts = measure(study, n_boot=args.n_boot)
    table = mde_table(parts)
    shown_study = study.relative_to(PROJECT_ROOT) if study.is_relative_to(PROJECT_ROOT) else study
    write_json(json_path, {"written_by": WRITTEN_BY, "study": str(shown_study), "components": parts,
                           "table": table.to_dict("records")})
    write_text(md_path, render(parts, table, str(shown_study)))
    print(md_path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    from lib.entrypoint import run_main

    sys.exit(run_main(main))
