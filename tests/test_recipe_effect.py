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


def test_arms_that_differ_outside_the_recipe_are_refused(folders, tmp_path):
    """Study 2's tuned runs train in fp32; the published Study 1 runs in bf16: comparing them would mix the
    recipe's effect with the numeric mode's. A searched field (encoder_lr, above) may differ; bf16 may not."""
    tuned, recipe = folders
    fp32 = tmp_path / "fp32"
    for seed in SEEDS:
        for name in ("ce1.0", COMBINED):
            _copy(RUNS / name / f"seed{seed}", fp32 / "runs" / name / f"seed{seed}", {"bf16": False})
    with pytest.raises(re_.RecipeEffectError, match=r"differ outside the recipe.*bf16 True against False"):
        re_.recipe_effect(tuned, fp32, n_boot=50)
    assert {"encoder_lr", "head_lr", "epochs", "loss", "seed"} <= re_.recipe_fields("ce")
    assert "triplet_margin" in re_.recipe_fields("combined") and "triplet_margin" not in re_.recipe_fields("ce")
    assert "bf16" not in re_.recipe_fields("combined") and "batch_size" not in re_.recipe_fields("combined")


def test_a_field_added_since_the_recipe_runs_were_trained_reads_as_its_default(folders, tmp_path):
    """Recipe runs saved before ``resplit`` existed against tuned runs that record it as False: one design."""
    tuned, recipe = folders
    newer = tmp_path / "newer"
    for seed in SEEDS:
        _copy(tuned / "runs" / "ce1.0" / f"seed{seed}", newer / "runs" / "ce1.0" / f"seed{seed}", {"resplit": False})
    table = re_.recipe_effect(newer, recipe, n_boot=50)
    assert list(table["method"]) == ["ce=1.0"]
    again = tmp_path / "resplit"
    for seed in SEEDS:
        _copy(tuned / "runs" / "ce1.0" / f"seed{seed}", again / "runs" / "ce1.0" / f"seed{seed}", {"resplit": True})
    with pytest.raises(re_.RecipeEffectError, match="resplit True against False"):
        re_.recipe_effect(again, recipe, n_boot=50)


def test_a_folder_of_baselines_only_is_refused_with_its_name(folders, tmp_path):
    baselines = tmp_path / "baselines"
    for seed in SEEDS:  # a CE run relabelled as a loss-free baseline
        _copy(RUNS / "ce1.0" / f"seed{seed}", baselines / "runs" / "tfidf-lr" / f"seed{seed}",
              {"method": "tfidf-lr"})
    with pytest.raises(re_.RecipeEffectError, match="no method with a loss under .*baselines"):
        re_.recipe_effect(baselines, folders[1], n_boot=50)


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


class _Run:
    """What write_set needs of a run folder under construction: a path inside it, its parents made."""
    def __init__(self, root: Path):
        self.root = root

    def path(self, rel: str) -> Path:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        return self.root / rel


OOD_SHARED = (0, 2, 5)  # happiness, anger, sadness: the toy set's classes with a counterpart in ko6


def _ood_predictions(rng, y: np.ndarray, right: int) -> np.ndarray:
    """Predictions of which the first ``right`` rows are correct; the others wrong, some of them a class
    without counterpart (1 embarrassment, 3 anxiety, 4 heartbroken)."""
    wrong = rng.choice([1, 3, 4, 0, 2, 5], size=len(y))
    wrong = np.where(wrong == y, 1, wrong)
    return np.where(np.arange(len(y)) < right, y, wrong)


@pytest.fixture(scope="module")
def ood_folders(folders, tmp_path_factory):
    """The same folders, every run having also scored a toy out-of-domain set of 60 rows: tuned CE right
    on 40 + 5 x seed rows, its recipe twin on 30, the combined loss on 35 in both arms."""
    from lib.data.out_of_domain import OutOfDomainSet
    from lib.training.out_of_domain import write_set

    root = tmp_path_factory.mktemp("recipe_effect_ood")
    tuned, recipe = (shutil.copytree(f, root / f.name) for f in folders)
    rng = np.random.default_rng(7)
    y = np.array([OOD_SHARED[i % 3] for i in range(60)])
    class_names = json.loads((RUNS / "ce1.0" / "seed0" / "metrics.json").read_text(encoding="utf-8"))["data"][
        "class_names"]
    frame = pd.DataFrame({"id": [f"t{i:02d}" for i in range(60)], "text": "x", "label": y,
                          "source_label": [("joy", "mad", "sad")[i % 3] for i in range(60)]})
    toy = OutOfDomainSet("toy", frame, class_names, {"joy": "happiness", "mad": "anger", "sad": "sadness"}, "a toy set")
    for seed in SEEDS:
        for folder, name, right in ((tuned, "ce1.0", 40 + 5 * seed), (recipe, "ce1.0", 30),
                                    (tuned, "ce0.2_triplet0.3_arcface0.5", 35), (recipe, COMBINED, 35)):
            run = folder / "runs" / name / f"seed{seed}"
            rule = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["primary_rule"]
            write_set(_Run(run), toy, {rule: _ood_predictions(np.random.default_rng(seed), y, right)}, rule, [rule])
    return tuned, recipe


def _ood_f1(folder: Path, name: str, seed: int) -> float:
    run = folder / "runs" / name / f"seed{seed}"
    rule = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["primary_rule"]
    frame = pd.read_csv(run / "ood" / "toy" / "predictions.csv")
    return f1_score(frame["label"], frame[f"pred_{rule}"], labels=list(OOD_SHARED), average="macro", zero_division=0)


def test_out_of_domain_sets_are_compared_in_a_family_of_their_own(folders, ood_folders):
    from lib.evaluation.pvalues import holm

    table = re_.recipe_effect(*ood_folders, n_boot=500)
    assert list(table["split"]) == ["test", "test", "ood:toy", "ood:toy"]
    ood = table[table["split"] == "ood:toy"].set_index("method")
    tuned, recipe = ood_folders
    expected = np.mean([_ood_f1(tuned, "ce1.0", s) - _ood_f1(recipe, "ce1.0", s) for s in SEEDS])
    # macro-F1 over the shared classes, a class without counterpart counted as an error: not accuracy
    accuracy_gain = np.mean([(40 + 5 * s - 30) / 60 for s in SEEDS])
    assert expected > 0.05 and abs(expected - accuracy_gain) > 1e-3
    assert ood.loc["ce=1.0", "tl_diff"] == pytest.approx(expected) and ood.loc["ce=1.0", "seeds"] == 3
    assert ood.loc["ce=0.2+triplet=0.3+arcface=0.5", "tl_diff"] == pytest.approx(0.0)
    # Holm over the two methods within each split: the test rows are what they were without the set
    assert np.allclose(ood["p_holm"], holm(ood["tl_p"].to_numpy()))
    assert np.allclose(ood["p_ttest_holm"], holm(ood["p_ttest"].to_numpy()), equal_nan=True)
    without = re_.recipe_effect(*folders, n_boot=500)
    pd.testing.assert_frame_equal(table[table["split"] == "test"].reset_index(drop=True), without)


def test_the_command_says_how_out_of_domain_rows_are_scored(folders, ood_folders, tmp_path, capsys):
    for pair, says in ((ood_folders, True), (folders, False)):
        args = ["--tuned", str(pair[0]), "--recipe", str(pair[1]), "--out", str(tmp_path / f"{says}.csv"),
                "--n-boot", "100"]
        assert run_main(re_.main, args) == 0
        assert ("a prediction of a class without counterpart counts as an error" in capsys.readouterr().out) is says
