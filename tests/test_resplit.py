"""A split redrawn per seed (lib.data.resplit): validation untouched, each seed's test set a stratified draw
of the original size from the training and test sentences, the same for the same seed."""
from __future__ import annotations

import numpy as np

from lib.data.datasets import ids_digest, load_dataset
from lib.data.resplit import resplit

KO6_TEST_DIGEST = "ac8162ec9c4dba0fc81e1b1ec491bee51b2e78d14c58cc5886cd0f142d183c0d"  # tests/test_datasets.py


def test_each_seed_draws_its_own_test_set_and_never_touches_validation(shared_data):
    b = load_dataset("ko6", root=shared_data, download=False)
    pool = set(b.train["id"]) | set(b.test["id"])
    tests = {}
    for seed in (0, 1, 2):
        r = resplit(b, seed)
        assert abs(len(r.test) - 900) <= 5 and len(r.train) + len(r.test) == 7900 and len(r.valid) == 2100
        assert r.valid.equals(b.valid)  # the split that chose epochs and recipes keeps every sentence
        assert set(r.train["id"]) | set(r.test["id"]) == pool and not set(r.train["id"]) & set(r.test["id"])
        # whole texts move: no test sentence was seen in training (the seed study's own split has 27 such)
        assert not set(r.train["text"].str.strip()) & set(r.test["text"].str.strip())
        # stratified: each class's share of the test set within a few sentences of its share of the pool
        share = np.bincount(np.concatenate([b.train["label"], b.test["label"]]), minlength=6) / len(pool) * 900
        assert np.all(np.abs(r.class_counts()["test"].to_numpy() - share) <= 4)
        assert r.notes["resplit"]["seed"] == seed and r.notes["resplit"]["pool"] == 7900
        assert r.notes["resplit"]["test"] == len(r.test) and r.notes["resplit"]["grouped_by_text"]
        assert r.notes["resplit"]["test_ids_sha256"] == ids_digest(r.test["id"]) != KO6_TEST_DIGEST
        tests[seed] = set(r.test["id"])
        # texts travel with their ids and labels
        row = r.test.iloc[0]
        source = b.train if row["id"] in set(b.train["id"]) else b.test
        assert source.set_index("id").loc[row["id"], ["text", "label"]].tolist() == [row["text"], row["label"]]
    assert resplit(b, 1).test.equals(resplit(b, 1).test)  # the same seed, the same draw
    overlap = len(tests[0] & tests[1]) / len(tests[0])
    assert 0.05 < overlap < 0.2  # about 900/7900 of a test set recurs in another seed's: independent draws
    assert ids_digest(load_dataset("ko6", root=shared_data, download=False).test["id"]) == KO6_TEST_DIGEST


def test_a_run_with_resplit_is_scored_on_its_seeds_own_test_set(tiny_config, tmp_path):
    """Two seeds of one tiny run with ``resplit``: the test sentences differ by seed and the run records its
    draw; without the option the data set's own test set stays (prepare_data, nothing trained)."""
    import json

    import pandas as pd

    from lib.training.train import prepare_data, run_experiment

    ids, notes = {}, {}
    for name, cfg in {"s0": tiny_config(resplit=True, seed=0), "s1": tiny_config(resplit=True, seed=1)}.items():
        run_experiment(cfg, tmp_path / name, quiet=True)
        ids[name] = set(pd.read_csv(tmp_path / name / "predictions.csv", dtype={"id": str})["id"])
        notes[name] = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))["data"]["notes"]
        assert json.loads((tmp_path / name / "config.json").read_text(encoding="utf-8"))["resplit"] is True
    fixed = prepare_data(tiny_config(seed=0))
    ids["fixed"] = set(fixed.test["id"])
    assert len(ids["s0"]) == len(ids["s1"]) == len(ids["fixed"]) == 48
    assert ids["s0"] != ids["s1"] and ids["s0"] != ids["fixed"]
    assert notes["s1"]["resplit"]["seed"] == 1 and "resplit" not in fixed.notes
    assert any(i.startswith("ed-train-") for i in ids["s0"])  # drawn from the pooled training sentences too
    assert all(i.startswith("ed-test-") for i in ids["fixed"])


RUNS = __import__("lib.paths", fromlist=["PROJECT_ROOT"]).PROJECT_ROOT / "results" / "ed6-minilm" / "runs"
COMBINED = "ce0.15_triplet0.4_arcface0.45"


def _own_splits_study(root, seeds=(0, 1, 2), resplit_for=lambda name, seed: True):
    """Copies of the published ed6 runs of CE and the combined loss, each seed's test sentences renamed as if
    drawn for that seed alone (ids s<seed>-...; labels and predictions as published), config resplit set."""
    import json
    import shutil

    import pandas as pd

    for name in ("ce1.0", COMBINED):
        for seed in seeds:
            run = root / "runs" / name / f"seed{seed}"
            shutil.copytree(RUNS / name / f"seed{seed}", run)
            config = json.loads((run / "config.json").read_text(encoding="utf-8"))
            (run / "config.json").write_text(json.dumps({**config, "resplit": resplit_for(name, seed)}),
                                             encoding="utf-8")
            frame = pd.read_csv(run / "predictions.csv", dtype={"id": str})
            frame["id"] = f"s{seed}-" + frame["id"]
            frame.to_csv(run / "predictions.csv", index=False)
    return root


def test_a_study_of_own_splits_pairs_by_seed_with_the_split_bootstrap(tmp_path):
    """The summary of a resplit study compares each seed's runs on that seed's sentences, with split_bootstrap
    (not two_level_bootstrap, which would assume one shared test set), and says so in its notes."""
    import numpy as np
    import pandas as pd
    import pytest

    from lib.evaluation.bootstrap import split_bootstrap
    from lib.study.summary import build_summary, notes

    if not RUNS.is_dir():
        pytest.skip("the published ed6 runs are not in this checkout")
    study = _own_splits_study(tmp_path / "study")
    table, _, _ = build_summary(study, n_boot=300, rng_repeats=1)
    row = table[(table["method"] == "ce=0.15+triplet=0.4+arcface=0.45") & table["primary"]].iloc[0]
    assert row["tl_design"] == "paired seeds, own splits" and row["tl_seeds"] == 3

    def preds(name, seed, rule):
        f = pd.read_csv(study / "runs" / name / f"seed{seed}" / "predictions.csv")
        return f[f"pred_{rule}"].to_numpy(), f["label"].to_numpy()
    a = [preds(COMBINED, s, "centroid")[0] for s in (0, 1, 2)]
    b = [preds("ce1.0", s, "head")[0] for s in (0, 1, 2)]
    ys = [preds("ce1.0", s, "head")[1] for s in (0, 1, 2)]
    expected = split_bootstrap(a, b, ys, n_boot=300, random_state=0, n_classes=6)
    assert (row["tl_diff"], row["tl_lo"], row["tl_hi"]) == pytest.approx((expected["diff"], expected["lo"],
                                                                          expected["hi"]))
    lines = notes(table, "ce=1.0")
    assert any(line.startswith("Design: every seed has a split of its own") for line in lines)
    verdict = next(line for line in lines if "− CE = " in line)
    assert "t over seeds (each on its own test set)" in verdict and "test set fixed" not in verdict
    assert verdict.startswith("The protocol's comparison on a split of each seed's own (Study 2")
    assert not table.attrs["primary_study"]
    assert np.isfinite(row["lo90"]) and isinstance(row["verdict"], str) and row["verdict"]


def test_a_study_mixing_own_splits_and_the_fixed_one_is_refused(tmp_path):
    import pytest

    from lib.study.summary import build_summary

    if not RUNS.is_dir():
        pytest.skip("the published ed6 runs are not in this checkout")
    within = _own_splits_study(tmp_path / "within", resplit_for=lambda name, seed: seed != 2)
    with pytest.raises(ValueError, match=r"runs of ce=0.15\+triplet=0.4\+arcface=0.45 differ in resplit"):
        build_summary(within, n_boot=50, rng_repeats=1)
    across = _own_splits_study(tmp_path / "across", resplit_for=lambda name, seed: name != "ce1.0")
    with pytest.raises(ValueError, match="runs with and without a split of their own seed in one study"):
        build_summary(across, n_boot=50, rng_repeats=1)


def test_a_folder_holds_one_design_and_its_name_says_which(tmp_path, capsys):
    """RESPLIT runs go to *-resplit[-tuned] folders and only they, by run_all.sh and by a notebook run by hand
    (JupyterLab keeps no executed copy): otherwise they would replace the fixed-split runs seed by seed."""
    import pytest

    from lib.study.experiments import DesignFolderError, check_design_folder
    from lib.study.runner import main

    check_design_folder(tmp_path / "ko6-me5-small-resplit", True)
    check_design_folder(tmp_path / "ko6-me5-small-resplit-tuned", True)
    check_design_folder(tmp_path / "ko6-me5-small", False)
    with pytest.raises(DesignFolderError, match=r"named \*-resplit\[-tuned\]; ko6-me5-small-tuned is not one "
                                                r"\(e.g. ko6-me5-small-resplit-tuned\)"):
        check_design_folder(tmp_path / "ko6-me5-small-tuned", True)
    with pytest.raises(DesignFolderError, match="ed6-minilm-resplit is a folder of runs on a split of each seed's own"):
        check_design_folder(tmp_path / "ed6-minilm-resplit", False)
    results = tmp_path / "mine"
    assert main(["--profile", "smoke", "--seeds", "0", "--results", str(results), "--set", "RESPLIT=True"]) == 2
    assert "mine is not one (e.g. mine-resplit)" in capsys.readouterr().err and not results.exists()


def test_the_notebooks_spelling_of_a_boolean_is_a_boolean():
    """--set RESPLIT=False is the notebook's own spelling; read as the string "False" it would be true."""
    from lib.study.runner import parse_overrides

    got = parse_overrides(["RESPLIT=False", "BF16=True", "OUT_OF_DOMAIN=None", "FREEZE_ENCODER=false"],
                          ["01_baseline_ce"])
    assert got == {"RESPLIT": False, "BF16": True, "OUT_OF_DOMAIN": None, "FREEZE_ENCODER": False}


def test_a_baseline_trained_on_the_fixed_split_is_not_reused_for_a_split_of_its_own(shared_data):
    """The loss-free baselines read the data, so resplit (and ood) are part of what they computed."""
    import json

    from lib.study.experiments import same_config
    from lib.training.config import ExperimentConfig

    saved = json.loads((RUNS / "tfidf-lr" / "seed0" / "config.json").read_text(encoding="utf-8"))
    assert "resplit" not in saved  # written before the field existed: reads as its default
    cfg = ExperimentConfig.from_dict(saved)
    assert same_config(saved, cfg)
    assert not same_config(saved, ExperimentConfig.from_dict({**saved, "resplit": True}))
    assert not same_config(saved, ExperimentConfig.from_dict({**saved, "ood": "auto"}))


def test_dropping_cross_split_duplicates_leaves_every_seed_the_same_validation_sentences(tiny_config):
    """drop_cross_split_duplicates works on the data set's own split before a seed redraws its test set:
    dropped afterwards, the validation sentences would depend on each seed's training set."""
    from lib.training.train import prepare_data

    full = dict(dataset="ko6", max_train_samples=None, max_eval_samples=None, drop_cross_split_duplicates=True)
    fixed = prepare_data(tiny_config(seed=0, **full))
    assert fixed.notes["dropped_cross_split_duplicates"] == {"valid": 53, "test": 32}  # ko6's own split repeats texts
    for seed in (0, 1):
        b = prepare_data(tiny_config(seed=seed, resplit=True, **full))
        assert b.valid.equals(fixed.valid), seed
        assert not set(b.valid["text"]) & (set(b.train["text"]) | set(b.test["text"]))
        assert b.notes["dropped_cross_split_duplicates"] == fixed.notes["dropped_cross_split_duplicates"]


def test_tuning_with_duplicates_dropped_never_reads_the_test_split(tiny_config, monkeypatch):
    """validation_only (tuning) replaces the test split before drop_cross_split_duplicates could read it."""
    from lib.data import datasets
    from lib.training import train

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the test split was read ({name})")

    def load_without_test(*args, **kwargs):
        bundle = datasets.load_dataset(*args, **kwargs)
        bundle.test = Untouchable()
        return bundle

    monkeypatch.setattr(train, "load_dataset", load_without_test)
    b = train.prepare_data(tiny_config(dataset="ko6", drop_cross_split_duplicates=True), validation_only=True)
    assert len(b.test) == 0 and b.notes["dropped_cross_split_duplicates"]["test"] == 0
