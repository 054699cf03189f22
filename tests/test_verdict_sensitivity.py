"""How firmly a margin verdict stands: bootstrap re-draws with other RNG seeds and leave one seed
out are the protocol's verdict recomputed, and the summary reports them beside it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lib.evaluation.bootstrap import two_level_bootstrap
from lib.evaluation.margin import protocol_verdict
from lib.evaluation.power import minimum_detectable_effect
from lib.evaluation.verdict_sensitivity import bootstrap_redraws, leave_one_seed_out, margin_verdict, spread
from lib.study.experiments import run_folder
from lib.study.summary import SENSITIVITY_COLUMNS, build_summary, render_summary
from lib.training.config import ExperimentConfig

DELTA = 0.017


def _sentences(n=300, k=3, seed=5):
    """Labels and a baseline's predictions (about 70% correct), and where it is wrong and right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    b = np.where(rng.random(n) < 0.7, y, (y + 1) % k)
    return y, b, np.flatnonzero(b != y), np.flatnonzero(b == y)


def _method(fixed: int, broken: int, seed=5, k=3):
    """A method that corrects the baseline on ``fixed`` sentences and breaks it on ``broken``."""
    y, b, wrong, right = _sentences(seed=seed)
    a = b.copy()
    a[wrong[:fixed]] = y[wrong[:fixed]]
    a[right[:broken]] = (y[right[:broken]] + 2) % k
    return a


def test_margin_verdict_is_the_protocols_and_redraws_change_only_the_rng_seed():
    y, b, *_ = _sentences()
    rng = np.random.default_rng(0)
    a = np.stack([_method(40, 24 + s) for s in range(4)])
    b4 = np.stack([np.where(rng.random(len(y)) < 0.95, b, y) for _ in range(4)])  # seeds differ a little
    res = two_level_bootstrap(a, b4, y, n_boot=400, random_state=3, return_replicates=True)
    *_, both = protocol_verdict(res, DELTA)
    v = margin_verdict(a, b4, y, DELTA, n_boot=400, random_state=3)
    assert (v["lo"], v["hi"], v["verdict"], v["diff"]) == (both["lo"], both["hi"], both["verdict"], res["diff"])
    redraws = bootstrap_redraws(a, b4, y, DELTA, repeats=3, random_state=3, n_boot=400)
    assert list(redraws["random_state"]) == [4, 5, 6]
    for r in redraws.to_dict("records"):
        again = margin_verdict(a, b4, y, DELTA, n_boot=400, random_state=r["random_state"])
        assert (r["lo"], r["hi"], r["verdict"]) == (again["lo"], again["hi"], again["verdict"])
    assert redraws["lo"].nunique() > 1  # other draws, other bounds
    assert len(bootstrap_redraws(a, b4, y, DELTA, repeats=0, n_boot=400)) == 0
    with pytest.raises(ValueError, match="repeats"):
        bootstrap_redraws(a, b4, y, DELTA, repeats=-1)


def test_a_bound_at_zero_is_within_bootstrap_noise_and_a_clear_one_is_not():
    """Identical seeds: no t interval, the bootstrap decides alone. Breaking 27 of the baseline's
    right answers against 40 corrected puts the 90% lower bound near 0 (+0.0005 at random_state 0);
    breaking 20 puts it well above (+0.025)."""
    y, b, *_ = _sentences()
    edge, clear = (np.tile(_method(40, m), (3, 1)) for m in (27, 20))
    base = np.tile(b, (3, 1))
    published = margin_verdict(edge, base, y, DELTA, n_boot=1000)
    assert published["verdict"] == "reproduces" and 0 < published["lo"] < 0.002
    s = spread(bootstrap_redraws(edge, base, y, DELTA, repeats=10, n_boot=1000), published["verdict"])
    assert s["n"] == 10 and 0 < s["same"] < 1 and s["lo_min"] < 0 < s["lo_max"] and len(s["changed"]) >= 1
    firm = margin_verdict(clear, base, y, DELTA, n_boot=1000)
    s = spread(bootstrap_redraws(clear, base, y, DELTA, repeats=10, n_boot=1000), firm["verdict"])
    assert firm["verdict"] == "reproduces" and s["same"] == 1.0 and s["changed"] == [] and s["lo_min"] > 0.015


def test_spread_counts_verdicts_and_the_bounds_that_decide_them():
    rows = pd.DataFrame({"lo": [0.001, -0.002, 0.003], "hi": [0.02, 0.01, 0.03],
                         "verdict": ["reproduces", "does not reproduce", "reproduces"]}, index=[7, 8, 9])
    s = spread(rows, "reproduces")
    assert s["n"] == 3 and s["same"] == pytest.approx(2 / 3) and s["changed"] == [8]
    assert (s["lo_min"], s["lo_max"], s["hi_min"], s["hi_max"]) == (-0.002, 0.003, 0.01, 0.03)
    assert s["lo_mean"] == pytest.approx(0.002 / 3) and s["lo_sd"] == pytest.approx(np.std([0.001, -0.002, 0.003],
                                                                                             ddof=1))
    empty = spread(rows.iloc[:0], "reproduces")
    assert empty["n"] == 0 and np.isnan(empty["same"]) and np.isnan(empty["lo_sd"])


def _flipping_seeds():
    """Seeds 0 and 1 of the method gain (+12 corrected sentences each, net), seed 2 loses heavily:
    with all three the interval spans 0 and +0.017; without seed 2 a gain is shown."""
    y, b, *_ = _sentences()
    return y, b, np.stack([_method(40, 20), _method(40, 20), _method(0, 60)])


def test_leaving_out_the_one_bad_seed_flips_the_verdict():
    y, b, a = _flipping_seeds()
    base = np.tile(b, (3, 1))
    full = margin_verdict(a, base, y, DELTA, n_boot=500)
    loso = leave_one_seed_out(a, base, y, DELTA, seeds=[10, 11, 12], n_boot=500)
    assert full["verdict"] == "inconclusive"
    assert list(loso["left_out"]) == [10, 11, 12] and (loso["seeds"] == 2).all()
    assert list(loso["verdict"]) == ["inconclusive", "inconclusive", "reproduces"]
    without = margin_verdict(a[:2], base[:2], y, DELTA, n_boot=500)  # what a study of seeds 10, 11 says
    assert (loso.iloc[2]["lo"], loso.iloc[2]["hi"]) == (without["lo"], without["hi"])
    assert spread(loso, full["verdict"])["changed"] == [2]
    assert leave_one_seed_out(a[:2], base[:2], y, DELTA, n_boot=100).empty  # one seed left cannot be resampled


# ------------------------------------------------------------------------------------------- summary

def _run(results, loss, seed, pred, y, commit="a" * 40, head_wins=False):
    """A complete run folder as train.py writes it (the files the summary reads). Both rules predict
    ``pred``, and validation chooses each loss's a-priori rule (CE: head, combined: centroid), so the
    primary and the secondary comparison are one and sit on one row (``head_wins``: the combined
    loss's head is chosen instead, another comparison on another row)."""
    cfg = ExperimentConfig(loss=loss, seed=seed).validate()
    folder = run_folder(results, cfg)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**cfg.to_dict(), "encoder": "minilm"}))
    f1 = float(np.mean(pred == y))
    valid = {"head": 0.7, "centroid": 0.6} if loss == "ce" or head_wins else {"head": 0.6, "centroid": 0.7}
    metrics = {"primary_rule": "head", "method": cfg.loss, "encoder": "minilm", "best_epoch": 2, "epochs_run": 4,
               "valid": {r: {"macro_f1": v, "accuracy": v} for r, v in valid.items()},
               "test": {r: {"macro_f1": f1, "accuracy": f1} for r in ("head", "centroid")},
               "data": {"class_names": ["a", "b", "c"]}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "environment.json").write_text(json.dumps({"git": {"commit": commit, "dirty": False}}))
    pd.DataFrame({"id": [f"s{i:03d}" for i in range(len(y))], "label": y, "pred_head": pred,
                  "pred_centroid": pred}).to_csv(folder / "predictions.csv", index=False)
    pd.DataFrame({"epoch": [1, 2, 3, 4], "valid_macro_f1": [0.5, 0.6, 0.6, 0.6]}).to_csv(folder / "history.csv",
                                                                                        index=False)


def _study(folder, seeds=(1, 2, 3), head_wins=False):
    """CE and the combined loss of ``_flipping_seeds`` (its i-th seed as the i-th of ``seeds``)."""
    y, b, a = _flipping_seeds()
    for i, s in enumerate(seeds):
        _run(folder, "ce", s, b, y)
        _run(folder, "combined", s, a[i], y, head_wins=head_wins)
    return folder


def test_the_summary_reports_both_beside_each_verdict(tmp_path):
    table, nice, _ = build_summary(_study(tmp_path / "all"), n_boot=300, rng_repeats=4)
    prim = table[table["verdict"].notna() & (table["verdict"] != "")]
    assert len(prim) == 1
    r = prim.iloc[0]
    assert r["verdict"] == "inconclusive" and r["rng_redraws"] == 4 and 0 <= r["rng_same_verdict"] <= 1
    assert r["loso_same_verdict"] == pytest.approx(2 / 3) and r["loso_changed_by"] == "3"  # the seed, not its place
    assert r["within_bootstrap_noise"] == (r["rng_same_verdict"] < 1)
    assert r["loso_lo90_max"] > 0 > r["loso_lo90_min"]
    assert r["mde"] == minimum_detectable_effect(r["tl_se"]) > 0  # PROTOCOL.md §3's formula, the one in power.py
    # the same rules were chosen on validation: the secondary comparison and its columns on that row
    assert r["vc_verdict"] == "inconclusive" and r["vc_loso_changed_by"] == "3"
    others = table[table.index != prim.index[0]]
    assert others[list(SENSITIVITY_COLUMNS)].isna().all().all()
    # leaving seed 3 out is the summary of the study without seed 3; a re-draw is the summary under
    # that RNG seed
    sens = table.attrs["sensitivity"]["primary"]
    without = build_summary(_study(tmp_path / "without3", seeds=(1, 2)), n_boot=300, rng_repeats=0)[0]
    w = without[without["verdict"].notna() & (without["verdict"] != "")].iloc[0]
    (left,) = [x for x in sens["loso"] if x["left_out"] == 3]
    assert (left["lo"], left["hi"], left["verdict"]) == (w["lo90"], w["hi90"], w["verdict"])
    assert left["verdict"] == "reproduces"
    drawn = build_summary(tmp_path / "all", n_boot=300, random_state=3, rng_repeats=0)[0]
    d = drawn[drawn["verdict"].notna() & (drawn["verdict"] != "")].iloc[0]
    (third,) = [x for x in sens["redraws"] if x["random_state"] == 3]
    assert (third["lo"], third["hi"]) == (d["lo90"], d["hi90"])
    # the notes: four decimals on the verdict's bounds, the per-seed verdicts, the noise
    text = render_summary(nice)
    assert f"(90% interval [{r['lo90']:+.4f}, {r['hi90']:+.4f}]" in text
    assert f"without seed 3: reproduces [{left['lo']:+.4f}, {left['hi']:+.4f}]" in text
    assert "not a rule of the protocol" in text and "2 of 3 give the same verdict" not in text
    assert "The same verdict as with all 3 seeds in 2 of 3." in text
    assert "re-drawn with 4 other RNG seeds (random_state 1–4" in text
    assert text.count("Leave one seed out") == 1 and "are the primary comparison's, above." in text


def test_a_verdict_within_bootstrap_noise_is_flagged_in_the_summary(tmp_path, monkeypatch):
    """The flag follows the re-draws: stub them so that one of three disagrees."""
    import lib.study.summary as summary
    real = summary.verdict_sensitivity

    def one_disagrees(*args, **kwargs):
        redraws, loso = real(*args, **kwargs)
        redraws.loc[0, "verdict"] = "reproduces" if redraws.loc[0, "verdict"] != "reproduces" else "inconclusive"
        return redraws, loso
    monkeypatch.setattr(summary, "verdict_sensitivity", one_disagrees)
    table, nice, _ = build_summary(_study(tmp_path), n_boot=200, rng_repeats=3)
    r = table[table["verdict"].notna() & (table["verdict"] != "")].iloc[0]
    assert bool(r["within_bootstrap_noise"]) and r["rng_same_verdict"] == pytest.approx(2 / 3)
    assert "the same verdict in 2 of 3: **within bootstrap noise**" in render_summary(nice)
    monkeypatch.setattr(summary, "verdict_sensitivity", real)
    table, nice, _ = build_summary(tmp_path, n_boot=200, rng_repeats=3)
    r = table[table["verdict"].notna() & (table["verdict"] != "")].iloc[0]
    assert bool(r["within_bootstrap_noise"]) == (r["rng_same_verdict"] < 1)
    assert ("within bootstrap noise" in render_summary(nice)) == (r["rng_same_verdict"] < 1)


def test_the_secondary_comparison_on_its_own_row_has_its_own_sensitivity(tmp_path):
    table, nice, _ = build_summary(_study(tmp_path, head_wins=True), n_boot=200, rng_repeats=2)
    combined = table[table["method"] == "ce=0.15+triplet=0.4+arcface=0.45"].set_index("rule")
    assert combined.loc["centroid", "primary"] and combined.loc["centroid", "loso_changed_by"] == "3"
    assert combined.loc["head", "vc_loso_changed_by"] == "3" and combined.loc["head", "vc_rng_redraws"] == 2
    assert pd.isna(combined.loc["head", "loso_changed_by"]) and pd.isna(combined.loc["centroid", "vc_rng_redraws"])
    assert render_summary(nice).count("Leave one seed out") == 2


def test_rng_repeats_must_be_a_whole_number(tmp_path):
    with pytest.raises(ValueError, match="rng_repeats"):
        build_summary(_study(tmp_path), n_boot=100, rng_repeats=-1)
