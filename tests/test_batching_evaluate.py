"""Batching covers every sentence; the metrics agree with naive definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from lib.training.batching import TokenizedSplit, balanced_batches, collate, length_grouped_batches
from lib.evaluation.evaluate import (class_centroids, centroid_predict, classification_metrics, expected_calibration_error,
                          knn_predict, retrieval_metrics)


def test_length_grouped_batches_cover_every_index_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 100, size=1000)
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 15  # random batches would span ~90 tokens
    again = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=10)
    assert all((a == b).all() for a, b in zip(batches, again))


def test_balanced_batches_hold_p_classes_times_k():
    labels = np.repeat(np.arange(32), [5 + i for i in range(32)])
    batches = balanced_batches(labels, 32, 4, torch.Generator().manual_seed(0))
    assert len(batches) == len(labels) // 32
    for b in batches:
        counts = np.bincount(labels[b], minlength=32)
        assert len(b) == 32 and sorted(set(counts[counts > 0])) == [4] and (counts > 0).sum() == 8


def test_collate_pads_to_the_longest_in_batch():
    split = TokenizedSplit([np.array([1, 5, 2]), np.array([1, 2]), np.array([1, 6, 7, 8, 2])], np.array([0, 1, 0]), 0, 0)
    b = collate(split, np.array([0, 1]))
    assert b["input_ids"].tolist() == [[1, 5, 2], [1, 2, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    m = classification_metrics(y, p, ["a", "b", "c", "d"])
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["accuracy"] == pytest.approx((y == p).mean())
    assert np.array(m["confusion_matrix"]).sum() == 200 and m["per_class"]["a"]["support"] == (y == 0).sum()


def _naive_map_at_r(z, y):
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    aps, p1 = [], []
    for i in range(len(z)):
        sims = z @ z[i]
        sims[i] = -np.inf
        order = np.argsort(-sims, kind="stable")
        r = int((y == y[i]).sum() - 1)
        if r == 0:  # no other example of its class: left out of both metrics
            continue
        p1.append(float(y[order[0]] == y[i]))
        hits, total = 0, 0.0
        for rank in range(1, r + 1):
            if y[order[rank - 1]] == y[i]:
                hits += 1
                total += hits / rank
        aps.append(total / r)
    return np.mean(p1), np.mean(aps)


def test_precision_at_1_and_map_at_r_match_a_naive_loop():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 60)
    z = rng.normal(size=(60, 8)) + y[:, None] * 0.8
    got = retrieval_metrics(torch.tensor(z, dtype=torch.float32), y)
    p1, mapr = _naive_map_at_r(z.astype(np.float32), y)
    assert got["precision_at_1"] == pytest.approx(p1)
    assert got["map_at_r"] == pytest.approx(mapr, abs=1e-6)


def test_retrieval_metrics_match_pytorch_metric_learning_with_singleton_classes():
    """Class 4 has one example: it is no query for P@1 or MAP@R, in PML's AccuracyCalculator too."""
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    rng = np.random.default_rng(3)
    y = np.concatenate([rng.integers(0, 4, 59), [4]])
    z = rng.normal(size=(60, 8)) + y[:, None] * 0.6
    got = retrieval_metrics(torch.tensor(z, dtype=torch.float32), y)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              knn_func=CustomKNN(CosineSimilarity()))
    zt, yt = torch.tensor(z, dtype=torch.float32), torch.tensor(y)
    ref = calc.get_accuracy(zt, yt)  # query = reference: leave-one-out
    assert got["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert got["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


def test_perfect_clusters_give_map_at_r_one_and_perfect_predictions():
    y = np.repeat(np.arange(3), 10)
    z = torch.eye(3)[y] + 0.01 * torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    assert retrieval_metrics(z, y)["map_at_r"] == pytest.approx(1.0)
    assert (centroid_predict(class_centroids(z, y, 3), z) == y).all()
    assert (knn_predict(z, y, z, 5, 3) == y).all()


def test_knn_majority_vote():
    train = torch.tensor([[1.0, 0], [0.9, 0.1], [0.8, 0.2], [0, 1.0]])
    train_y = np.array([0, 0, 1, 1])
    assert knn_predict(train, train_y, torch.tensor([[1.0, 0.05]]), 3, 2).tolist() == [0]


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    y = np.array([0] * 8 + [1] * 2)
    calibrated = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(calibrated, y) == pytest.approx(0.0)
    over = np.tile([0.99, 0.01], (10, 1))
    assert expected_calibration_error(over, 1 - y) == pytest.approx(0.99 - 0.2)
