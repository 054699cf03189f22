"""Paired bootstraps of "method minus baseline" on test predictions: seeds x test sentences.

``two_level_bootstrap`` / ``fixed_vs_seeds_bootstrap`` resample seeds and, within each replicate,
test sentences: inference about the training procedure on the population of sentences the test
set was drawn from, the view that matches a claim such as "loss X beats CE". ``resample=
'sentences'`` (these trained models) and ``'seeds'`` (test set fixed) give the other two views.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

# Metrics are computed from weighted per-class counts, so that thousands of replicates cost a few
# matrix products: a sentence resample is a vector of multiplicities w (w_j = how often sentence j
# was drawn), and every count a metric needs is w @ (0/1 indicator matrix).

CountMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def macro_f1_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro-F1 from per-class counts (last axis = classes; leading axes broadcast).

    F1_c = 2 tp_c / (support_c + predicted_c), and 0 where support_c + predicted_c = 0; the mean runs
    over **every** class of the last axis: the runs' ``f1_score(labels=arange(C), zero_division=0)``
    on every resample. A fixed class set keeps a difference fair: a class that a resample leaves out
    counts 0 for every method alike, whereas dropping it only for the methods that never predict it
    (sklearn's default labels) would favour them over the methods that do.
    """
    tp, support, predicted = np.broadcast_arrays(tp, support, predicted)
    denom = support + predicted
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(denom.shape, dtype=float), where=denom > 0)
    return f1.mean(-1)


def accuracy_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Accuracy from per-class counts: sum(tp) / sum(support)."""
    tp, support = np.broadcast_arrays(tp, support)
    return tp.sum(-1) / np.maximum(support.sum(-1), 1e-300)


METRICS: dict[str, CountMetric] = {"macro_f1": macro_f1_counts, "accuracy": accuracy_counts}


def _metric_fn(metric: str | CountMetric) -> CountMetric:
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(METRICS)} or a function "
                         "f(tp, support, predicted) of per-class counts")
    return METRICS[metric]


def _as_seeds(preds, n: int, what: str) -> np.ndarray:
    arr = np.asarray(preds)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n:
        raise ValueError(f"{what}: expected (seeds, {n}) predictions, got shape {np.shape(preds)}")
    return arr.astype(np.int64, copy=False)


def _count_matrix(y: np.ndarray, groups: list[np.ndarray], k: int) -> np.ndarray:
    """(n, k + sum_g 2 S_g k) 0/1 matrix: one-hot y, then per group and seed one-hot predictions,
    then per group and seed one-hot correct predictions."""
    n = len(y)
    rows = np.arange(n)
    total = k + sum(2 * g.shape[0] * k for g in groups)
    # float32 products are exact while every count stays below 2**24
    m = np.zeros((n, total), dtype=np.float32 if n < 2 ** 24 else np.float64)
    m[rows, y] = 1
    off = k
    for g in groups:
        for s in range(g.shape[0]):
            m[rows, off + g[s]] = 1
            m[rows[g[s] == y], off + g.shape[0] * k + y[g[s] == y]] = 1
            off += k
        off += g.shape[0] * k
    return m


def _metric_per_seed(weights: np.ndarray, m: np.ndarray, groups: list[np.ndarray], k: int,
                     fn: CountMetric) -> list[np.ndarray]:
    """Metric of every seed of every group under each row of sentence weights: [(R, S_g)]."""
    counts = (weights @ m).astype(np.float64)  # exact: integer counts below 2**24
    r = counts.shape[0]
    support = counts[:, None, :k]
    out, off = [], k
    for g in groups:
        s = g.shape[0]
        predicted = counts[:, off:off + s * k].reshape(r, s, k)
        tp = counts[:, off + s * k:off + 2 * s * k].reshape(r, s, k)
        out.append(np.asarray(fn(tp, support, predicted), dtype=float).reshape(r, s))
        off += 2 * s * k
    return out


def order_interval(sorted_reps: np.ndarray, level: float) -> tuple[float, float]:
    """[D_(k), D_(B+1-k)], k = ceil(B (1 - level) / 2) (1-based order statistics, no interpolation).

    With this choice "lo > c" is exactly "#{D <= c} / B < (1 - level) / 2" and "hi < c" is exactly
    "#{D >= c} / B < (1 - level) / 2", so intervals and bootstrap p-values never disagree."""
    b = len(sorted_reps)
    k = max(1, math.ceil(round(b * (1 - level) / 2, 9)))
    return float(sorted_reps[k - 1]), float(sorted_reps[b - k])


def tail_p(count: int, n_boot: int, sides: int) -> tuple[float, bool]:
    """sides * count / B, capped at 1; with count 0 the resolution sides / B and a flag (p < that)."""
    if count == 0:
        return sides / n_boot, True
    return min(1.0, sides * count / n_boot), False


RESAMPLE = ("seeds+sentences", "sentences", "seeds")
# What an interval from each resampling scheme is over (for tables and protocol text).
OVER = {"seeds+sentences": "seeds and test sentences resampled: the training procedure",
        "sentences": "test sentences resampled, seeds fixed: these trained models",
        "seeds": "seeds resampled, test set fixed: the procedure on this test set"}


def _bootstrap(a: np.ndarray, b: np.ndarray, y: np.ndarray, *, b_fixed: bool, metric, n_boot: int,
               level: float, resample: str, random_state, chunk: int, return_replicates: bool,
               n_classes: int | None = None) -> dict:
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {RESAMPLE}, got {resample!r}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError("need 0 < level < 1 and n_boot >= 1")
    fn = _metric_fn(metric)
    y = np.asarray(y, dtype=np.int64)
    n, s = len(y), a.shape[0]
    if "seeds" in resample and s < 2:
        raise ValueError(f"resampling seeds needs at least 2 seeds, got {s}; use resample='sentences' "
                         "(inference about these trained models only)")
    k = int(max(y.max(), a.max(), b.max())) + 1
    if n_classes is not None:
        if n_classes < k:
            raise ValueError(f"n_classes={n_classes}, but labels or predictions go up to {k - 1}")
        k = n_classes
    if min(y.min(), a.min(), b.min()) < 0:
        raise ValueError("labels and predictions must be non-negative class indices")
    m = _count_matrix(y, [a, b], k)
    full_a, full_b = _metric_per_seed(np.ones((1, n), dtype=m.dtype), m, [a, b], k, fn)
    per_seed = full_a[0] - full_b[0] if not b_fixed else full_a[0] - full_b[0, 0]
    observed = float(full_a[0].mean() - full_b[0].mean())
    rng = np.random.default_rng(random_state)
    if "seeds" in resample:  # paired: one draw of seed indices serves both methods
        draws = rng.integers(0, s, (n_boot, s))
        seed_w = np.bincount((draws + s * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * s)
        seed_w = seed_w.reshape(n_boot, s) / s
    else:
        seed_w = np.full((n_boot, s), 1.0 / s)
    reps = np.empty(n_boot)
    if "sentences" in resample:  # one draw of sentences serves every seed and both methods
        chunk = max(1, min(chunk, 2_500_000 // n))  # bounded memory: about 40 MB of indices per chunk
        for start in range(0, n_boot, chunk):
            r = min(chunk, n_boot - start)
            idx = rng.integers(0, n, (r, n))
            w = np.bincount((idx + n * np.arange(r)[:, None]).ravel(), minlength=r * n)
            ma, mb = _metric_per_seed(w.reshape(r, n).astype(m.dtype), m, [a, b], k, fn)
            sw = seed_w[start:start + r]
            reps[start:start + r] = (sw * ma).sum(1) - (mb[:, 0] if b_fixed else (sw * mb).sum(1))
    else:
        reps[:] = seed_w @ full_a[0] - (full_b[0, 0] if b_fixed else seed_w @ full_b[0])
    return _result(reps, observed, per_seed, level=level, seeds=s, sentences=n, resample=resample,
                   return_replicates=return_replicates)


def _result(reps: np.ndarray, observed: float, per_seed: np.ndarray, *, level: float, seeds: int, sentences,
            resample: str, return_replicates: bool, over: str | None = None) -> dict:
    """The returned dict of every bootstrap here, from its replicates (see ``two_level_bootstrap``)."""
    n_boot = len(reps)
    srt = np.sort(reps)
    lo, hi = order_interval(srt, level)
    n_le, n_ge = int(np.searchsorted(srt, 0, "right")), int(n_boot - np.searchsorted(srt, 0, "left"))
    p, bound = tail_p(min(n_le, n_ge), n_boot, 2)
    out = {"diff": observed, "lo": lo, "hi": hi, "level": level, "p": p, "p_is_bound": bound,
           "se": float(reps.std(ddof=1)) if n_boot > 1 else float("nan"), "n_boot": n_boot,
           "seeds": seeds, "sentences": sentences, "resample": resample, "over": over or OVER[resample],
           "per_seed_diff": per_seed}
    if return_replicates:
        out["replicates"] = reps
    return out


def two_level_bootstrap(preds_a, preds_b, y, *, metric: str | CountMetric = "macro_f1", n_boot: int = 10_000,
                        level: float = 0.95, resample: str = "seeds+sentences", random_state=0, chunk: int = 500,
                        return_replicates: bool = False, n_classes: int | None = None) -> dict:
    """Paired two-level bootstrap of (mean over seeds of metric of a) - (same for b).

    ``preds_a``, ``preds_b``: (S, n) predictions, row s of both from the same seed s (same data
    order and initialisation: the pairing); ``y``: the n test labels (one test set, shared).
    Different numbers of seeds raise ValueError: the design is paired, and unpaired seeds are not
    something this function guesses how to treat.

    Each of ``n_boot`` replicates (i) draws S seed indices with replacement, the same for a and b,
    (ii) draws n test-sentence indices with replacement, the same for every drawn seed and both
    methods, (iii) recomputes the metric of every drawn seed on those sentences and takes
    mean_a - mean_b over the drawn seeds. ``resample='sentences'`` skips (i) (the original view:
    these trained models), ``'seeds'`` skips (ii) (test set fixed).

    Returns a dict:
      diff          point estimate: mean over seeds of per-seed differences on the full test set
      lo, hi        percentile interval at ``level`` over the replicates: order statistics
                    D_(k), D_(B+1-k) with k = ceil(B (1 - level) / 2), no interpolation
      p, p_is_bound two-sided p = 2 min(#{D <= 0}, #{D >= 0}) / B (capped at 1); p < 1 - level
                    exactly when 0 is outside [lo, hi]. When no replicate reaches 0 the estimate
                    would be 0: p is then 2/B and ``p_is_bound`` is True, read "p < 2/B"
                    (``format_p``)
      se            standard deviation of the replicates
      n_boot, seeds, sentences, resample, level
      over          what the interval is over, in words (``OVER[resample]``)
      per_seed_diff (S,) per-seed differences on the full test set (input to the t view)
      replicates    the B replicate differences (only with ``return_replicates``; for margin_test)

    The interval is over seeds and test sentences: the training procedure, on sentences like
    these. Measured coverage of the 95% interval (simulated studies, 5 seeds x 300-480 sentences,
    seed effects + shared sentence effects + per-seed sentence noise): 0.93-0.97 when seed and
    sentence variation are comparable (0.943 in tests/test_stats.py, where the sentence-only
    interval covers 0.72; size 0.047 at alpha 0.05); up to 0.99 (conservative) when per-seed
    sentence noise dominates, since that seed-by-sentence term enters both levels; about 0.87
    when true seed variation dominates with 5 seeds (a percentile bootstrap of 5 values is too
    narrow; 0.84 at 5 and 0.90 at 10 seeds in a more extreme regime of ``tests/test_stats.py``,
    where ``margin_test_both``, the protocol's verdict interval, makes up for it).
    ``metric``: "macro_f1" (default), "accuracy", or f(tp, support, predicted) -> metric over the
    last (class) axis of weighted per-class counts. ``n_classes``: the data set's class count C (the
    class set of macro-F1); default the largest label or prediction + 1, which is C whenever the
    test set holds the last class.
    """
    y = np.asarray(y)
    a, b = _as_seeds(preds_a, len(y), "preds_a"), _as_seeds(preds_b, len(y), "preds_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired design: {a.shape[0]} seeds of a against {b.shape[0]} of b; compare "
                         "the seeds both methods ran (seed k of each shares data order and "
                         "initialisation), or use fixed_vs_seeds_bootstrap for a deterministic method")
    return _bootstrap(a, b, y, b_fixed=False, metric=metric, n_boot=n_boot, level=level, resample=resample,
                      random_state=random_state, chunk=chunk, return_replicates=return_replicates,
                      n_classes=n_classes)


def fixed_vs_seeds_bootstrap(fixed_pred, preds, y, *, metric: str | CountMetric = "macro_f1",
                             n_boot: int = 10_000, level: float = 0.95, resample: str = "seeds+sentences",
                             random_state=0, chunk: int = 500, return_replicates: bool = False,
                             n_classes: int | None = None) -> dict:
    """A deterministic method (one prediction vector, e.g. TF-IDF + LR) against the mean over
    seeds of a multi-seed method (e.g. CE): diff = metric(fixed) - mean_s metric(preds_s).

    Same replicates as ``two_level_bootstrap``: seeds of the multi-seed method are resampled, the
    fixed predictions stay fixed across seed draws, and test sentences are resampled jointly for
    both. Same returned dict (``seeds`` = seeds of the multi-seed method). Compare with the mean
    over the baseline's seeds, never with its seed 0 alone.
    """
    y = np.asarray(y)
    fixed = np.asarray(fixed_pred)
    if fixed.ndim != 1:
        raise ValueError("fixed_pred: one prediction vector (a deterministic method has one run)")
    a, b = _as_seeds(fixed, len(y), "fixed_pred"), _as_seeds(preds, len(y), "preds")
    res = _bootstrap(b, a, y, b_fixed=True, metric=metric, n_boot=n_boot, level=level, resample=resample,
                     random_state=random_state, chunk=chunk, return_replicates=True, n_classes=n_classes)
    # computed as seeds - fixed; flip the sign (order statistics and tail counts flip exactly)
    res.update(diff=-res["diff"], lo=-res["hi"], hi=-res["lo"], per_seed_diff=-res["per_seed_diff"])
    res["replicates"] = -res["replicates"]
    if not return_replicates:
        del res["replicates"]
    return res



# What an interval of ``split_bootstrap`` is over: each seed trained and tested on its own split.
OVER_SPLITS = {"seeds+sentences": "seeds (each with its own split) and each split's test sentences resampled: "
                                  "the training procedure over splits of the pool",
               "sentences": "each split's test sentences resampled, seeds fixed: these trained models",
               "seeds": "seeds (each with its own split) resampled, their test sets as they are"}


def split_bootstrap(preds_a, preds_b, ys, *, metric: str | CountMetric = "macro_f1", n_boot: int = 10_000,
                    level: float = 0.95, resample: str = "seeds+sentences", random_state=0, chunk: int = 500,
                    return_replicates: bool = False, n_classes: int | None = None) -> dict:
    """``two_level_bootstrap`` where every seed has a test set of its own (a design that redraws the
    split per seed, so that the test sentences no longer put a floor under the standard error).

    ``preds_a[s]``, ``preds_b[s]``: seed s's predictions of both methods on its test set, whose labels
    are ``ys[s]`` (sizes may differ). Each replicate draws S seeds with replacement (the same for a and
    b) and, for every drawn seed, a resample of that seed's own test sentences, drawn afresh for each
    time the seed is drawn (a two-stage cluster bootstrap: the splits are the clusters); the replicate is
    the mean over the drawn seeds of metric(a) - metric(b). ``resample='sentences'`` keeps every seed
    once, ``'seeds'`` keeps each test set as it is. Returns ``two_level_bootstrap``'s dict, with
    ``sentences`` the test-set sizes (a list, one per seed).

    Conservative by design: splits are independent clusters, so the seed-level draw already carries each
    split's sentence noise (it is inside that seed's difference) and the second stage adds it again; the
    SE is up to sqrt(2) times the procedure's where sentence noise dominates (tests/test_split_bootstrap.py).
    ``'seeds'`` and the t over seeds estimate the procedure's spread given the pool the splits are drawn
    from, and leave out what that pool itself shares (results/study2-design/power.md)."""
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {RESAMPLE}, got {resample!r}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError("need 0 < level < 1 and n_boot >= 1")
    ys = [np.asarray(y, dtype=np.int64) for y in ys]
    s = len(ys)
    if not (len(preds_a) == len(preds_b) == s) or s == 0:
        raise ValueError(f"paired design: {len(preds_a)} and {len(preds_b)} seeds of predictions against {s} test "
                         "sets; give seed k's predictions of both methods on seed k's test set")
    a = [_as_seeds(p, len(y), f"preds_a[{i}]")[0] for i, (p, y) in enumerate(zip(preds_a, ys))]
    b = [_as_seeds(p, len(y), f"preds_b[{i}]")[0] for i, (p, y) in enumerate(zip(preds_b, ys))]
    if "seeds" in resample and s < 2:
        raise ValueError(f"resampling seeds needs at least 2 seeds, got {s}; use resample='sentences'")
    if min(min(y.min(), x.min(), z.min()) for y, x, z in zip(ys, a, b)) < 0:
        raise ValueError("labels and predictions must be non-negative class indices")
    k = int(max(max(y.max(), x.max(), z.max()) for y, x, z in zip(ys, a, b))) + 1
    if n_classes is not None:
        if n_classes < k:
            raise ValueError(f"n_classes={n_classes}, but labels or predictions go up to {k - 1}")
        k = n_classes
    fn = _metric_fn(metric)
    groups = [[x[None, :], z[None, :]] for x, z in zip(a, b)]
    mats = [_count_matrix(y, g, k) for y, g in zip(ys, groups)]

    def diffs(i: int, weights: np.ndarray) -> np.ndarray:  # seed i's metric(a) - metric(b) under each weight row
        ma, mb = _metric_per_seed(weights.astype(mats[i].dtype), mats[i], groups[i], k, fn)
        return ma[:, 0] - mb[:, 0]

    per_seed = np.array([diffs(i, np.ones((1, len(y))))[0] for i, y in enumerate(ys)])
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, s, (n_boot, s)) if "seeds" in resample else np.tile(np.arange(s), (n_boot, 1))
    if "sentences" not in resample:
        reps = per_seed[draws].mean(1)
    else:
        reps = np.zeros(n_boot)
        for slot in range(s):  # each drawn seed gets its own sentence resample, also when drawn twice
            for i, y in enumerate(ys):
                rows = np.flatnonzero(draws[:, slot] == i)
                n = len(y)
                step = max(1, min(chunk, 2_500_000 // n))
                for start in range(0, len(rows), step):
                    part = rows[start:start + step]
                    idx = rng.integers(0, n, (len(part), n))
                    w = np.bincount((idx + n * np.arange(len(part))[:, None]).ravel(), minlength=len(part) * n)
                    reps[part] += diffs(i, w.reshape(len(part), n)) / s
    return _result(reps, float(per_seed.mean()), per_seed, level=level, seeds=s, sentences=[len(y) for y in ys],
                   resample=resample, return_replicates=return_replicates, over=OVER_SPLITS[resample])
