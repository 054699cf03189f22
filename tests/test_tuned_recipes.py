"""Study 2: TUNED_RECIPES trains every method at the winner of its published search (lib.study.tuned_recipes).

The published tuning studies are read as they are; the refusals use copies in tmp_path (best.json and
search.json of each method, the report and notebook 07 that make a study published)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from lib.model.losses import parse_loss_spec
from lib.paths import PROJECT_ROOT
from lib.study.experiments import same_config
from lib.study.fanout import planned_runs
from lib.study.profiles import FROZEN_TRAINING, TRAINING_NOTEBOOKS
from lib.study.tuned_recipes import TunedRecipeError, check_results_folder, load
from lib.training.config import ExperimentConfig

KO6 = "results/tuning/ko6-me5-small-frozen"
ED32 = "results/tuning/ed32-minilm-frozen"
SEED = 3  # a confirmatory seed, not the tuning seeds (100, 101) the winners' configs carry


def _plan(study, results: Path, dataset="ko6", encoder="me5-small", notebooks=TRAINING_NOTEBOOKS, frozen=True,
          **overrides):
    """What run_all.sh [--freeze-encoder] --set TUNED_RECIPES=<study> plans (the notebooks train the same)."""
    training = FROZEN_TRAINING if frozen else {}
    return planned_runs("paper", dataset, encoder, [SEED], results, list(notebooks),
                        {**training, "TUNED_RECIPES": study, **overrides}, frozen=frozen)


def _winners(study) -> dict[frozenset, tuple[Path, dict]]:
    """{loss parts: (best.json, its content)}, read here independently of the module under test."""
    out = {}
    for path in sorted((PROJECT_ROOT / study).glob("*/best.json")):
        best = json.loads(path.read_text(encoding="utf-8"))
        out[frozenset(parse_loss_spec(best["config"]["loss"]))] = (path, best)
    return out


@pytest.mark.parametrize("study,dataset,encoder", [(KO6, "ko6", "me5-small"), (ED32, "ed32", "minilm")])
def test_every_tuned_run_is_its_winner_at_the_notebooks_seed(study, dataset, encoder, tmp_path):
    winners = _winners(study)
    assert len(winners) == 8
    runs = _plan(study, tmp_path, dataset, encoder)
    tuned = [r for r in runs if r.config.method == "finetune" and r.group is None]
    used = set()
    for run in tuned:
        path, best = winners[frozenset(parse_loss_spec(run.config.loss))]
        used.add(path)
        # every field as the winner trained it (its searched values, its tuned weights, its fixed settings),
        # except the seed and the thread count, which stay the notebook's (a field added since: its default)
        expected = {**ExperimentConfig().to_dict(), **best["config"], "seed": SEED, "num_threads": None}
        assert run.config.validate().to_dict() == expected, path
    # each tuned method planned once ("combined" found by its parts, whatever its tuned weights)
    assert len(tuned) == 8 and used == {p for p, _ in winners.values()}


def _untuned(runs) -> list[tuple]:
    return [(r.folder, r.config) for r in runs if r.config.method != "finetune" or r.group == "grid"]


def test_baselines_and_the_weight_grid_keep_the_notebooks_settings(tmp_path):
    tuned = _untuned(_plan(KO6, tmp_path))
    assert len(tuned) == 2 + 5  # tfidf-lr, encoder-lr, five grid weights
    assert tuned == _untuned(_plan(None, tmp_path))


def test_without_tuned_recipes_the_study_1_recipe_is_planned_as_published(tmp_path):
    """None plans exactly what the published frozen ko6 study trained (run_or_load's comparison)."""
    runs = planned_runs("paper", "ko6", "me5-small", [0], tmp_path, list(TRAINING_NOTEBOOKS),
                        {**FROZEN_TRAINING, "TUNED_RECIPES": None}, frozen=True)
    assert [r.config for r in runs] == [r.config for r in planned_runs(
        "paper", "ko6", "me5-small", [0], tmp_path, list(TRAINING_NOTEBOOKS), dict(FROZEN_TRAINING), frozen=True)]
    published = PROJECT_ROOT / "results" / "ko6-me5-small-frozen"
    for run in runs:
        saved = json.loads((published / run.folder.relative_to(tmp_path) / "config.json").read_text(encoding="utf-8"))
        assert same_config(saved, run.config.validate()), run.folder


def _copy_study(study: str, to: Path) -> Path:
    """The files that make a published tuning study, without its trial records."""
    source = PROJECT_ROOT / study
    for name in ["report.json", "notebooks/07_tuning.ipynb",
                 *(str(p.relative_to(source)) for p in source.glob("*/best.json")),
                 *(str(p.relative_to(source)) for p in source.glob("*/search.json"))]:
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, to / name)
    return to


def test_a_copy_plans_as_the_original(tmp_path):
    """The copies below differ from the study only where each test changes them."""
    copy = _copy_study(KO6, tmp_path / "study")
    assert [r.config for r in _plan(str(copy), tmp_path / "r")] == [r.config for r in _plan(KO6, tmp_path / "r")]


def test_only_a_published_tuning_study_is_accepted(tmp_path):
    study = _copy_study(KO6, tmp_path / "study")
    (study / "notebooks" / "07_tuning.ipynb").unlink()  # its searches finished, but it is not published
    with pytest.raises(TunedRecipeError, match=f"{study} is not a published tuning study .*; published: .*{KO6}"):
        load(str(study))
    with pytest.raises(TunedRecipeError, match="no-such-study is not a published tuning study"):
        load("results/tuning/no-such-study")
    for bad in (3, "", ["x"]):
        with pytest.raises(TunedRecipeError, match="TUNED_RECIPES must be a tuning study folder"):
            load(bad)


def test_a_loss_without_tuned_method_is_refused_naming_the_tuned_ones(tmp_path):
    with pytest.raises(TunedRecipeError) as e:
        _plan(KO6, tmp_path, notebooks=["04_combined"], LOSSES=["combined", "ce+supcon"])
    assert "loss 'ce+supcon' has no tuned method" in str(e.value)
    assert "arcface, ce, ce+arcface, ce+triplet, ce+triplet+arcface, supcon, triplet, triplet+arcface" in str(e.value)


def test_two_tuned_methods_with_the_same_parts_are_refused(tmp_path):
    study = _copy_study(KO6, tmp_path / "study")
    shutil.copytree(study / "ce", study / "ce_again")
    with pytest.raises(TunedRecipeError, match=r"loss 'ce' matches several tuned methods \(.*study/ce/best.json, "
                                               r".*study/ce_again/best.json\)"):
        _plan(str(study), tmp_path, notebooks=["01_baseline_ce"])
    _plan(str(study), tmp_path, notebooks=["03_arcface"])  # the other methods are still one each


def test_a_search_the_published_report_does_not_cover_gives_no_recipe(tmp_path):
    """A search finished after the study was published (its best.json, no line in report.json) has no checked
    budget: it is not a recipe until the study is published again."""
    study = _copy_study(KO6, tmp_path / "study")
    report = json.loads((study / "report.json").read_text(encoding="utf-8"))
    del report["methods"]["supcon"]
    (study / "report.json").write_text(json.dumps(report), encoding="utf-8")
    assert (study / "supcon" / "best.json").is_file()
    assert "supcon" not in {r.method for r in load(str(study))} and len(load(str(study))) == 7
    with pytest.raises(TunedRecipeError, match="loss 'supcon' has no tuned method"):
        _plan(str(study), tmp_path, notebooks=["04_combined"], LOSSES=["supcon"])


def test_a_best_json_that_changed_after_publication_is_refused(tmp_path):
    """A search resumed after its study was published writes another winner: not the equal-budget one the
    report checked, so no recipe until the study is published again."""
    study = _copy_study(KO6, tmp_path / "study")
    best = json.loads((study / "ce" / "best.json").read_text(encoding="utf-8"))
    (study / "ce" / "best.json").write_text(json.dumps({**best, "trial": best["trial"] + 1}), encoding="utf-8")
    with pytest.raises(TunedRecipeError, match=r"ce/best.json names trial .* the published report.json trial .*"
                                               "changed after publication"):
        load(str(study))


@pytest.mark.parametrize("seed", [100, 101, 200, 201])
def test_a_tuned_run_on_a_seed_its_search_used_is_refused(seed, tmp_path):
    """The winner was chosen by its score on seeds 100 and 101 and re-run on 200 and 201: a tuned run there
    repeats a run that chose it (its score would be the winner's own)."""
    with pytest.raises(TunedRecipeError, match=f"seed {seed} is one the ce search tuned or re-ran its winner on "
                                               r"\(100, 101, 200, 201"):
        planned_runs("paper", "ko6", "me5-small", [seed], tmp_path, ["01_baseline_ce"],
                     {**FROZEN_TRAINING, "TUNED_RECIPES": KO6}, frozen=True)
    assert _plan(KO6, tmp_path, notebooks=["01_baseline_ce"])  # seed 3: accepted


def test_how_a_run_is_evaluated_stays_the_notebooks_under_tuned_recipes(tmp_path):
    """A split of each seed's own and out-of-domain sets are the study's design, not a recipe: the winners
    were tuned without them, and the tuned runs take them from the notebook."""
    runs = _plan(KO6, tmp_path / "r-resplit-tuned", RESPLIT=True, OUT_OF_DOMAIN="auto")
    tuned = [r.config for r in runs if r.config.method == "finetune" and r.group is None]
    assert len(tuned) == 8 and all(c.resplit and c.ood == "auto" for c in tuned)


def test_a_recipe_tuned_under_other_settings_is_refused(tmp_path):
    # the notebook's settings: a fine-tuned study against frozen winners
    with pytest.raises(TunedRecipeError) as e:
        _plan(KO6, tmp_path, notebooks=["01_baseline_ce"], frozen=False)
    assert "01_baseline_ce" in str(e.value) and "ce/best.json" in str(e.value)
    assert "batch_size 128, freeze_encoder True, patience 5, but this notebook plans batch_size 32, " \
           "freeze_encoder False, patience 3" in str(e.value)
    with pytest.raises(TunedRecipeError, match="dataset 'ed32', encoder 'minilm'.* plans dataset 'ko6', encoder "
                                               "'me5-small'"):
        _plan(ED32, tmp_path, notebooks=["03_arcface"])
    with pytest.raises(TunedRecipeError, match="sampler 'random'.* plans sampler 'balanced'"):
        _plan(KO6, tmp_path, notebooks=["02_triplet"], SAMPLER="balanced")
    # the winner's: a setting its search did not vary, changed in a copy
    study = _copy_study(KO6, tmp_path / "study")
    best = json.loads((study / "supcon" / "best.json").read_text(encoding="utf-8"))
    best["config"]["max_length"] = 64
    (study / "supcon" / "best.json").write_text(json.dumps(best), encoding="utf-8")
    with pytest.raises(TunedRecipeError, match=r"04_combined: .*supcon recipe .* tuned with max_length 64, but this "
                                               r"notebook plans max_length 128"):
        _plan(str(study), tmp_path, notebooks=["04_combined"])


def test_a_searched_setting_comes_from_the_winner_whatever_the_notebook_says(tmp_path):
    runs = _plan(KO6, tmp_path, notebooks=["03_arcface"], HEAD_LR=0.5, EPOCHS=3, ARCFACE_SCALE=99.0)
    winners = _winners(KO6)
    assert runs  # notebook 03's arcface runs, each at its winner's settings
    for run in runs:
        best = winners[frozenset(parse_loss_spec(run.config.loss))][1]["config"]
        assert (run.config.head_lr, run.config.epochs, run.config.arcface_scale) == \
            (best["head_lr"], best["epochs"], best["arcface_scale"])


def _executed(results: Path, name: str, parameters: dict) -> None:
    path = results / "notebooks" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": {"papermill": {"parameters": parameters}}}), encoding="utf-8")


def test_a_results_folder_holds_runs_of_one_recipe_source(tmp_path):
    study1, tuned = tmp_path / "study1", tmp_path / "study1-tuned"
    _executed(study1, "01_baseline_ce-seed0", {"SEED": 0})  # executed before TUNED_RECIPES existed
    _executed(tuned, "04_combined-seed2", {"SEED": 2, "TUNED_RECIPES": KO6})
    check_results_folder(study1, None)
    check_results_folder(tuned, KO6)
    check_results_folder(tuned, str(PROJECT_ROOT / KO6))  # the same folder, spelled absolute
    check_results_folder(tmp_path / "new-tuned", KO6)
    impostor = tmp_path / "impostor-tuned"  # named as tuned, but its notebooks ran the Study 1 recipe
    _executed(impostor, "01_baseline_ce-seed0", {"SEED": 0})
    with pytest.raises(TunedRecipeError, match="holds runs at the Study 1 recipe .*01_baseline_ce-seed0.ipynb"):
        check_results_folder(impostor, KO6)
    # the name alone guards a folder without executed notebooks (a notebook run by hand in JupyterLab)
    with pytest.raises(TunedRecipeError, match=r"named \*-tuned; .*/study1 is not one \(e.g. .*/study1-tuned\)"):
        check_results_folder(study1, KO6)
    with pytest.raises(TunedRecipeError, match=r"/new-tuned is a folder of runs at tuned recipes"):
        check_results_folder(tmp_path / "new-tuned", None)
    with pytest.raises(TunedRecipeError, match="study1-tuned is a folder of runs at tuned recipes"):
        check_results_folder(tuned, None)
    with pytest.raises(TunedRecipeError, match=f"holds runs at the tuned recipes of {KO6}"):
        check_results_folder(tuned, ED32)


def test_run_all_prints_each_recipes_best_json_and_trains_into_a_folder_of_its_own(tmp_path, capsys):
    from lib.study.runner import local_results, tuned_recipes_problem

    assert tuned_recipes_problem("paper", "ko6", "me5-small", [0, 1], tmp_path / "r-tuned", list(TRAINING_NOTEBOOKS),
                                 {**FROZEN_TRAINING, "TUNED_RECIPES": KO6}, {}, True) is None
    out = capsys.readouterr().out
    for path, _ in _winners(KO6).values():
        line = f"{path.relative_to(PROJECT_ROOT)} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}"
        assert out.count(line) == 1, line  # once per method, not per seed
    assert local_results("paper", "ko6", "me5-small", True, tuned=True) == "results/local/ko6-me5-small-frozen-tuned"


@pytest.mark.parametrize("extra,message", [
    (["--freeze-encoder", "--set", "TUNED_RECIPES=results/tuning/none"], "is not a published tuning study"),
    (["--set", f'TUNED_RECIPES="{KO6}"'], "freeze_encoder True, patience 5, but this notebook plans"),
    (["--freeze-encoder", "--set", f"TUNED_RECIPES={KO6}", "--set", 'LOSSES=["ce+supcon"]'], "loss 'ce+supcon' has no"),
])
def test_run_all_refuses_before_anything_runs_with_exit_status_2(extra, message, tmp_path, capsys):
    from lib.study.runner import main

    results = tmp_path / "r-tuned"
    assert main(["--dataset", "ko6", "--encoder", "me5-small", "--seeds", "0", "--results", str(results),
                 "--notebooks", "01_baseline_ce,04_combined", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (results / "runs").exists() and not (results / "notebooks").exists()
