"""Each method of a study against its baseline, from the run folders: the t view over seeds, the
two-level bootstrap and the protocol's margin verdict (the columns of ``summary.csv``), and how
firmly that verdict stands (bootstrap re-draws, leave one seed out); the same comparison on an
out-of-domain set (``compare_out_of_domain``, no margin verdict). Predictions come from
``run_files``; the statistics from ``lib.evaluation``."""
from __future__ import annotations

from functools import partial
from typing import Iterable

import numpy as np
import pandas as pd

from lib.evaluation.bootstrap import fixed_vs_seeds_bootstrap, macro_f1_counts, split_bootstrap, two_level_bootstrap
from lib.evaluation.margin import protocol_verdict
from lib.evaluation.seed_tests import fixed_vs_seeds_t_test, paired_seed_test
from lib.evaluation.verdict_sensitivity import bootstrap_redraws, leave_one_seed_out
from lib.study.run_files import load_primary_predictions, ood_scores, reference_ood_set, reference_test_set

# Methods with one deterministic run (no seed): compared with the baseline's mean over seeds.
DETERMINISTIC_METHODS = ("tfidf-lr", "encoder-lr")


def compare_to_baseline(runs: pd.DataFrame, baseline: str, *, n_boot: int | None = None, random_state: int = 0,
                        delta: float | None = None,
                        deterministic: Iterable[str] = DETERMINISTIC_METHODS) -> pd.DataFrame:
    """Each method against ``baseline``: paired over seeds and paired bootstraps on predictions.

    Columns: method, baseline, seeds, diff, diff_lo, diff_hi, p_ttest (t over the seeds both ran,
    test set fixed; for a deterministic method over the baseline's seeds).

    With ``n_boot`` (e.g. 10_000) also the two-level bootstrap of macro-F1, columns
      tl_design    'paired seeds' (seeds both ran; 'paired seeds, own splits' where each seed has a
                   split of its own, resplit: ``split_bootstrap``), 'fixed vs baseline seeds' (a method in
                   ``deterministic`` with one run, against the mean over all baseline seeds), or
                   'too few seeds' (fewer than 2; the tl_ columns are NaN)
      tl_seeds     seeds resampled; tl_diff (point estimate; for a deterministic method
                   metric(fixed) - baseline mean over its seeds, not its seed 0), tl_lo, tl_hi
                   (95%), tl_se (SD of the replicates), tl_p, tl_p_is_bound (p < tl_p when True),
                   tl_n_boot
    and with ``delta`` (a claimed gain) the protocol's margin test at 90% (``margin_test_both``):
      tl_lo90, tl_hi90, p_below_claim, p_gain (+ _is_bound flags)   two-level bootstrap
      t_lo90, t_hi90, p_below_claim_t, p_gain_t                     t over seeds (test set fixed)
      lo90, hi90, verdict, includes_delta                           their union: the verdict
      verdict_bootstrap, verdict_t                                  each view's own verdict
    A deterministic method (in ``deterministic``, one run, a baseline with 2+ seeds) is compared
    with the baseline's mean over its seeds in the t columns (``fixed_vs_seeds_t_test``; ``seeds``
    is then the baseline's) and the two-level ones.
    Every bootstrap macro-F1 runs over the data set's classes (``n_classes_of`` the baseline's first
    run; where its metrics.json lacks them, the largest label or prediction + 1).
    """
    if runs[(runs["method"] == baseline) & (runs["split"] == "test")].empty:
        return pd.DataFrame()
    y, ids, n_classes = reference_test_set(runs, baseline)
    return _compare_all(runs, "test", baseline, y, n_classes, partial(load_primary_predictions, runs, ids=ids),
                        n_boot=n_boot, random_state=random_state, delta=delta, deterministic=deterministic)


def compare_out_of_domain(runs: pd.DataFrame, baseline: str, name: str, *, n_boot: int | None = None,
                          random_state: int = 0,
                          deterministic: Iterable[str] = DETERMINISTIC_METHODS) -> pd.DataFrame:
    """Each method against ``baseline`` on out-of-domain set ``name`` (``ood/<name>/`` of the runs
    that scored it), each by its primary rule: the columns of ``compare_to_baseline`` without the
    margin test (the protocol's claim is about the in-domain test split), plus ``set``.

    The same machinery as in domain (t over the seeds both scored; the two-level bootstrap over seeds
    and the set's sentences, paired by seed), with the set's own metric: macro-F1 over its shared
    classes only, a prediction of a class without counterpart a miss for the row's class and a false
    positive for none (``lib.training.out_of_domain.shared_class_metrics``). Empty where the baseline
    scored no run on the set."""
    table = ood_scores(runs, name)
    if table[table["method"] == baseline].empty:
        return pd.DataFrame()
    y, ids, n_classes, shared = reference_ood_set(runs, baseline, name)
    load = partial(load_primary_predictions, runs, ids=ids, ood=name, labels=y)
    out = _compare_all(table, f"ood:{name}", baseline, y, n_classes, load, n_boot=n_boot, random_state=random_state,
                       deterministic=deterministic, metric=shared_macro_f1(shared))
    return out.assign(set=name) if len(out) else out


def shared_macro_f1(shared: list[int]):
    """The bootstrap's count metric (``lib.evaluation.bootstrap``) of an out-of-domain set: macro-F1
    over the ``shared`` class indices only."""
    return partial(_macro_f1_over, np.asarray(shared, dtype=np.int64))


def _macro_f1_over(classes: np.ndarray, tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return macro_f1_counts(tp[..., classes], support[..., classes], predicted[..., classes])


def _compare_all(table: pd.DataFrame, split: str, baseline: str, y, n_classes, load, *, n_boot, random_state,
                 delta=None, deterministic=DETERMINISTIC_METHODS, metric="macro_f1") -> pd.DataFrame:
    """``compare_to_baseline`` on any split of a runs ``table``: ``load(method)`` gives seed ->
    predictions on that split's sentences, ``y`` their labels."""
    rows = []
    base = load(baseline)
    fixed_methods = set(deterministic)
    for method in sorted(set(table["method"]) - {baseline}):
        mine = load(method)
        seeds = sorted(set(mine) & set(base))
        if not seeds:
            continue
        fixed = method in fixed_methods and len(mine) == 1 and len(base) >= 2
        t_view = fixed_vs_seeds_t_test if fixed else paired_seed_test
        row = {"method": method, "baseline": baseline, **t_view(table, method, baseline, split=split)}
        if n_boot:
            row.update(_two_level_columns(mine, base, seeds, y, fixed, n_boot, random_state, delta, n_classes,
                                          metric))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("method").reset_index(drop=True) if rows else pd.DataFrame()


def _two_level_columns(mine: dict, base: dict, seeds: list, y, fixed: bool, n_boot: int, random_state,
                       delta: float | None, n_classes: int | None = None, metric="macro_f1") -> dict:
    nan = float("nan")
    out = {"tl_design": "too few seeds", "tl_seeds": 0, "tl_diff": nan, "tl_lo": nan, "tl_hi": nan, "tl_se": nan,
           "tl_p": nan,
           "tl_p_is_bound": False, "tl_n_boot": n_boot}
    if delta is not None:
        out.update({"tl_lo90": nan, "tl_hi90": nan, "p_below_claim": nan, "p_below_claim_is_bound": False,
                    "p_gain": nan, "p_gain_is_bound": False, "t_lo90": nan, "t_hi90": nan, "p_below_claim_t": nan,
                    "p_gain_t": nan, "lo90": nan, "hi90": nan, "verdict_bootstrap": "", "verdict_t": "",
                    "verdict": "", "includes_delta": False})
    own_splits = isinstance(y, dict)  # every seed with its own split: labels per seed (reference_test_set)
    if own_splits and len(seeds) >= 2:
        res = split_bootstrap([mine[s] for s in seeds], [base[s] for s in seeds], [y[s] for s in seeds],
                              n_boot=n_boot, random_state=random_state, return_replicates=True, n_classes=n_classes,
                              metric=metric)
        out["tl_design"] = "paired seeds, own splits"
    elif own_splits:
        return out
    elif fixed:
        res = fixed_vs_seeds_bootstrap(next(iter(mine.values())), [base[s] for s in sorted(base)], y, n_boot=n_boot,
                                       random_state=random_state, return_replicates=True, n_classes=n_classes,
                                       metric=metric)
        out["tl_design"] = "fixed vs baseline seeds"
    elif len(seeds) >= 2:
        res = two_level_bootstrap([mine[s] for s in seeds], [base[s] for s in seeds], y, n_boot=n_boot,
                                  random_state=random_state, return_replicates=True, n_classes=n_classes,
                                  metric=metric)
        out["tl_design"] = "paired seeds"
    else:
        return out
    out.update({"tl_seeds": res["seeds"], "tl_diff": res["diff"], "tl_lo": res["lo"], "tl_hi": res["hi"],
                "tl_se": res["se"], "tl_p": res["p"], "tl_p_is_bound": res["p_is_bound"]})
    if delta is not None:
        m, t, both = protocol_verdict(res, delta)
        out.update({"tl_lo90": m["lo"], "tl_hi90": m["hi"], **{k: m[k] for k in (
            "p_below_claim", "p_below_claim_is_bound", "p_gain", "p_gain_is_bound")},
            "lo90": both["lo"], "hi90": both["hi"], "verdict": both["verdict"],
            "verdict_bootstrap": both["verdict_bootstrap"], "verdict_t": both["verdict_t"],
            "includes_delta": both["includes_delta"]})
        if t is not None:
            out.update({"t_lo90": t["lo"], "t_hi90": t["hi"], "p_below_claim_t": t["p_below_claim"],
                        "p_gain_t": t["p_gain"]})
    return out


def compare_under_rules(runs: pd.DataFrame, method: str, rule: str, baseline: str, baseline_rule: str, *,
                        n_boot: int = 10_000, random_state: int = 0, delta: float | None = None) -> dict:
    """``method`` scored by ``rule`` against ``baseline`` scored by ``baseline_rule`` (e.g. each
    method's rule chosen on validation: PROTOCOL.md section 1, secondary): the two-level columns of
    ``compare_to_baseline`` (tl_*, and with ``delta`` the margin test of both views) over the seeds
    both ran, plus the t view over those seeds (diff, diff_lo, diff_hi, p_ttest)."""
    y, ids, n_classes = reference_test_set(runs, baseline)
    mine = load_primary_predictions(runs, method, ids, rule=rule)
    base = load_primary_predictions(runs, baseline, ids, rule=baseline_rule)
    seeds = sorted(set(mine) & set(base))
    out = {"method": method, "rule": rule, "baseline": baseline, "baseline_rule": baseline_rule,
           **paired_seed_test(runs, method, baseline, rule=rule, baseline_rule=baseline_rule)}
    out.update(_two_level_columns(mine, base, seeds, y, False, n_boot, random_state, delta, n_classes))
    return out


def verdict_sensitivity(runs: pd.DataFrame, method: str, baseline: str, *, rule: str | None = None,
                        baseline_rule: str | None = None, delta: float, n_boot: int = 10_000, random_state: int = 0,
                        repeats: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How firmly the margin verdict of ``method`` against ``baseline`` (each scored by its primary
    rule, or by ``rule`` / ``baseline_rule``; over the seeds both ran) stands: (its bootstrap
    re-drawn with ``repeats`` other RNG seeds, ``bootstrap_redraws``; every seed left out in turn,
    ``leave_one_seed_out``). Descriptions beside the verdict, not rules of the protocol."""
    y, ids, n_classes = reference_test_set(runs, baseline)
    mine = load_primary_predictions(runs, method, ids, rule=rule)
    base = load_primary_predictions(runs, baseline, ids, rule=baseline_rule)
    seeds = sorted(set(mine) & set(base))
    if len(seeds) < 2:
        raise ValueError(f"{method} against {baseline}: {len(seeds)} paired seed(s); a verdict needs 2 or more")
    if isinstance(y, dict):  # every seed with its own split: lists, one test set per seed
        a, b, y = [mine[s] for s in seeds], [base[s] for s in seeds], [y[s] for s in seeds]
    else:
        a, b = np.array([mine[s] for s in seeds]), np.array([base[s] for s in seeds])
    kw = {"n_boot": n_boot, "random_state": random_state, "n_classes": n_classes}
    return (bootstrap_redraws(a, b, y, delta, repeats=repeats, **kw),
            leave_one_seed_out(a, b, y, delta, seeds=seeds, **kw))
