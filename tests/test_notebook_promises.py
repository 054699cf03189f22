"""What the training notebooks tell a reader and check: the prediction-rule sentence above their run
tables is the code's (lib.training.rules), their closing check can fail, and the runner compares a
frozen study with the frozen published one however the study was made frozen."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from lib.model.losses import LOSS_NAMES, format_loss_spec
from lib.paths import PROJECT_ROOT
from lib.study.experiments import check_runs
from lib.training.rules import APRIORI_RULE_TEXT, apriori_rule

TRAINING_NOTEBOOKS = ("01_baseline_ce", "02_triplet", "03_arcface", "04_combined")
BUILT_IN = ("ce", "triplet", "arcface", "supcon")


def _markdown(nb: str) -> str:
    cells = json.loads((PROJECT_ROOT / "notebooks" / f"{nb}.ipynb").read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("nb", TRAINING_NOTEBOOKS)
def test_each_training_notebook_states_the_rule_the_code_applies(nb):
    text = _markdown(nb)
    assert APRIORI_RULE_TEXT in text
    # the wording that stood beside the published tables until the review (it was wrong)
    assert "for losses with cross-entropy" not in text and "ArcFace centres for ArcFace without it" not in text


def test_the_rule_sentence_matches_apriori_rule_for_every_sum_of_losses():
    assert "cross-entropy alone" in APRIORI_RULE_TEXT and "every loss with a metric part" in APRIORI_RULE_TEXT
    names = [n for n in LOSS_NAMES if n in BUILT_IN]
    assert set(names) == set(BUILT_IN)
    for k in range(1, len(names) + 1):
        for parts in itertools.combinations(names, k):
            spec = format_loss_spec({p: 1.0 for p in parts})
            expected = "head" if parts == ("ce",) else "centroid"  # what the sentence says
            assert apriori_rule("finetune", spec) == expected, spec
    assert apriori_rule("tfidf-lr", None) == apriori_rule("encoder-lr", None) == "head"


def _run(folder: Path, scores: list[float], best: int, epochs: int, patience: int | None,
         final_valid: float | None = None) -> tuple[dict, Path]:
    folder.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(scores) + 1), "valid_macro_f1": scores}).to_csv(folder / "history.csv",
                                                                                        index=False)
    (folder / "config.json").write_text(json.dumps({"epochs": epochs, "patience": patience}))
    (folder / "predictions.csv").write_text("id,label\n")
    metrics = {"test_macro_f1": 0.5, "best_epoch": best, "epochs_run": len(scores), "primary_rule": "centroid",
               "valid": {"centroid": {"macro_f1": max(scores) if final_valid is None else final_valid}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return metrics, folder


def test_check_runs_passes_a_run_that_kept_its_promises(tmp_path):
    m, f = _run(tmp_path / "ok", [0.5, 0.7, 0.7, 0.6, 0.65], best=2, epochs=15, patience=3)
    check_runs({"ok": m}, {"ok": f})
    m, f = _run(tmp_path / "cap", [0.5, 0.6, 0.7], best=3, epochs=3, patience=3)  # the budget ended it
    check_runs({"cap": m}, {"cap": f})
    m, f = _run(tmp_path / "all", [0.5, 0.4, 0.3, 0.2], best=1, epochs=4, patience=None)
    check_runs({"all": m}, {"all": f})


@pytest.mark.parametrize("broken, message", [
    (dict(scores=[0.5, 0.7, 0.6, 0.6, 0.6], best=5, epochs=15, patience=3), "best epoch"),  # the last, not the best
    (dict(scores=[0.5, 0.7, 0.7, 0.6, 0.6], best=3, epochs=15, patience=3), "best epoch"),  # a tie is not better
    (dict(scores=[0.5, 0.7, 0.6, 0.6, 0.6], best=2, epochs=15, patience=3, final_valid=0.6), "final validation"),
    (dict(scores=[0.5, 0.7, 0.6, 0.6, 0.6, 0.6], best=2, epochs=15, patience=3), "early stopping"),  # one too many
    (dict(scores=[0.5, 0.7, 0.6], best=2, epochs=15, patience=3), "early stopping"),  # stopped too soon
])
def test_check_runs_fails_a_run_that_broke_one(tmp_path, broken, message):
    m, f = _run(tmp_path / "bad", **broken)
    with pytest.raises(AssertionError, match=message):
        check_runs({"bad": m}, {"bad": f})


def test_check_runs_fails_an_incomplete_folder(tmp_path):
    m, f = _run(tmp_path / "r", [0.5, 0.7], best=2, epochs=2, patience=None)
    (f / "predictions.csv").unlink()
    with pytest.raises(AssertionError, match="r: predictions.csv is missing in "):
        check_runs({"r": m}, {"r": f})


@pytest.mark.parametrize("flags", [["--freeze-encoder"], ["--set", "FREEZE_ENCODER=true"]])
def test_a_frozen_study_is_compared_with_the_frozen_published_study(monkeypatch, tmp_path, flags):
    """lib.study.runner once passed --freeze-encoder where it meant the study's frozen state: a study
    made frozen with --set FREEZE_ENCODER=true was compared with the fine-tuned published one."""
    from lib.study import runner

    results = tmp_path / "mine"
    results.mkdir()
    (results / "summary.csv").write_text("method,rule,primary,seeds,macro_f1\n")  # a study's folder
    (results / "summary.md").write_text("a summary")
    compared = []
    monkeypatch.setattr(runner, "check_inputs", lambda *a, **k: None)
    monkeypatch.setattr(runner, "ensure_kernel", lambda: None)
    monkeypatch.setattr(runner, "execute", lambda *a, **k: "done")
    monkeypatch.setattr(runner, "compare_with_published", lambda mine, published, profile: compared.append(published))
    code = runner.main(["--profile", "default", "--dataset", "ed6", "--results", str(results),
                        "--notebooks", "01_baseline_ce", *flags])
    assert code == 0
    assert [p.name for p in compared] == ["ed6-minilm-frozen"]
