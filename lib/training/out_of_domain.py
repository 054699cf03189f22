"""Score a finished run on out-of-domain sets (lib.data.out_of_domain), once, with every prediction rule.

The sets are loaded and tokenised in ``prepare`` (a bad file fails before anything is written) and
ride along with the splits as ``ood:<name>`` token entries, so a frozen-encoder run caches their
encoder outputs like the splits'. After the final evaluation (best epoch restored) each set is
scored and written to ``ood/<name>/metrics.json`` and ``ood/<name>/predictions.csv`` of the run
folder under construction: a failed run publishes none of them. ``write_set`` writes one set's
files from predictions, for fine-tuned runs (``score_sets``) and for the loss-free baselines
(``lib.training.baselines.run_baseline``, given its run folder by ``run_experiment``).
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from lib.data.out_of_domain import SCORING_NOTE, OutOfDomainSet, load_out_of_domain
from lib.training.batching import TokenizedSplit, tokenize
from lib.training.results import write_csv, write_json

PREFIX = "ood:"


def load_sets(cfg, bundle) -> list[OutOfDomainSet]:
    """The sets of ``cfg.ood`` (none when unset), labelled with ``bundle``'s classes."""
    if not cfg.ood:
        return []
    sets = load_out_of_domain(cfg.ood, bundle, text_column=cfg.text_column, label_column=cfg.label_column)
    for s in sets:  # scored all the same (the numbers are the run's), but the reader is told at once
        shared = {split: s.notes[f"texts_in_{split}_split"] for split in ("training", "validation", "test")}
        if any(shared.values()):
            print(f"warning: out-of-domain set {s.name}: "
                  f"{', '.join(f'{n} row(s) whose text is also in the {split} split' for split, n in shared.items() if n)} "
                  f"of {bundle.name} (ood/{s.name}/metrics.json notes them): not wholly out of domain",
                  file=sys.stderr)
    return sets


def tokenize_sets(sets: list[OutOfDomainSet], tokenizer, cfg, prefix: str = "") -> dict[str, TokenizedSplit]:
    return {PREFIX + s.name: tokenize(tokenizer, s.frame["text"].tolist(), s.frame["label"].to_numpy(),
                                      cfg.max_length, prefix) for s in sets}


def shared_class_metrics(y_true, y_pred, class_names: list[str], shared: list[int]) -> dict:
    """Macro-F1 over the ``shared`` classes only. Every row's true class is shared; a prediction of
    another class is a miss for the row's class and a false positive for none."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=shared, zero_division=0)
    return {
        "macro_f1": float(f1_score(y_true, y_pred, labels=shared, average="macro", zero_division=0)),
        "accuracy": float(np.mean(y_true == y_pred)),
        "predicted_without_counterpart": float(np.mean(~np.isin(y_pred, shared))),
        "per_class": {class_names[c]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                       "support": int(s[i])} for i, c in enumerate(shared)},
        # rows: the shared classes (true); columns: every class of the run (predicted)
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=np.arange(len(class_names)))[shared].tolist(),
    }


def score_sets(sets: list[OutOfDomainSet], run, model, loss_fn, inputs: dict, cfg, device, weights: dict,
               rule: str, train_emb) -> dict:
    """Write each set's metrics and predictions into ``run``; return the summary for metrics.json.
    ``train_emb``: the training split's embeddings under the same model (centroid and kNN rules)."""
    from lib.training.train import embed, predict_all, run_rules  # train.py calls this module: import late

    rules = run_rules(weights)
    train_y = inputs["train"].labels
    summary = {}
    for s in sets:
        emb, logits = embed(model, inputs[PREFIX + s.name], cfg, device)
        preds = predict_all(model, loss_fn, train_emb, train_y, emb, logits, cfg, len(s.class_names), rules)
        confidence = torch.softmax(logits, 1).max(1).values.numpy() if "head" in preds else None
        summary[s.name] = write_set(run, s, preds, rule, rules, confidence)
    return summary


def write_set(run, s: OutOfDomainSet, preds: dict, rule: str, rules: list[str], head_confidence=None) -> dict:
    """Write set ``s``'s ``metrics.json`` and ``predictions.csv`` into ``run`` from the predictions of
    every rule (``preds``: rule -> class indices, in the set's row order; ``rule`` the primary one,
    ``rules`` the run's); return its entry of the run's metrics.json (``out_of_domain``)."""
    y = s.frame["label"].to_numpy()
    scores = {r: shared_class_metrics(y, p, s.class_names, s.shared) for r, p in preds.items()}
    shared = [s.class_names[c] for c in s.shared]
    counts = s.frame["label"].value_counts()
    write_json(run.path(f"ood/{s.name}/metrics.json"), {
        "set": s.name, "description": s.description, "scoring": SCORING_NOTE,
        "mapping": s.mapping, "shared_classes": shared, "classes_without_counterpart": s.without_counterpart,
        "rows": len(s.frame), "class_counts": {s.class_names[c]: int(counts.get(c, 0)) for c in s.shared},
        "notes": s.notes, "primary_rule": rule, "rules": rules, "macro_f1": scores[rule]["macro_f1"],
        "accuracy": scores[rule]["accuracy"], "by_rule": scores,
    })
    frame = pd.DataFrame({"id": s.frame["id"].to_numpy(), "source_label": s.frame["source_label"].to_numpy(),
                          "label": y})
    for r, p in preds.items():
        frame[f"pred_{r}"] = p
    if head_confidence is not None:
        frame["head_confidence"] = head_confidence
    write_csv(run.path(f"ood/{s.name}/predictions.csv"), frame)
    return {"rows": len(s.frame), "shared_classes": shared, "primary_rule": rule,
            "macro_f1": {r: v["macro_f1"] for r, v in scores.items()},
            "accuracy": {r: v["accuracy"] for r, v in scores.items()}, "scoring": SCORING_NOTE}


def summary_lines(metrics: dict, out) -> list[str]:
    """One line per set for the command line, after the test line."""
    lines = []
    for name, m in sorted(metrics.get("out_of_domain", {}).items()):
        rule = m["primary_rule"]
        lines.append(f"out-of-domain {name} macro-F1 {m['macro_f1'][rule]:.4f} over {len(m['shared_classes'])} "
                     f"shared classes, {m['rows']} rows ({rule}; a prediction of a class without counterpart "
                     f"counts as an error)  -> {out}/ood/{name}")
    return lines
