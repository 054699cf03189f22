"""Did I reproduce it? A study's summary beside the published one, method by method.

``run_all.sh`` trains into a folder git ignores (``results/local/<study>``) and ends by comparing
its summary with the published ``results/<study>/summary.csv``: for the primary prediction rule
of each method, your mean test macro-F1, the published mean and its 95% interval (Student t over
the published seeds), the difference, and whether your mean lies in the range expected from seed
variation alone: the 95% prediction interval for a mean over your number of seeds (``expected_range``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from lib.paths import PROJECT_ROOT
from lib.study.experiments import display_name, sort_methods
from lib.training.config import ADDED_LATER
from lib.training.results import write_csv, write_text

COLUMNS = ["method", "name", "yours", "yours_seeds", "published", "published_lo", "published_hi",
           "published_seeds", "difference", "expected_lo", "expected_hi", "within_expected_range"]


def expected_range(published: float, lo: float, hi: float, published_seeds: int, your_seeds: int) -> tuple[float, float]:
    """95% prediction interval for the mean over ``your_seeds`` new seeds of a study whose published
    mean over ``published_seeds`` has the Student-t interval [lo, hi]: mean +- t s sqrt(1/n_p + 1/n_y)
    with the published seeds' SD s, i.e. the published interval widened by sqrt(1 + n_p / n_y).
    A mean over few seeds varies more than the published mean; its interval alone would say "NO"
    far more often than 5% of the time when nothing differs."""
    half = (hi - lo) / 2 * math.sqrt(1 + published_seeds / your_seeds)
    return published - half, published + half


def relative(path: str | Path) -> str:
    """A path as the reader should see it: relative to the project root when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(p)


def _primary(summary: Path) -> pd.DataFrame:
    table = pd.read_csv(summary)
    primary = table[table["primary"].astype(str).str.lower() == "true"]
    return primary.set_index("method")


def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def compare(yours: str | Path, published: str | Path) -> pd.DataFrame:
    """One row per method in either summary (primary rule), in the study's reading order.

    ``within_expected_range`` is True/False where the published study has an interval over seeds
    (your mean against ``expected_range``), and empty where it has none (one run: a baseline, or a
    single seed) or where one side lacks the method.
    """
    mine, theirs = _primary(Path(yours) / "summary.csv"), _primary(Path(published) / "summary.csv")
    rows = []
    for key in sort_methods(set(mine.index) | set(theirs.index)):
        y = mine.loc[key] if key in mine.index else None
        p = theirs.loc[key] if key in theirs.index else None
        y_mean = _num(y["macro_f1"]) if y is not None else None
        p_mean = _num(p["macro_f1"]) if p is not None else None
        lo = _num(p["macro_f1_lo"]) if p is not None else None
        hi = _num(p["macro_f1_hi"]) if p is not None else None
        inside = e_lo = e_hi = None
        if y_mean is not None and lo is not None and hi is not None:
            e_lo, e_hi = expected_range(p_mean, lo, hi, int(p["seeds"]), int(y["seeds"]))
            inside = bool(round(e_lo, 6) <= round(y_mean, 6) <= round(e_hi, 6))
        rows.append({
            "method": key, "name": display_name(key),
            "yours": y_mean, "yours_seeds": int(y["seeds"]) if y is not None else None,
            "published": p_mean, "published_lo": lo, "published_hi": hi,
            "published_seeds": int(p["seeds"]) if p is not None else None,
            "difference": round(y_mean - p_mean, 6) if y_mean is not None and p_mean is not None else None,
            "expected_lo": None if e_lo is None else round(e_lo, 6),
            "expected_hi": None if e_hi is None else round(e_hi, 6), "within_expected_range": inside,
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"yours_seeds": "Int64", "published_seeds": "Int64", "within_expected_range": "boolean"})


# Training settings that change the numbers; a difference here explains a gap before chance does.
SETTINGS = ("epochs", "patience", "bf16", "batch_size", "max_length", "encoder_lr", "head_lr", "warmup_ratio",
            "weight_decay", "freeze_encoder", "max_train_samples", "max_eval_samples", "drop_cross_split_duplicates",
            "resplit")


def _settings(study: Path) -> dict[str, list]:
    """Each setting's distinct values over the study's trained runs (runs/<method>/seed*: not the grid
    under runs/grid/, not the baselines)."""
    values: dict[str, set] = {k: set() for k in SETTINGS}
    for config in (study / "runs").glob("*/seed*/config.json"):
        if config.parent.name.endswith(".partial"):
            continue
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if cfg.get("method", "finetune") != "finetune":
            continue
        for k in SETTINGS:  # a setting added after the run was saved: the behaviour it had (ADDED_LATER)
            values[k].add(json.dumps(cfg.get(k, ADDED_LATER.get(k))))
    return {k: [json.loads(v) for v in sorted(vs)] for k, vs in values.items() if vs}  # JSON text sorts any mix


def settings_differences(yours: str | Path, published: str | Path) -> dict[str, dict]:
    """{setting: {"yours": [...], "published": [...]}} for the training settings (``SETTINGS``, read
    from the runs' config.json) in which the two studies differ."""
    mine, theirs = _settings(Path(yours)), _settings(Path(published))
    return {k: {"yours": mine.get(k), "published": theirs.get(k)} for k in SETTINGS
            if mine.get(k) is not None and theirs.get(k) is not None and mine[k] != theirs[k]}


def format_settings_differences(diff: dict[str, dict]) -> str:
    """One line, e.g. 'epochs 2 against 15; bf16 true against false' (empty when none differ)."""
    def show(vs):
        return "/".join(json.dumps(v) for v in vs)
    return "; ".join(f"{k} {show(d['yours'])} against {show(d['published'])}" for k, d in diff.items())


def write_comparison(table: pd.DataFrame, out_dir: str | Path, yours: str | Path, published: str | Path,
                     note: str = "", settings: dict[str, dict] | None = None) -> dict[str, Path]:
    """``comparison.csv`` and ``comparison.json`` (UTF-8, sorted keys and columns) in ``out_dir``."""
    out = Path(out_dir)
    paths = {"csv": out / "comparison.csv", "json": out / "comparison.json"}
    write_csv(paths["csv"], table[sorted(table.columns)])
    rows = [{k: _plain(v) for k, v in r.items()} for r in table.astype(object).to_dict(orient="records")]
    doc = {
        "yours": relative(yours), "published": relative(published), "metric": "test macro-F1, primary rule",
        "interval": "published: 95% Student t interval over the published study's seeds; expected: 95% prediction "
                    "interval for a mean over your seeds (the published interval widened by sqrt(1 + n_published / "
                    "n_yours)), which within_expected_range tests",
        "note": note, "methods": rows, "settings_differ": settings or {},
    }
    write_text(paths["json"], json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
    return paths


def _plain(v):
    """A JSON value: missing (None, NaN, pd.NA) -> null, numpy scalars -> Python ones."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _f(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as aligned text for the terminal."""
    head = ["method", "yours", "published [95% interval over seeds]", "difference",
            "expected for your seeds", "within"]
    lines = []
    for r in table.itertuples(index=False):
        interval = "" if r.published_lo is None or pd.isna(r.published_lo) else \
            f" [{r.published_lo:.3f}, {r.published_hi:.3f}]"
        seeds_y = "" if r.yours_seeds is None or pd.isna(r.yours_seeds) else f" (n={int(r.yours_seeds)})"
        seeds_p = "" if r.published_seeds is None or pd.isna(r.published_seeds) else f" (n={int(r.published_seeds)})"
        diff = "–" if r.difference is None or pd.isna(r.difference) else f"{r.difference:+.3f}"
        inside = "n/a" if pd.isna(r.within_expected_range) else ("yes" if r.within_expected_range else "NO")
        expected = "" if r.expected_lo is None or pd.isna(r.expected_lo) else \
            f"[{r.expected_lo:.3f}, {r.expected_hi:.3f}]"
        lines.append([r.name, _f(r.yours) + seeds_y, _f(r.published) + interval + seeds_p, diff, expected, inside])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join(fmt.format(*row) for row in [head, *lines])
