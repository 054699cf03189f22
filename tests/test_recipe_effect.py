"""Tuned recipe against the Study 1 recipe, method by method and paired by seed (lib.study.recipe_effect),
on copies of the published primary study's runs where the 'tuned' arm's predictions were changed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from lib.entrypoint import run_main
from lib.paths import PROJECT_ROOT
from lib.study import recipe_effect as re_

RUNS = PROJECT_ROOT / "results" / "ko6-me5-small" / "runs"
SEEDS = (0, 1, 2)
COMBINED = "ce0.15_triplet0.4_arcface0.45"


def _copy(src: Path, dst: Path, config_changes: dict | None = None, fix_rows: int = 0) -> None:
    """A copy of a run; ``fix_rows`` wrong predictions of its a-priori rule made right (metrics.json follows)."""
    shutil.copytree(src, dst)
    metrics = json.loads((dst / "metrics.json").read_text(encoding="utf-8"))
    if config_changes:
        config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
        (dst / "config.json").write_text(json.dumps({**config, **config_changes}), encoding="utf-8")
    if fix_rows:
        rule = metrics["primary_rule"]
        frame = pd.read_csv(dst / "predictions.csv", dtype={"id": str})
        wrong = np.flatnonzero(frame[f"pred_{rule}"].to_numpy() != frame["label"].to_numpy())[:fix_rows]
        frame.loc[wrong, f"pred_{rule}"] = frame.loc[wrong, "label"]
        frame.to_csv(dst / "predictions.csv", index=False)
        f1 = f1_score(frame["label"], frame[f"pred_{rule}"], average="macro")
        metrics["test"][rule]["macro_f1"] = metrics["test_macro_f1"] = f1
        (dst / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    if not RUNS.is_dir():
        pytest.skip("the primary study's runs are not in this checkout")
    root = tmp_path_factory.mktemp("recipe_effect")
    for seed in SEEDS:
        for name in ("ce1.0", COMBINED):
            _copy(RUNS / name / f"seed{seed}", root / "recipe" / "runs" / name / f"seed{seed}")
        _copy(RUNS / "ce1.0" / f"seed{seed}", root / "tuned" / "runs" / "ce1.0" / f"seed{seed}",
              {"encoder_lr": 5e-5}, fix_rows=20 + 10 * seed)
        _copy(RUNS / COMBINED / f"seed{seed}", root / "tuned" / "runs" / "ce0.2_triplet0.3_arcface0.5" / f"seed{seed}",
              {"loss": "ce=0.2+triplet=0.3+arcface=0.5"})
    return root / "tuned", root / "recipe"


def _f1(folder: Path, name: str, seed: int) -> float:
    run = folder / "runs" / name / f"seed{seed}"
    rule = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["primary_rule"]
    frame = pd.read_csv(run / "predictions.csv")
    return f1_score(frame["label"], frame[f"pred_{rule}"], average="macro")


def test_each_tuned_method_meets_its_recipe_paired_by_seed(folders):
    tuned, recipe = folders
    table = re_.recipe_effect(tuned, recipe, n_boot=500).set_index("method")
    assert list(table["split"]) == ["test", "test"] and set(table["seeds"]) == {3}
    ce = table.loc["ce=1.0"]
    expected = np.mean([_f1(tuned, "ce1.0", s) - _f1(recipe, "ce1.0", s) for s in SEEDS])
    assert expected > 0.01 and ce["recipe_method"] == "ce=1.0" and ce["tl_diff"] == pytest.approx(expected)
    assert ce["diff"] == pytest.approx(expected) and ce["tl_lo"] > 0  # every resample gains
    combined = table.loc["ce=0.2+triplet=0.3+arcface=0.5"]
    assert combined["recipe_method"] == "ce=0.15+triplet=0.4+arcface=0.45"
    assert combined["tl_diff"] == pytest.approx(0.0) and combined["tl_lo"] == combined["tl_hi"] == 0.0
    assert (table["p_holm"] >= table["tl_p"]).all() and not table.loc["ce=0.2+triplet=0.3+arcface=0.5", "significant"]


def test_a_method_without_its_recipe_or_without_shared_seeds_is_refused(folders, tmp_path):
    tuned, recipe = folders
    only_ce = tmp_path / "only_ce"
    shutil.copytree(recipe / "runs" / "ce1.0", only_ce / "runs" / "ce1.0")
    with pytest.raises(re_.RecipeEffectError, match=r"ce=0\.2\+triplet=0\.3\+arcface=0\.5.*holds ce=1\.0"):
        re_.recipe_effect(tuned, only_ce, n_boot=50)
    other = tmp_path / "other_seeds"
    for name in ("ce1.0", COMBINED):
        shutil.copytree(RUNS / name / "seed5", other / "runs" / name / "seed5")
    with pytest.raises(re_.RecipeEffectError, match="share no seed"):
        re_.recipe_effect(tuned, other, n_boot=50)


def test_the_command_writes_its_table_and_never_replaces_a_foreign_file(folders, tmp_path, capsys):
    tuned, recipe = folders
    out = tmp_path / "effect.csv"
    args = ["--tuned", str(tuned), "--recipe", str(recipe), "--out", str(out), "--n-boot", "200"]
    assert run_main(re_.main, args) == 0
    assert list(pd.read_csv(out).columns) == re_.COLUMNS
    out.write_text("mine\n", encoding="utf-8")
    assert run_main(re_.main, args) == 2 and "refusing to replace" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "mine\n"
    assert run_main(re_.main, ["--tuned", str(tuned), "--recipe", str(tmp_path / "none"), "--out", str(out)]) == 2
