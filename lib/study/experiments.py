"""What the notebooks call: run (or reuse) a configuration inside a results folder.

Layout of a results folder (one data set and encoder)::

    <results>/runs/<method>/seed<k>/      one complete run (see lib.training.results)
    <results>/notebooks/<nb>-seed<k>.ipynb executed notebooks (written by run_all.sh)
    <results>/figures/*.png                figures of the notebooks
    <results>/summary.csv, summary.md      the summary table
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from lib.training.config import ADDED_LATER, BASELINE_METHODS, ExperimentConfig
from lib.model.losses import format_loss_spec, parse_loss_spec
from lib.paths import PROJECT_ROOT
from lib.training.results import is_complete
from lib.training.saved_model import has_saved_model

DISPLAY = {
    "ce=1.0": "CE",
    "triplet=1.0": "Triplet",
    "arcface=1.0": "ArcFace",
    "supcon=1.0": "SupCon",
    "ce=1.0+triplet=1.0": "CE + Triplet",
    "ce=1.0+arcface=1.0": "CE + ArcFace",
    "triplet=1.0+arcface=1.0": "Triplet + ArcFace",
    "ce=0.15+triplet=0.4+arcface=0.45": "Combined (seed weights)",
    "ce=0.5+supcon=0.5": "CE + SupCon",  # Gunel et al. (2021)'s pairing, Study 2's ed6 search
    "tfidf-lr": "TF-IDF + LR",
    "encoder-lr": "Frozen encoder + LR",
}


# Set by ``run_all.sh --render-only``: the notebooks re-render from finished runs and train nothing.
RENDER_ONLY_ENV = "STUDY_RENDER_ONLY"


class RunNotReusable(RuntimeError):
    """A run would have to be trained where training is not allowed (see ``run_or_load``)."""


def is_published(path: Path) -> bool:
    """A folder of the tracked tree: results/<study> (and results/in-progress, results/pilots: tracked
    too, so guarded alike), not results/local, results/smoke or results/runs."""
    try:
        rel = path.resolve().relative_to((PROJECT_ROOT / "results").resolve())
    except ValueError:
        return False
    return len(rel.parts) >= 1 and rel.parts[0] not in ("local", "smoke", "runs")


def resolve_results_dir(path: str | Path) -> Path:
    """Relative paths are anchored at the project root, never the working directory."""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else PROJECT_ROOT / p).resolve()


def method_key(cfg: ExperimentConfig) -> str:
    """Canonical method name: the loss spec for trained runs, the baseline name otherwise."""
    if cfg.method != "finetune":
        return cfg.method
    key = format_loss_spec(parse_loss_spec(cfg.loss))
    return key + ("|frozen" if cfg.freeze_encoder else "")


def method_key_of(name: str) -> str:
    """The method key of a name as a user writes it: a baseline method, or any loss spelling
    ("ce", "combined", "ce=0.5+supcon=0.5")."""
    return name if name in BASELINE_METHODS else format_loss_spec(parse_loss_spec(name))


def loss_parts(key: str) -> frozenset | None:
    """The loss parts of a method key, weights and "|frozen" aside (None: a baseline or not a loss spec)."""
    base = key.partition("|")[0]
    if base in BASELINE_METHODS:
        return None
    try:
        return frozenset(parse_loss_spec(base))
    except ValueError:
        return None


def same_method(key: str, other: str) -> bool:
    """One method at other weights (Study 2's tuned sums): the same loss parts, both frozen or neither."""
    parts = loss_parts(key)
    return parts is not None and parts == loss_parts(other) and ("|frozen" in key) == ("|frozen" in other)


def _named_like(base: str) -> str | None:
    """A weighted sum not in DISPLAY (a tuned one) named after the listed method with its parts, with its
    weights: "Combined (weights 0.25 / 0.33 / 0.42)"."""
    named = [k for k in DISPLAY if same_method(k, base)]
    if not named:
        return None
    return f"{DISPLAY[named[0]].removesuffix(' (seed weights)')} (weights {weights_text(base)})"


def weights_text(key: str) -> str:
    """A sum's weights as tables state them: "0.15 / 0.4 / 0.45" ("|frozen" aside)."""
    return " / ".join(f"{w:g}" for w in parse_loss_spec(key.partition("|")[0]).values())


def listed_method(key: str) -> str:
    """The listed method a key belongs to: a weighted sum at other weights (a tuned one) belongs to the
    DISPLAY method with its parts ("ce=0.4+triplet=0.3+arcface=0.3" -> the combined loss's key), so
    that a table puts each study's tuned weights in one row; any other key is its own."""
    base, bar, frozen = key.partition("|")
    if base in DISPLAY:
        return key
    named = [k for k in DISPLAY if same_method(k, base)]
    return named[0] + bar + frozen if named else key


def display_name(key: str) -> str:
    base, _, frozen = key.partition("|")
    name = DISPLAY.get(base) or _named_like(base) or base.replace("=", " ").replace("+", " + ")
    return name + (" [frozen]" if frozen else "")


def run_folder(results: Path, cfg: ExperimentConfig, group: str | None = None) -> Path:
    """``runs/<method>/seed<k>``; a ``group`` (e.g. the weight grid) gets its own subfolder, kept out
    of the summary. One results folder holds one configuration per method and seed: a changed
    configuration replaces the run (use another results folder to keep both)."""
    slug = method_key(cfg).replace("|", "-").replace("=", "").replace("+", "_")
    base = results / "runs" / group if group else results / "runs"
    return base / slug / f"seed{cfg.seed}"


# Fields that place a run on hardware without defining the experiment.
RUNTIME_FIELDS = {"device", "num_threads"}
# The name of every results folder of runs at tuned recipes (Study 2, TUNED_RECIPES; lib.study.tuned_recipes).
TUNED_SUFFIX = "-tuned"
# ... and of runs whose seeds each have their own split (RESPLIT; lib/data/resplit.py): <study>-resplit[-tuned].
RESPLIT_MARK = "-resplit"


class DesignFolderError(ValueError):
    """A results folder named for another design than the runs planned into it: exit status 2."""
    exit_status = 2


def check_design_folder(results: Path, resplit: bool) -> None:
    """Runs on a split of each seed's own go to a folder named ``*-resplit`` (or ``*-resplit-tuned``), and
    only they: a notebook run by hand with RESPLIT = True and its default RESULTS_DIR would otherwise
    replace the fixed-split runs there, seed by seed."""
    name = Path(results).name.removesuffix(TUNED_SUFFIX)
    if bool(resplit) == name.endswith(RESPLIT_MARK):
        return
    shown = Path(results).name
    if resplit:
        raise DesignFolderError(f"RESPLIT True: runs on a split of each seed's own go to a results folder of their "
                                f"own, named *{RESPLIT_MARK}[{TUNED_SUFFIX}]; {shown} is not one (e.g. "
                                f"{name + RESPLIT_MARK + shown[len(name):]})")
    raise DesignFolderError(f"{shown} is a folder of runs on a split of each seed's own (*{RESPLIT_MARK}); set "
                            "RESPLIT True, or train the data set's own split into another folder")


# Fields a loss-free baseline does not read (tfidf-lr reads no encoder field either).
TRAINING_FIELDS = {f for f in ExperimentConfig.__dataclass_fields__} - {
    "dataset", "encoder", "method", "seed", "max_length", "eval_batch_size", "bf16", "max_train_samples",
    "max_eval_samples", "drop_cross_split_duplicates", "text_column", "label_column", "empty_texts", "resplit",
    "ood"}


def experiment_fields(config: dict) -> dict:
    """The fields that define what a run computed (for reuse and for consistency checks). A field added
    after a run was saved reads as the value it was added with, the behaviour that run had
    (``lib.training.config.ADDED_LATER``, e.g. resplit)."""
    config = {**ADDED_LATER, **config}
    skip = set(RUNTIME_FIELDS)
    if config.get("method", "finetune") != "finetune":
        skip |= TRAINING_FIELDS
    if config.get("method") == "tfidf-lr":
        skip |= {"encoder", "max_length", "eval_batch_size"}
    return {k: v for k, v in config.items() if k not in skip}


def config_differences(saved: dict, cfg: ExperimentConfig) -> dict[str, tuple]:
    """{field: (saved value, asked value)} of the fields that define the experiment and differ."""
    want = experiment_fields(cfg.to_dict())
    have = experiment_fields(saved)
    if want.get("encoder") is None:  # "the data set's default encoder" matches whatever it resolved to
        want.pop("encoder", None)
    return {k: (have.get(k), v) for k, v in sorted(want.items()) if have.get(k) != v}


def same_config(saved: dict, cfg: ExperimentConfig) -> bool:
    return not config_differences(saved, cfg)


def run_or_load(cfg: ExperimentConfig, results: str | Path, force: bool = False, quiet: bool = True,
                group: str | None = None, save_model: bool = False) -> dict:
    """Reuse a complete run with the same config (resumable notebooks); otherwise train it.

    ``save_model`` (fine-tuned methods only; baselines ignore it) also keeps the trained model in the
    run folder (``model/``, lib.training.saved_model). A finished run without one is retrained where
    it may be (results/local), and refused (``RunNotReusable``) where it is published or under
    ``--render-only``: a run without its model is never returned as if it had one.

    Two cases refuse instead of training (``RunNotReusable``): a published run (results/<study>,
    tracked by git) trained with other settings is never replaced without ``force``, since a
    re-render with the wrong command would otherwise overwrite it; and under ``--render-only``
    (``STUDY_RENDER_ONLY``) nothing is trained at all."""
    from lib.training.train import run_experiment

    from lib.study.results_folder import claim_results_folder

    cfg = replace(cfg).validate()
    save_model = save_model and cfg.method == "finetune"
    out = run_folder(claim_results_folder(resolve_results_dir(results)), cfg, group)
    where = out.relative_to(PROJECT_ROOT) if out.is_relative_to(PROJECT_ROOT) else out
    if not force and is_complete(out):
        saved = json.loads((out / "config.json").read_text())
        if same_config(saved, cfg) and not (save_model and not has_saved_model(out)):
            from lib.training import checkpoint

            checkpoint.remove(out)  # left by a kill between publishing the run and deleting it
            metrics = json.loads((out / "metrics.json").read_text())
            metrics["reused"] = True
            return metrics
        if same_config(saved, cfg) and (is_published(out) or os.environ.get(RENDER_ONLY_ENV) == "1"):
            raise RunNotReusable(f"{where} has no saved model (model/) and is not retrained here; train into "
                                 "results/local (without --publish) to keep a model, or pass --force to replace it.")
        differ = ", ".join(f"{k}: {there!r} there, {asked!r} asked"
                           for k, (there, asked) in config_differences(saved, cfg).items())
        if is_published(out):
            raise RunNotReusable(
                f"{where} is a published run trained with other settings ({differ}); it is not replaced. "
                "Re-render it with the command that made it (README, What was run), train into results/local "
                "(without --publish), or pass --force to replace it.")
        if os.environ.get(RENDER_ONLY_ENV) == "1":
            raise RunNotReusable(f"{where} holds a run trained with other settings ({differ}), and --render-only "
                                 "trains nothing.")
    if os.environ.get(RENDER_ONLY_ENV) == "1":
        raise RunNotReusable(f"{where} is missing or unfinished, and --render-only trains nothing.")
    keep = {"save_model": True} if save_model else {}  # the keyword only when used: stand-ins need not know it
    if cfg.method == "finetune" and not cfg.freeze_encoder:
        keep["resume"] = True  # a killed fine-tune goes on from its last epoch (lib/training/checkpoint.py)
    metrics = run_experiment(cfg, out, quiet=quiet, **keep)
    metrics["reused"] = False
    return metrics


def train_or_reuse(configs: list[ExperimentConfig], results: str | Path, force: bool = False, quiet: bool = True,
                   group: str | None = None, save_model: bool = False) -> tuple[dict[str, dict], dict[str, Path]]:
    """A training notebook's runs (``run_or_load`` each), one line printed per run:
    ({method key: metrics}, {method key: run folder})."""
    metrics, folders = {}, {}
    keep = {"save_model": True} if save_model else {}  # the keyword only when used, as in run_or_load
    for cfg in configs:
        key = method_key(cfg)
        metrics[key] = run_or_load(cfg, results, force=force, quiet=quiet, group=group, **keep)
        folders[key] = run_folder(resolve_results_dir(results), cfg, group)
        print(f"{key:40s} test macro-F1 {metrics[key]['test_macro_f1']:.4f}"
              f"{'  (reused a finished run)' if metrics[key]['reused'] else ''}")
    return metrics, folders


def check_runs(metrics: dict[str, dict], folders: dict[str, Path]) -> None:
    """What a training notebook asserts (so nbval fails on a broken run): every run folder is complete,
    and a trained run kept its promises: the selected epoch is the first with the best validation
    macro-F1 in its history, the final validation score of its a-priori rule equals that best (the best
    epoch's weights were restored before the one test evaluation), and it stopped when early stopping
    or the epoch budget says."""
    import pandas as pd

    for key, m in metrics.items():
        folder = folders[key]
        assert 0.0 <= m["test_macro_f1"] <= 1.0, key
        for name in ("metrics.json", "predictions.csv"):
            assert (folder / name).is_file(), f"{key}: {name} is missing in {folder}"
        if "best_epoch" not in m:  # a loss-free baseline: no epochs
            continue
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        scores = pd.read_csv(folder / "history.csv")["valid_macro_f1"]
        assert m["epochs_run"] == len(scores), f"{key}: {m['epochs_run']} epochs run, history has {len(scores)}"
        assert m["best_epoch"] == int(scores.idxmax()) + 1, f"{key}: best epoch {m['best_epoch']} is not the history's"
        restored = m["valid"][m["primary_rule"]]["macro_f1"]
        assert restored == scores.max(), f"{key}: final validation score {restored} != best epoch's {scores.max()}"
        patience = cfg.get("patience")
        expected = cfg["epochs"] if patience is None else min(cfg["epochs"], m["best_epoch"] + patience)
        assert m["epochs_run"] == expected, f"{key}: ran {m['epochs_run']} epochs, early stopping says {expected}"


def run_table(metrics: dict[str, dict]) -> "pd.DataFrame":
    """One row per (method, prediction rule) of finished runs: what a notebook shows."""
    import pandas as pd

    rows = []
    for key, m in metrics.items():
        emb = m.get("embedding_test", {})
        for rule in m["rules"]:
            rows.append({
                "method": display_name(key), "rule": rule + (" *" if rule == m["primary_rule"] else ""),
                "valid_macro_f1": m["valid"][rule]["macro_f1"], "test_macro_f1": m["test"][rule]["macro_f1"],
                "test_accuracy": m["test"][rule]["accuracy"], "best_epoch": m.get("best_epoch"),
                "precision_at_1": emb.get("precision_at_1"), "map_at_r": emb.get("map_at_r"),
                "silhouette": emb.get("silhouette_cosine"), "ece": m["test"][rule].get("ece"),
            })
    return pd.DataFrame(rows).round(4)


def grid_choice(metrics: dict[str, dict]) -> tuple[str, "pd.DataFrame"]:
    """Notebook 04's weight grid: (what validation chose, in words; the grid's rows under the a-priori rule,
    best validation macro-F1 first). An empty grid (GRID = []) is said so, not an error."""
    table = run_table(metrics)
    if table.empty:
        return "No weight grid: GRID is empty.", table
    grid = table[table["rule"].str.endswith("*")].sort_values("valid_macro_f1", ascending=False)
    best = grid.iloc[0]
    return (f"Chosen on validation: **{best['method']}** (validation macro-F1 {best['valid_macro_f1']:.3f}, "
            f"test macro-F1 {best['test_macro_f1']:.3f}).", grid)


ORDER = ["ce=1.0", "triplet=1.0", "ce=1.0+triplet=1.0", "arcface=1.0", "ce=1.0+arcface=1.0",
         "ce=0.15+triplet=0.4+arcface=0.45", "triplet=1.0+arcface=1.0", "supcon=1.0", "ce=0.5+supcon=0.5",
         *reversed(BASELINE_METHODS)]


def sort_methods(keys) -> list[str]:
    """The study's reading order: CE first, then its additions, then references and the rest."""
    rank = {k: i for i, k in enumerate(ORDER)}

    def place(key: str) -> tuple:
        base = key.partition("|")[0]
        # a tuned sum takes the place of the listed method with its parts
        at = rank.get(base, next((rank[k] for k in ORDER if same_method(k, base)), None))
        return at is None, at or 0, "|frozen" in key, key

    return sorted(keys, key=place)


def runs_for_seed(results: str | Path, seed: int, with_embeddings: bool = True) -> dict[str, Path]:
    """method key -> complete run folder of one seed, in reading order."""
    found = {}
    for folder in sorted((resolve_results_dir(results) / "runs").glob(f"*/seed{seed}")):
        if not is_complete(folder) or (with_embeddings and not (folder / "test_embeddings.npy").exists()):
            continue
        cfg = ExperimentConfig.from_dict(json.loads((folder / "config.json").read_text()))
        found[method_key(cfg)] = folder
    return {k: found[k] for k in sort_methods(found)}


def learning_curve_runs(runs: dict[str, Path], include_frozen: bool = False) -> dict[str, Path]:
    """The trained runs whose learning curves a figure shows: baselines (no epochs) left out, and
    frozen-encoder runs only where asked for or where the study has nothing else (a frozen study)."""
    trained = {k: v for k, v in runs.items() if k not in BASELINE_METHODS}
    only_frozen = all("|frozen" in k for k in trained)
    return {k: v for k, v in trained.items() if include_frozen or only_frozen or "|frozen" not in k}
