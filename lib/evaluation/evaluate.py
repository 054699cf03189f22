"""Metrics: classification per prediction rule, embedding quality, calibration."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, silhouette_score

RULES = ("head", "centroid", "knn", "arcface")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    labels = np.arange(len(class_names))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(np.mean(y_true == y_pred)),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(class_names)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1)


def class_centroids(train_emb: torch.Tensor, train_y: np.ndarray, num_classes: int) -> torch.Tensor:
    """Mean of the normalised training embeddings of each class (cosine geometry)."""
    z = _normalise(train_emb)
    y = torch.as_tensor(np.array(train_y, dtype=np.int64))
    cent = torch.zeros(num_classes, z.shape[1]).index_add_(0, y, z)
    return _normalise(cent / torch.bincount(y, minlength=num_classes).clamp(min=1).unsqueeze(1))


def centroid_predict(centroids: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
    return (_normalise(emb) @ centroids.T).argmax(1).numpy()


def knn_predict(train_emb: torch.Tensor, train_y: np.ndarray, emb: torch.Tensor, k: int, num_classes: int,
                chunk: int = 1024) -> np.ndarray:
    """Cosine k-NN majority vote; ties go to the class with the larger summed similarity."""
    zt, y = _normalise(train_emb), torch.as_tensor(np.array(train_y, dtype=np.int64))
    k = min(k, len(zt))
    out = []
    for start in range(0, len(emb), chunk):
        sims = _normalise(emb[start:start + chunk]) @ zt.T
        top, idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(top), num_classes).scatter_add_(1, y[idx], torch.ones_like(top))
        sim_sum = torch.zeros(len(top), num_classes, dtype=top.dtype).scatter_add_(1, y[idx], top)
        out.append((votes + sim_sum / (k + 1)).argmax(1))  # sim_sum/(k+1) < 1: only breaks ties
    return torch.cat(out).numpy()


def retrieval_metrics(emb: torch.Tensor, y: np.ndarray) -> dict:
    """Precision@1 and MAP@R (Musgrave et al. 2020), leave-one-out within one split, cosine.

    Queries whose class has no other example in the split are left out of both.
    """
    z = _normalise(emb)
    yt = torch.as_tensor(np.array(y, dtype=np.int64))
    n = len(z)
    counts = torch.bincount(yt)
    r_all = counts[yt] - 1  # same-class items other than the query
    max_r = int(r_all.max()) if n else 0
    p1, ap = [], []
    for start in range(0, n, 512):
        sims = z[start:start + 512] @ z.T
        rows = torch.arange(start, min(start + 512, n))
        sims[torch.arange(len(rows)), rows] = -float("inf")  # never retrieve the query itself
        order = sims.topk(max(max_r, 1), dim=1).indices
        rel = (yt[order] == yt[rows].unsqueeze(1)).float()
        r = r_all[rows]
        # A query whose class has no other example cannot be answered: left out of P@1 (as of
        # MAP@R here and pytorch-metric-learning's AccuracyCalculator), not counted a miss.
        p1.append(torch.where(r > 0, rel[:, 0], torch.nan))
        ranks = torch.arange(1, rel.shape[1] + 1).float()
        within_r = (ranks.unsqueeze(0) <= r.unsqueeze(1)).float()
        prec = rel.cumsum(1) / ranks
        ap.append(torch.where(r > 0, (prec * rel * within_r).sum(1) / r.clamp(min=1), torch.nan))
    ap = torch.cat(ap)
    p1 = torch.cat(p1).numpy()
    if not (~np.isnan(p1)).any():
        return {"precision_at_1": float("nan"), "map_at_r": float("nan")}
    return {"precision_at_1": float(np.nanmean(p1)), "map_at_r": float(np.nanmean(ap.numpy()))}


def silhouette_cosine(emb: torch.Tensor, y: np.ndarray, max_n: int = 5000, seed: int = 0) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    sample = min(max_n, len(y))
    return float(silhouette_score(emb.float().numpy(), y, metric="cosine", sample_size=sample, random_state=seed))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Equal-width confidence bins; weighted |accuracy - confidence|."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)
