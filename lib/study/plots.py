"""Figures of the notebooks; each returns a matplotlib Figure and saves it as PNG when asked."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lib.study.experiments import display_name


def save(fig, path: str | Path | None):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        palette_png(tmp)
        tmp.replace(path)
    return fig


def _palette(source, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes of ``source`` (a path or a file object) with a 256-colour palette; ``text`` becomes
    tEXt chunks (PIL writes no other metadata: no time, no software version)."""
    import io

    from PIL import Image, PngImagePlugin

    with Image.open(source) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True, pnginfo=info)
    return buffer.getvalue()


def palette_png(path: str | Path) -> None:
    """Re-save a PNG with a 256-colour palette: plots hold few colours, and the committed figures
    of the study shrink about threefold (results/ stays under its 20 MB budget)."""
    Path(path).write_bytes(_palette(path))


def palette_notebook_images(path: str | Path) -> int:
    """palette_png for every PNG output of an executed notebook (rewritten in place); returns how many."""
    import base64
    import io

    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                small = _palette(io.BytesIO(base64.b64decode(data["image/png"])))
                data["image/png"] = base64.b64encode(small).decode("ascii")
                count += 1
    if count:
        tmp = path.with_name(f".{path.name}.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(path)
    return count


def learning_curves(runs: dict[str, Path], path=None, seed: int | None = None):
    """Training loss and validation macro-F1 per epoch, one line per method (``seed``: the runs' seed,
    named in the titles: one seed's curves, not a mean)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, run in runs.items():
        hist_path = Path(run) / "history.csv"
        if not hist_path.exists():
            continue
        h = pd.read_csv(hist_path)
        axes[0].plot(h["epoch"], h["train_loss_total"], marker="o", label=display_name(key))
        axes[1].plot(h["epoch"], h["valid_macro_f1"], marker="o", label=display_name(key))
    of_seed = "" if seed is None else f", seed {seed}"
    axes[0].set(xlabel="epoch", ylabel="training loss (weighted total)", title=f"Training loss{of_seed}")
    axes[1].set(xlabel="epoch", ylabel="validation macro-F1", title=f"Validation macro-F1 (model selection){of_seed}")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save(fig, path)


def confusion(run: Path, rule: str | None = None, split: str = "test", path=None, title: str | None = None):
    """Row-normalised confusion matrix of one run (counts annotated)."""
    m = json.loads((Path(run) / "metrics.json").read_text())
    rule = rule or m["primary_rule"]
    cm = np.array(m[split][rule]["confusion_matrix"])
    names = m["data"]["class_names"]
    norm = cm / cm.sum(1, keepdims=True).clip(min=1)
    size = max(4.5, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(norm, annot=cm if len(names) <= 12 else False, fmt="d", cmap="Blues", vmin=0, vmax=1,
                xticklabels=names, yticklabels=names, cbar_kws={"label": "share of the true class"}, ax=ax)
    seed = json.loads((Path(run) / "config.json").read_text()).get("seed")  # one run: say which
    ax.set(xlabel="predicted", ylabel="true",
           title=title or f"{display_name(m['method'])}, seed {seed}: {split} confusion ({rule}), macro-F1 "
                          f"{m[split][rule]['macro_f1']:.3f}")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    return save(fig, path)


def f1_intervals(summary: pd.DataFrame, path=None, title: str = "Test macro-F1 (mean and 95% interval over seeds)"):
    """Points with intervals per method (primary rule), sorted by the mean."""
    s = summary[summary["primary"]].sort_values("macro_f1")
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(s) + 1.4))
    y = np.arange(len(s))
    lo = (s["macro_f1"] - s["macro_f1_lo"]).fillna(0).clip(lower=0)
    hi = (s["macro_f1_hi"] - s["macro_f1"]).fillna(0).clip(lower=0)
    ax.errorbar(s["macro_f1"], y, xerr=[lo, hi], fmt="o", capsize=3)
    ax.set_yticks(y, [display_name(m) for m in s["method"]])
    ax.set(xlabel="test macro-F1", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def tsne_grid(embeddings: dict[str, np.ndarray], labels: np.ndarray, class_names: list[str], seed: int,
              perplexity: float = 30.0, path=None, title: str | None = None):
    """t-SNE of each method's test embeddings, side by side, same settings and seed."""
    from sklearn.manifold import TSNE

    n = len(embeddings)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows + 0.6), squeeze=False)
    palette = sns.color_palette("tab10" if len(class_names) <= 10 else "husl", len(class_names))
    perplexity = min(perplexity, max(2.0, (len(labels) - 1) / 3))
    for ax, (key, emb) in zip(axes.flat, embeddings.items()):
        z = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(z)
        for c, name in enumerate(class_names):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=6, color=palette[c], label=name, alpha=0.8)
        ax.set_title(display_name(key), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(class_names), 8), markerscale=3, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, path)


def centre_distances(emb: np.ndarray, labels: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Cosine distance between class centres of normalised embeddings (the seed study printed these)."""
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
    cent = np.stack([z[labels == c].mean(0) for c in range(len(class_names))])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True).clip(min=1e-12)
    return pd.DataFrame(1 - cent @ cent.T, index=class_names, columns=class_names).round(3)


# The tEXt key of the main figure (python -m lib.report): it holds the plotted numbers as JSON, so a
# test compares them with the summaries whatever the renderer, and lib.report knows its own file.
VERDICT_FIGURE_KEY = "lib.report verdict intervals"
# Marker and colour of each recipe, fixed so that a recipe looks the same in every figure.
RECIPE_STYLES = {"Study 1 recipe": ("o", "tab:blue"), "tuned recipes": ("s", "tab:orange")}


def verdict_intervals_png(rows: pd.DataFrame, margin: float) -> bytes:
    """PNG bytes: one line per study, combined - CE with its 90% verdict interval and verdict, beside
    0 and the claimed ``margin``. ``rows``: title, seeds, primary, diff, lo90, hi90, verdict, top to
    bottom, and optionally recipe: where rows of more than one recipe are drawn, each recipe has its own
    colour and marker in the legend. The same rows give the same bytes: matplotlib's default style (no
    matplotlibrc, no seaborn theme), its own fonts, no timestamp or version in the file."""
    import io

    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=(7.6, 0.42 * len(rows) + 1.3))
        ax = fig.add_subplot()
        y = np.arange(len(rows))[::-1]  # first row on top
        ax.axvline(0, color="0.5", lw=1, label="no difference")
        ax.axvline(margin, color="tab:red", lw=1, ls="--", label=f"claimed gain {margin:+.3f}")
        recipes = list(dict.fromkeys(rows["recipe"])) if "recipe" in rows else []
        unknown = set(recipes) - set(RECIPE_STYLES)
        if unknown:
            raise ValueError(f"no style for the recipe(s) {', '.join(sorted(unknown))} (lib.study.plots.RECIPE_STYLES)")
        drawn = [r for r in RECIPE_STYLES if r in recipes] or ["Study 1 recipe"]
        for recipe in drawn:  # the recipe named in the legend only where two or more are drawn
            marker, colour = RECIPE_STYLES[recipe]
            at = (rows["recipe"] == recipe).to_numpy() if recipes else np.ones(len(rows), dtype=bool)
            ax.hlines(y[at], rows["lo90"][at], rows["hi90"][at], color=colour, lw=2)
            ax.plot(rows["diff"][at], y[at], marker, color=colour)
            label = "combined − CE, 90% verdict interval"
            ax.plot([], [], marker + "-", color=colour, lw=2, label=f"{recipe}: {label}" if len(drawn) > 1 else label)
        labels = [f"{r.title} ({int(r.seeds)} seeds)" + (", primary" if r.primary else "") for r in rows.itertuples()]
        ax.set_yticks(y, labels)
        for tick, r in zip(ax.get_yticklabels(), rows.itertuples()):
            tick.set_fontweight("bold" if r.primary else "normal")
        for yy, r in zip(y, rows.itertuples()):  # the verdict, right of the plot
            ax.text(1.02, yy, r.verdict, transform=ax.get_yaxis_transform(), va="center",
                    fontweight="bold" if r.primary else "normal")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel("test macro-F1, combined loss − cross-entropy (a-priori rules)")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3 if len(recipes) < 2 else 2, frameon=False,
                  fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    # The recipe only where it tells rows apart: a figure of one recipe keeps the bytes it had before.
    plotted = rows[["title", "seeds", "primary", "diff", "lo90", "hi90", "verdict",
                    *(["recipe"] if len(recipes) > 1 else [])]].to_dict("records")
    text = json.dumps({"margin": margin, "rows": plotted}, sort_keys=True, ensure_ascii=False)
    buffer.seek(0)
    return _palette(buffer, {VERDICT_FIGURE_KEY: text})


def png_text(path: str | Path, key: str) -> str | None:
    """The tEXt chunk ``key`` of a PNG file, or None (not a PNG, no such chunk, unreadable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.text.get(key) if image.format == "PNG" else None
    except (OSError, UnidentifiedImageError, ValueError):
        return None
