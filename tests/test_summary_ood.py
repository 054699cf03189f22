"""Study summaries carry the out-of-domain results of their runs (ood/<name>/), and stay as they were
for runs without them: a toy study of tiny encoders, CE and the combined loss over three seeds, plus
a TF-IDF run that scored no out-of-domain set."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from lib.evaluation.bootstrap import two_level_bootstrap
from lib.evaluation.pvalues import holm
from lib.evaluation.seed_tests import mean_ci
from lib.run import main
from lib.study.baseline_comparison import compare_out_of_domain, shared_macro_f1
from lib.study.summary import build_summary, ood_column, render_summary, write_summary
from tests.toy_ood import write_toy

CE, COMBINED = "ce=1.0", "ce=0.15+triplet=0.4+arcface=0.45"
SHARED = [0, 1, 2]  # anger, fear, joy: the run's classes sorted
SEEDS = (0, 1, 2)
N_BOOT = 300


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """results/runs/<method>/seed<k>: CE and combined with --ood (3 seeds), TF-IDF + LR without."""
    d = tmp_path_factory.mktemp("toy")
    encoder = write_toy(d, ood_rows_per_label=8)
    results = d / "results"
    common = ["--dataset", str(d / "toy.csv"), "--max-length", "32", "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()):
        for loss, folder in (("ce", "ce1.0"), ("combined", "combined")):
            for seed in SEEDS:
                assert main([*common, "--encoder", str(encoder), "--loss", loss, "--epochs", "1", "--batch-size", "8",
                             "--seed", str(seed), "--ood", f"{d / 'reviews.csv'}={d / 'map.json'}",
                             "--out", str(results / "runs" / folder / f"seed{seed}")]) == 0
        assert main([*common, "--method", "tfidf-lr", "--out", str(results / "runs" / "tfidf-lr" / "seed0")]) == 0
    return results


@pytest.fixture(scope="module")
def summary(study):
    # provenance "any": the runs record the checkout's commit, which others may move while they train
    return build_summary(study, n_boot=N_BOOT, rng_repeats=0, provenance_rule="any")


def _ood(study, folder, seed) -> tuple[dict, pd.DataFrame]:
    run = study / "runs" / folder / f"seed{seed}" / "ood" / "reviews"
    return json.loads((run / "metrics.json").read_text()), pd.read_csv(run / "predictions.csv", dtype={"id": str})


def test_shared_class_metric_of_the_bootstrap_is_the_runs_macro_f1():
    # test_out_of_domain's hand example: row 1 (class 0) predicted 3, a class without counterpart.
    y, pred = np.array([0, 0, 1, 1, 2]), np.array([0, 3, 1, 0, 2])
    base = np.array([0, 0, 1, 1, 1])
    res = two_level_bootstrap([pred, pred], [base, base], y, n_boot=10, resample="seeds", n_classes=4,
                              metric=shared_macro_f1([0, 1, 2]))
    base_f1 = f1_score(y, base, labels=[0, 1, 2], average="macro", zero_division=0)
    assert res["diff"] == pytest.approx(13 / 18 - base_f1)
    # over all four classes it would be another number: the metric is not the in-domain one
    every = two_level_bootstrap([pred, pred], [base, base], y, n_boot=10, resample="seeds", n_classes=4)
    assert every["diff"] != pytest.approx(res["diff"])


def test_ood_macro_f1_per_method_is_the_runs_a_priori_rule_over_seeds(study, summary):
    table = summary[0]
    for method, folder, rule in ((CE, "ce1.0", "head"), (COMBINED, "combined", "centroid")):
        row = table[(table["method"] == method) & table["primary"]].iloc[0]
        assert row["rule"] == rule
        values = [_ood(study, folder, s)[0]["by_rule"][rule]["macro_f1"] for s in SEEDS]
        m, lo, hi = mean_ci(values)
        assert row[ood_column("reviews", "seeds")] == 3
        assert (row[ood_column("reviews", "macro_f1")], row[ood_column("reviews", "macro_f1_lo")],
                row[ood_column("reviews", "macro_f1_hi")]) == pytest.approx((m, lo, hi))
        # every other rule's row carries that rule's score
        knn = table[(table["method"] == method) & (table["rule"] == "knn")].iloc[0]
        assert knn[ood_column("reviews", "macro_f1")] == pytest.approx(
            np.mean([_ood(study, folder, s)[0]["by_rule"]["knn"]["macro_f1"] for s in SEEDS]))
    tfidf = table[table["method"] == "tfidf-lr"].iloc[0]
    assert pd.isna(tfidf[ood_column("reviews", "macro_f1")]) and pd.isna(tfidf[ood_column("reviews", "tl_diff")])


def test_ood_difference_is_paired_by_seed_over_shared_classes_with_the_in_domain_machinery(study, summary):
    table = summary[0]
    row = table[(table["method"] == COMBINED) & table["primary"]].iloc[0]
    col = lambda c: row[ood_column("reviews", c)]  # noqa: E731
    per_seed = [_ood(study, "combined", s)[0]["macro_f1"] - _ood(study, "ce1.0", s)[0]["macro_f1"] for s in SEEDS]
    assert col("tl_design") == "paired seeds" and col("tl_seeds") == 3
    assert col("tl_diff") == pytest.approx(np.mean(per_seed)) == pytest.approx(col("diff_vs_baseline"))
    # the same bootstrap, by hand: seeds and the set's sentences, paired, macro-F1 over the shared classes
    frames = {f: [_ood(study, f, s)[1] for s in SEEDS] for f in ("combined", "ce1.0")}
    y = frames["ce1.0"][0]["label"].to_numpy()
    mine, base = [f["pred_centroid"] for f in frames["combined"]], [f["pred_head"] for f in frames["ce1.0"]]
    ref = two_level_bootstrap(mine, base, y, n_boot=N_BOOT, random_state=0, n_classes=4,
                              metric=shared_macro_f1(SHARED))
    assert (col("tl_lo"), col("tl_hi"), col("tl_p")) == pytest.approx((ref["lo"], ref["hi"], ref["p"]))
    assert col("p_holm") == pytest.approx(holm([col("tl_p")])[0])  # one comparison on this set: CE has no pair
    ce = table[(table["method"] == CE) & table["primary"]].iloc[0]
    assert pd.isna(ce[ood_column("reviews", "tl_diff")])
    # the toy's CE head predicts shame (no counterpart) on some rows: each is a miss of the row's class
    assert any((f["pred_head"] == 3).any() for f in frames["ce1.0"])
    by_hand = [f1_score(f["label"], f["pred_head"], labels=SHARED, average="macro", zero_division=0)
               for f in frames["ce1.0"]]
    assert ce[ood_column("reviews", "macro_f1")] == pytest.approx(np.mean(by_hand))


def test_summary_md_shows_and_explains_the_ood_columns(summary):
    table, nice, _ = summary
    text = render_summary(nice)
    header = text.splitlines()[0]
    assert header.endswith("| out-of-domain reviews macro-F1 (95% CI over seeds) | out-of-domain reviews: vs CE "
                           "(95% CI over seeds and reviews sentences) |")
    combined = nice[nice["method"] == "Combined (seed weights)"].iloc[0]
    r = table[(table["method"] == COMBINED) & table["primary"]].iloc[0]
    assert combined["out-of-domain reviews macro-F1 (95% CI over seeds)"] == (
        f"{r[ood_column('reviews', 'macro_f1')]:.3f} [{r[ood_column('reviews', 'macro_f1_lo')]:.3f}, "
        f"{r[ood_column('reviews', 'macro_f1_hi')]:.3f}]")
    assert combined["out-of-domain reviews: vs CE (95% CI over seeds and reviews sentences)"].startswith(
        f"{r[ood_column('reviews', 'tl_diff')]:+.3f} [")
    assert nice[nice["method"] == "TF-IDF + LR"].iloc[0]["out-of-domain reviews macro-F1 (95% CI over seeds)"] == ""
    # the user's files by name, no machine's folders
    assert "Out of domain, reviews (reviews.csv with the mapping map.json; 24 sentences; 3 of 4 classes shared, " \
           "without counterpart: shame)" in text
    assert "a prediction of a class without counterpart counts as an error" in text
    assert "two-level bootstrap over seeds and the 24 reviews sentences" in text
    diff = r[ood_column("reviews", "tl_diff")]
    assert f"Out of domain, reviews: Combined (seed weights) − CE = {diff:+.4f} macro-F1 over the shared classes" in text


def test_without_ood_files_the_summary_is_what_it_was(study, summary, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(study, plain, ignore=shutil.ignore_patterns("ood"))
    table, nice, _ = build_summary(plain, n_boot=N_BOOT, rng_repeats=0, provenance_rule="any")
    assert not [c for c in table.columns if c.startswith("ood_")] and "out_of_domain" not in table.attrs
    assert "out-of-domain" not in render_summary(nice) and "Out of domain" not in render_summary(nice)
    # the in-domain part of the study with OOD files is the same table and text
    with_ood, nice_ood, _ = summary
    pd.testing.assert_frame_equal(with_ood[[c for c in with_ood.columns if not c.startswith("ood_")]], table)
    stripped = nice_ood[[c for c in nice_ood.columns if not c.startswith("out-of-domain")]]
    stripped.attrs["notes"] = [n for n in nice_ood.attrs["notes"] if not n.startswith("Out of domain")]
    assert len(stripped.attrs["notes"]) == len(nice_ood.attrs["notes"]) - 2  # what the set, the primary difference
    assert render_summary(stripped) == render_summary(nice)
    paths = write_summary(plain, table, nice)
    assert "ood_" not in paths["csv"].read_text().splitlines()[0]


def test_runs_scored_with_other_shared_classes_are_not_compared(study, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(study, other)
    metrics = other / "runs" / "combined" / "seed1" / "ood" / "reviews" / "metrics.json"
    m = json.loads(metrics.read_text())
    m["shared_classes"] = ["anger", "joy"]
    metrics.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=f"{metrics}: shared classes anger, joy, but anger, fear, joy in "):
        build_summary(other, n_boot=N_BOOT, rng_repeats=0, provenance_rule="any")


def test_other_ood_sentences_are_refused(study, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(study, other)
    preds = other / "runs" / "combined" / "seed2" / "ood" / "reviews" / "predictions.csv"
    frame = pd.read_csv(preds, dtype={"id": str})
    frame.loc[0, "id"] = "row-999"
    frame.to_csv(preds, index=False)
    from lib.study.summary import collect

    with pytest.raises(ValueError, match=f"{preds}: other reviews rows or labels than in the baseline"):
        compare_out_of_domain(collect(other), CE, "reviews", n_boot=10)


@pytest.mark.parametrize("change, message", [
    ("file", "reviews was scored with another file or mapping than in .* \\(file_sha256\\)"),
    ("mapping", "reviews was scored with another file or mapping than in .* \\(mapping_sha256\\)"),
    ("label", "other reviews rows or labels than in ")])
def test_runs_scored_on_another_version_of_a_users_set_are_not_compared(change, message, study, tmp_path):
    """Row ids of a user's set are row numbers: an edited file or mapping with the same rows is another set."""
    other = tmp_path / "other"
    shutil.copytree(study, other)
    run = other / "runs" / "combined" / "seed1" / "ood" / "reviews"
    if change == "label":
        frame = pd.read_csv(run / "predictions.csv", dtype={"id": str})
        frame.loc[0, "label"] = (frame.loc[0, "label"] + 1) % 3
        frame.to_csv(run / "predictions.csv", index=False)
    else:
        m = json.loads((run / "metrics.json").read_text())
        m["notes"][f"{change}_sha256"] = "0" * 64
        (run / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match=message):
        build_summary(other, n_boot=N_BOOT, rng_repeats=0, provenance_rule="any")


def test_a_set_the_baseline_did_not_score_gets_scores_but_no_difference(study, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(study, other)
    for seed in SEEDS:
        shutil.rmtree(other / "runs" / "ce1.0" / f"seed{seed}" / "ood")
    table, nice, _ = build_summary(other, n_boot=N_BOOT, rng_repeats=0, provenance_rule="any")
    row = table[(table["method"] == COMBINED) & table["primary"]].iloc[0]
    assert row[ood_column("reviews", "seeds")] == 3 and pd.isna(row[ood_column("reviews", "tl_diff")])
    assert pd.isna(table[table["method"] == CE][ood_column("reviews", "macro_f1")]).all()
    text = render_summary(nice)
    assert "no difference to CE, which has no run scored on reviews" in text and "Combined (seed weights) − CE = " \
        f"{row['tl_diff']:+.4f}" in text
    assert "Out of domain, reviews: Combined" not in text
