"""Provenance: what a run records about the code that made it."""
from __future__ import annotations

import subprocess

from lib.training import results


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_dirty_means_changed_code_not_new_results(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    (repo / "lib" / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(results, "PROJECT_ROOT", repo)
    assert results.git_state()["dirty"] is False
    (repo / "results" / "study" / "runs").mkdir(parents=True)
    (repo / "results" / "study" / "runs" / "metrics.json").write_text("{}")
    assert results.git_state()["dirty"] is False  # the study's own output
    (repo / "lib" / "new.py").write_text("y = 2\n")
    assert results.git_state()["dirty"] is True  # untracked code
    (repo / "lib" / "new.py").unlink()
    (repo / "lib" / "a.py").write_text("x = 2\n")
    state = results.git_state()
    assert state["dirty"] is True and len(state["commit"]) == 40


# --------------------------------------------------------------------------- the summary's guards
import json  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib.study.experiments import run_folder  # noqa: E402
from lib.evaluation.bootstrap import two_level_bootstrap  # noqa: E402
from lib.evaluation.pvalues import holm  # noqa: E402
from lib.study.run_files import load_primary_predictions  # noqa: E402
from lib.study.summary import build_summary, collect, epoch_report, render_summary, rule_choice  # noqa: E402
from lib.training.config import ExperimentConfig  # noqa: E402

Y = np.array([0, 1, 2] * 10)


def _run(results, loss, seed, preds, valid_f1, commit="a" * 40, dirty=False, best_epoch=2, epochs_run=4,
         cpu=None):
    """A complete run folder as train.py writes it (the files the summary reads)."""
    cfg = ExperimentConfig(loss=loss, seed=seed).validate()
    folder = run_folder(results, cfg)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**cfg.to_dict(), "encoder": "minilm"}))
    rules = list(preds)
    test = {r: {"macro_f1": float(np.mean(p == Y)), "accuracy": float(np.mean(p == Y))} for r, p in preds.items()}
    valid = {r: {"macro_f1": valid_f1[r], "accuracy": valid_f1[r]} for r in rules}
    (folder / "metrics.json").write_text(json.dumps({"primary_rule": rules[0], "method": cfg.loss, "encoder": "minilm",
                                                     "valid": valid, "test": test, "best_epoch": best_epoch,
                                                     "epochs_run": epochs_run}))
    env = {"git": {"commit": commit, "dirty": dirty}}
    if cpu:
        env.update(cpu={"cores": 2, "model": cpu}, device={"type": "cpu"})
    (folder / "environment.json").write_text(json.dumps(env))
    frame = pd.DataFrame({"id": [f"r{i:02d}" for i in range(len(Y))], "label": Y,
                          **{f"pred_{r}": p for r, p in preds.items()}})
    frame.to_csv(folder / "predictions.csv", index=False)
    hist = np.linspace(0.5, 0.6, epochs_run)
    pd.DataFrame({"epoch": np.arange(1, epochs_run + 1), "valid_macro_f1": hist}).to_csv(folder / "history.csv",
                                                                                        index=False)


def _study(tmp_path, commits=("a" * 40,) * 3, dirty=(False,) * 3, cpus=((None, None),) * 3):
    """CE and the combined loss, one run each per seed; ``cpus``: the CPU model of each seed's two runs."""
    rng = np.random.default_rng(0)
    noisy = lambda q: np.where(rng.random(len(Y)) < q, Y, rng.integers(0, 3, len(Y)))  # noqa: E731
    for seed, (commit, d, (cpu_ce, cpu_combined)) in enumerate(zip(commits, dirty, cpus)):
        _run(tmp_path, "ce", seed, {"head": noisy(0.7), "centroid": noisy(0.6)}, {"head": 0.7, "centroid": 0.6},
             commit, d, best_epoch=4 if seed == 0 else 2, cpu=cpu_ce)
        _run(tmp_path, "combined", seed, {"head": noisy(0.7), "centroid": noisy(0.7), "arcface": noisy(0.5)},
             {"head": 0.75, "centroid": 0.7, "arcface": 0.5}, commit, d, cpu=cpu_combined)
    return tmp_path


def test_summary_says_which_machines_trained_the_runs(tmp_path):
    intel, amd = "Intel(R) Xeon(R) Processor", "AMD EPYC"
    _, nice, _ = build_summary(_study(tmp_path / "one", cpus=((intel, intel),) * 3), n_boot=200)
    assert "Hardware: all 6 runs on CPU Intel(R) Xeon(R) Processor." in render_summary(nice)
    # a session on another machine: seed 1 wholly, and seed 2's combined run after a stop
    two = _study(tmp_path / "two", cpus=((intel, intel), (amd, amd), (intel, amd)))
    _, nice, _ = build_summary(two, n_boot=200)
    assert ("Hardware: 3 runs on CPU AMD EPYC, 3 on CPU Intel(R) Xeon(R) Processor; in 1 of 3 seeds the runs "
            "of one seed trained on different machines.") in render_summary(nice)
    _, nice, _ = build_summary(_study(tmp_path / "old"), n_boot=200)
    assert "Hardware: not recorded by these runs." in render_summary(nice)


def test_rules_a_priori_and_chosen_on_validation(tmp_path):
    table, nice, runs = build_summary(_study(tmp_path), n_boot=200)
    choice = rule_choice(runs).set_index("method")
    # the seed study's rules a priori: head for CE alone, centroid for the combined loss
    assert choice.loc["ce=1.0", "apriori_rule"] == "head"
    assert choice.loc["ce=0.15+triplet=0.4+arcface=0.45", "apriori_rule"] == "centroid"
    # validation (never test) prefers the combined loss's head
    assert choice.loc["ce=0.15+triplet=0.4+arcface=0.45", "valid_chosen_rule"] == "head"
    combined = nice.set_index("method").loc["Combined (seed weights)"]
    assert combined["rule (a priori)"] == "centroid" and combined["rule chosen on validation"] == "head"
    assert "Provenance: all 6 runs from commit aaaaaaaaaa, clean tree." in render_summary(nice)


def test_selected_epochs_and_last_epoch_gain(tmp_path):
    _, _, runs = build_summary(_study(tmp_path), n_boot=200)
    ep = epoch_report(runs).set_index("method")
    assert ep.loc["ce=1.0", "selected_epochs"] == "4 2 2" and ep.loc["ce=1.0", "runs_best_at_last_epoch"] == 1
    assert ep.loc["ce=1.0", "last_epoch_valid_gain"] == pytest.approx(0.1 / 3)


def test_runs_of_one_epoch_report_no_last_epoch_gain(tmp_path):
    """The smoke profile trains one epoch: there is no gain of a last epoch (was printed as "+nan")."""
    for loss in ("ce", "combined"):
        _run(tmp_path, loss, 0, {"head": Y, "centroid": Y}, {"head": 0.7, "centroid": 0.6}, best_epoch=1, epochs_run=1)
    text = render_summary(build_summary(tmp_path, n_boot=200)[1])
    assert "Training budget: 2 of 2 trained runs selected the last epoch they ran; no run ran two epochs" in text
    assert "+nan" not in text and "nan." not in text


def test_summary_refuses_mixed_code_and_marks_dirty_runs(tmp_path):
    mixed = _study(tmp_path / "mixed", commits=("a" * 40, "b" * 40, "a" * 40))
    with pytest.raises(ValueError, match="one commit of the training code"):
        build_summary(mixed, n_boot=200)
    _, nice, _ = build_summary(mixed, n_boot=200, provenance_rule="any")
    assert "NOT CONFIRMATORY" in render_summary(nice)
    dirty = _study(tmp_path / "dirty", dirty=(False, True, False))
    _, nice, _ = build_summary(dirty, n_boot=200)  # one commit: summarised, but marked
    assert "NOT CONFIRMATORY" in render_summary(nice) and "2 from a dirty tree" in render_summary(nice)
    with pytest.raises(ValueError, match="one clean commit"):
        build_summary(dirty, n_boot=200, provenance_rule="clean")


def test_clean_means_one_commit_even_where_the_training_code_is_the_same(tmp_path, monkeypatch):
    """PROTOCOL.md section 6: one commit per study. Two commits with identical lib/ pass the default
    rule (one commit of the training code) but not "clean"."""
    import lib.study.summary as summary
    monkeypatch.setattr(summary, "same_training_code", lambda commits: True)
    two = _study(tmp_path, commits=("a" * 40, "b" * 40, "a" * 40))
    _, nice, _ = build_summary(two, n_boot=200)
    assert "NOT CONFIRMATORY" in render_summary(nice) and "2 commit(s) with the same training code" in render_summary(nice)
    with pytest.raises(ValueError, match="one clean commit"):
        build_summary(two, n_boot=200, provenance_rule="clean")


def test_the_validation_chosen_rules_are_compared_too(tmp_path):
    """PROTOCOL.md section 1 (secondary): each method under its rule chosen on validation (here the
    head for both), on the combined loss's row of that rule, and in a note under the verdict."""
    table, nice, _ = build_summary(_study(tmp_path), n_boot=200)
    vc = table[table["vc_verdict"].notna()]
    assert list(zip(vc["method"], vc["rule"], vc["vc_baseline_rule"])) == [
        ("ce=0.15+triplet=0.4+arcface=0.45", "head", "head")]
    r = vc.iloc[0]
    assert r["vc_lo"] <= r["vc_diff"] <= r["vc_hi"] and r["vc_lo90"] <= r["vc_diff"] <= r["vc_hi90"]
    assert r["vc_verdict"] in ("reproduces", "smaller gain", "does not reproduce", "inconclusive")
    note = [line for line in nice.attrs["notes"] if line.startswith("Secondary (PROTOCOL.md §1)")]
    assert len(note) == 1 and "(head) − CE (head)" in note[0] and r["vc_verdict"] in note[0]
    # the numbers are the two-level bootstrap of the head predictions of both methods, seed by seed
    runs = collect(tmp_path)
    mine = load_primary_predictions(runs, "ce=0.15+triplet=0.4+arcface=0.45", rule="head")
    base = load_primary_predictions(runs, "ce=1.0", rule="head")
    ref = two_level_bootstrap([mine[s] for s in (0, 1, 2)], [base[s] for s in (0, 1, 2)], Y, n_boot=200,
                              random_state=0, n_classes=3)
    assert (r["vc_diff"], r["vc_lo"], r["vc_hi"]) == pytest.approx((ref["diff"], ref["lo"], ref["hi"]))
    # and the a-priori rules differ (centroid for the combined loss): another comparison
    prim = table[(table["method"] == "ce=0.15+triplet=0.4+arcface=0.45") & table["primary"]].iloc[0]
    assert prim["rule"] == "centroid" and prim["tl_diff"] != pytest.approx(r["vc_diff"])


def test_the_t_view_is_holm_adjusted_over_the_same_family(tmp_path):
    table, nice, _ = build_summary(_study(tmp_path), n_boot=200)
    comp = table[table["primary"] & table["p_ttest"].notna()]
    assert len(comp) >= 1 and (comp["p_ttest_holm"].to_numpy() == pytest.approx(holm(comp["p_ttest"].to_numpy())))
    assert "p (t over seeds, Holm)" in nice.columns
