"""Data exploration tables and figures for notebook 00."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib.data.datasets import SPLITS, DataBundle, texts_shareable


def length_table(bundle: DataBundle, tokenizer=None, prefix: str = "") -> pd.DataFrame:
    """Characters and tokens (if a tokenizer is given) per sentence, per split."""
    rows = []
    for s in SPLITS:
        texts = bundle.split(s)["text"]
        chars = texts.str.len()
        row = {"split": s, "sentences": len(texts), "chars_mean": chars.mean(), "chars_p95": chars.quantile(0.95),
               "chars_max": chars.max()}
        if tokenizer is not None:
            toks = np.array([len(x) for x in tokenizer([prefix + t for t in texts])["input_ids"]])
            row.update(tokens_mean=toks.mean(), tokens_p95=np.percentile(toks, 95), tokens_max=toks.max())
            if tokenizer.unk_token_id is not None:
                ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
                row["unk_token_share"] = float(np.mean([t == tokenizer.unk_token_id for seq in ids for t in seq]))
        rows.append(row)
    return pd.DataFrame(rows).round(3)


def examples_per_class(bundle: DataBundle, n: int = 3, random_state: int = 0,
                       show_texts: bool | None = None) -> pd.DataFrame:
    """``n`` training sentences per class (emotion, text, id). ``show_texts`` None: the texts only of a data
    set whose terms allow redistribution (``texts_shareable``), the ids of the others' (an executed notebook
    is published); True: always (a copy of your own)."""
    shown = texts_shareable(bundle.name) if show_texts is None else bool(show_texts)
    tr = bundle.train
    picks = [tr[tr["label"] == c].sample(min(n, int((tr["label"] == c).sum())), random_state=random_state)
             for c in range(bundle.num_classes)]
    out = pd.concat(picks)
    out = out.assign(emotion=[bundle.class_names[i] for i in out["label"]])
    if not shown:
        out = out.assign(text=f"(not shown: {bundle.name}'s terms forbid redistribution; SHOW_TEXTS = True shows it)")
    return out[["emotion", "text", "id"]].reset_index(drop=True)


def class_count_figure(bundle: DataBundle):
    counts = bundle.class_counts()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * bundle.num_classes + 3), 3.8))
    counts.plot.bar(ax=ax, width=0.8)
    ax.set(ylabel="sentences", title=f"{bundle.name}: sentences per class and split")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return fig


def length_figure(bundle: DataBundle, tokenizer=None, prefix: str = ""):
    texts = bundle.train["text"]
    fig, axes = plt.subplots(1, 2 if tokenizer is not None else 1, figsize=(10, 3.4), squeeze=False)
    axes[0, 0].hist(texts.str.len(), bins=50)
    axes[0, 0].set(xlabel="characters", ylabel="training sentences", title="Length in characters")
    if tokenizer is not None:
        toks = [len(x) for x in tokenizer([prefix + t for t in texts])["input_ids"]]
        axes[0, 1].hist(toks, bins=50, color="tab:orange")
        axes[0, 1].set(xlabel="tokens (with special tokens)", title="Length in tokens")
    fig.tight_layout()
    return fig
