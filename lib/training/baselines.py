"""Loss-free reference methods, through the same data, metrics and run-folder layout.

* ``tfidf-lr``: TF-IDF + logistic regression (character n-grams for Korean; word and
  character n-grams for English).
* ``encoder-lr``: the frozen encoder's mean-pooled, L2-normalised vectors + logistic
  regression, reusing the frozen-encoder feature cache.

The regularisation strength C is chosen on the validation split only. Given the run folder, the
out-of-domain sets of the run (``prep.ood``) are scored too, by the same fitted model
(``lib.training.out_of_domain.write_set``: rule ``head``, the only one a baseline has).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_union

from lib.evaluation.evaluate import classification_metrics, expected_calibration_error, retrieval_metrics, silhouette_cosine
from lib.training.features import pooled_features
from lib.training.out_of_domain import PREFIX, write_set
from lib.model.network import EmotionModel

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def tfidf_vectorizer(language: str):
    if language == "ko":  # Korean words inflect heavily: character n-grams carry the signal
        return TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True, min_df=2)
    return make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                      TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))


def fit_lr_on_validation(x_train, y_train, x_valid, y_valid, seed: int):
    """Logistic regression with C picked by validation macro-F1 (ties: smaller C)."""
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(x_train, y_train)
        score = f1_score(y_valid, model.predict(x_valid), average="macro")
        if best is None or score > best[0]:
            best = (score, c, model)
    return best[2], best[1]


def run_baseline(cfg, prep, run=None) -> tuple[dict, torch.Tensor | None, pd.DataFrame]:
    """Returns (metrics, test embeddings or None, test predictions frame). With ``run`` (the RunDir
    under construction) each out-of-domain set of ``prep.ood`` is scored into ``run``'s ``ood/<name>/``
    and summarised under ``out_of_domain`` in the metrics, as a fine-tuned run does."""
    bundle = prep.bundle
    t0 = time.perf_counter()
    y = {s: bundle.split(s)["label"].to_numpy() for s in ("train", "valid", "test")}
    sets = list(prep.ood) if run is not None else []
    if cfg.method == "tfidf-lr":
        vec = tfidf_vectorizer(bundle.language)
        x = {"train": vec.fit_transform(bundle.train["text"])}
        x.update({s: vec.transform(bundle.split(s)["text"]) for s in ("valid", "test")})
        x.update({PREFIX + o.name: vec.transform(o.frame["text"]) for o in sets})
    else:
        model = EmotionModel(prep.encoder, prep.encoder.config.hidden_size, bundle.num_classes)
        x = {s: torch.nn.functional.normalize(
            pooled_features(model, prep.encoder_name, prep.tokens[s], cfg, torch.device("cpu")), dim=1).numpy()
            for s in ("train", "valid", "test", *(PREFIX + o.name for o in sets))}
    lr, c = fit_lr_on_validation(x["train"], y["train"], x["valid"], y["valid"], cfg.seed)
    metrics = {"method": cfg.method, "primary_rule": "head", "rules": ["head"], "loss": None,
               "chosen_C": c, "C_grid": list(C_GRID)}
    for split in ("valid", "test"):
        probs = lr.predict_proba(x[split])
        pred = probs.argmax(1)
        metrics[split] = {"head": classification_metrics(y[split], pred, bundle.class_names)}
        metrics[split]["head"]["ece"] = expected_calibration_error(probs, y[split])
    test_probs = lr.predict_proba(x["test"])
    frame = pd.DataFrame({"id": bundle.test["id"].to_numpy(), "label": y["test"], "pred_head": test_probs.argmax(1),
                          "head_confidence": test_probs.max(1)})
    emb = None
    if cfg.method == "encoder-lr":
        emb = torch.from_numpy(x["test"])
        metrics["embedding_test"] = dict(retrieval_metrics(emb, y["test"]),
                                         silhouette_cosine=silhouette_cosine(emb, y["test"], seed=cfg.seed))
    metrics["test_macro_f1"] = metrics["test"]["head"]["macro_f1"]
    metrics["test_accuracy"] = metrics["test"]["head"]["accuracy"]
    metrics["valid_macro_f1"] = metrics["valid"]["head"]["macro_f1"]
    metrics["timings"] = {"fit_seconds": time.perf_counter() - t0, "load_seconds": prep.load_seconds}
    if sets:  # the fitted model on each set (encoder-lr encoded them with the splits)
        metrics["out_of_domain"] = {o.name: _score_set(run, o, lr, x[PREFIX + o.name]) for o in sets}
    return metrics, emb, frame


def _score_set(run, s, lr, x) -> dict:
    """One out-of-domain set through the fitted logistic regression (rule ``head``)."""
    probs = lr.predict_proba(x)
    return write_set(run, s, {"head": probs.argmax(1)}, "head", ["head"], probs.max(1))
