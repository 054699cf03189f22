"""The two-stage bootstrap of a design in which every seed has a split of its own (split_bootstrap): against a
naive loop with sklearn, against two_level_bootstrap where the test sets coincide, and its coverage."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from lib.evaluation.bootstrap import split_bootstrap, two_level_bootstrap


def _study(rng, seeds: int, n: int, k: int = 3, gain: float = 0.0, shared_y=None):
    """Per seed: a test set of n labels (its own, unless ``shared_y``) and two methods' predictions, b right
    with probability 0.6 and a with 0.6 + gain (each row independently)."""
    ys, a, b = [], [], []
    for _ in range(seeds):
        y = shared_y if shared_y is not None else rng.integers(0, k, n)
        ys.append(y)
        for out, p in ((a, 0.6 + gain), (b, 0.6)):
            out.append(np.where(rng.random(len(y)) < p, y, rng.integers(0, k, len(y))))
    return ys, a, b


def _naive(a, b, ys, n_boot, random_state, k, resample="seeds+sentences"):
    """The same replicates, one at a time with sklearn, consuming the generator in split_bootstrap's order."""
    rng = np.random.default_rng(random_state)
    s = len(ys)
    draws = rng.integers(0, s, (n_boot, s)) if "seeds" in resample else np.tile(np.arange(s), (n_boot, 1))
    f1 = lambda y, p: f1_score(y, p, labels=list(range(k)), average="macro", zero_division=0)  # noqa: E731
    reps = np.zeros(n_boot)
    for slot in range(s):
        for i, y in enumerate(ys):
            rows = np.flatnonzero(draws[:, slot] == i)
            idx = rng.integers(0, len(y), (len(rows), len(y)))
            for r, sample in zip(rows, idx):
                reps[r] += (f1(y[sample], a[i][sample]) - f1(y[sample], b[i][sample])) / s
    return reps


def test_each_replicate_is_the_naive_two_stage_resample():
    rng = np.random.default_rng(1)
    ys, a, b = _study(rng, seeds=4, n=50, gain=0.1)
    ys[2], a[2], b[2] = ys[2][:37], a[2][:37], b[2][:37]  # test sets of different sizes are allowed
    res = split_bootstrap(a, b, ys, n_boot=120, random_state=5, return_replicates=True, n_classes=3)
    assert np.allclose(res["replicates"], _naive(a, b, ys, 120, 5, 3), atol=1e-12)
    per_seed = [f1_score(y, x, average="macro") - f1_score(y, z, average="macro") for y, x, z in zip(ys, a, b)]
    assert res["per_seed_diff"] == pytest.approx(per_seed) and res["diff"] == pytest.approx(np.mean(per_seed))
    assert res["sentences"] == [50, 50, 37, 50] and res["seeds"] == 4 and "own split" in res["over"]
    sentences_only = split_bootstrap(a, b, ys, n_boot=60, resample="sentences", random_state=2,
                                     return_replicates=True, n_classes=3)
    assert np.allclose(sentences_only["replicates"], _naive(a, b, ys, 60, 2, 3, resample="sentences"), atol=1e-12)


def test_with_one_shared_test_set_the_seed_level_is_the_two_level_bootstraps():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 80)
    ys, a, b = _study(rng, seeds=5, n=80, shared_y=y)
    ours = split_bootstrap(a, b, ys, n_boot=400, resample="seeds", random_state=3, return_replicates=True)
    theirs = two_level_bootstrap(a, b, y, n_boot=400, resample="seeds", random_state=3, return_replicates=True)
    assert np.allclose(ours["replicates"], theirs["replicates"]) and ours["diff"] == pytest.approx(theirs["diff"])
    assert (ours["lo"], ours["hi"], ours["p"]) == pytest.approx((theirs["lo"], theirs["hi"], theirs["p"]))


def test_the_95_percent_interval_covers_the_true_difference_of_the_procedure():
    """Studies of 8 seeds, each on its own test set of 150 sentences from one population, where a is right
    more often than b by 0.1 (truth: the expected per-seed difference, from a very large test set)."""
    rng = np.random.default_rng(3)
    big_ys, big_a, big_b = _study(rng, seeds=1, n=200_000, gain=0.1)
    truth = f1_score(big_ys[0], big_a[0], average="macro") - f1_score(big_ys[0], big_b[0], average="macro")
    hits, runs = 0, 120
    for _ in range(runs):
        ys, a, b = _study(rng, seeds=8, n=150, gain=0.1)
        res = split_bootstrap(a, b, ys, n_boot=400, random_state=int(rng.integers(1 << 30)), n_classes=3)
        hits += res["lo"] <= truth <= res["hi"]
    assert 0.88 <= hits / runs <= 0.995, hits / runs


def test_unpaired_or_malformed_inputs_are_refused():
    rng = np.random.default_rng(4)
    ys, a, b = _study(rng, seeds=3, n=20)
    with pytest.raises(ValueError, match="paired design"):
        split_bootstrap(a[:2], b, ys, n_boot=10)
    with pytest.raises(ValueError, match=r"preds_b\[1\]: expected \(seeds, 20\)"):
        split_bootstrap(a, [b[0], b[1][:5], b[2]], ys, n_boot=10)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        split_bootstrap(a[:1], b[:1], ys[:1], n_boot=10)
    assert split_bootstrap(a[:1], b[:1], ys[:1], n_boot=10, resample="sentences")["seeds"] == 1


def test_the_two_stage_bootstrap_counts_each_splits_sentence_noise_twice():
    """Splits are independent clusters: the seeds-only resample already holds each split's sentence noise (it
    is inside that seed's difference), and the second stage adds it again. With sentence noise alone (no
    seed effect) the two-stage SE is about sqrt(2) times the seeds-only one: conservative by up to that."""
    rng = np.random.default_rng(6)
    ys, a, b = _study(rng, seeds=40, n=300, gain=0.05)
    two = split_bootstrap(a, b, ys, n_boot=2000, random_state=1)["se"]
    seeds_only = split_bootstrap(a, b, ys, n_boot=2000, random_state=1, resample="seeds")["se"]
    assert 1.25 < two / seeds_only < 1.6, two / seeds_only
