"""Out-of-domain test sets: a toy pair end to end, the shared-class macro-F1 by hand, the named pairs,
the pinned download, and one clear refusal (exit status 2) for each bad input."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.data.datasets import KO6_CLASSES, DataInputError, ids_digest, load_dataset
from lib.data.out_of_domain import (KO_SINGLE_TURN7_FILE, KO_SINGLE_TURN7_SAMPLE_SHA256, PAIRS, Request,
                                    load_out_of_domain, load_user_set, parse_ood_spec)
from lib.paths import PROJECT_ROOT
from lib.run import main
from lib.training.config import ConfigError, ExperimentConfig
from lib.training.out_of_domain import shared_class_metrics
from tests.toy_ood import CLASSES, MAPPING, write_toy


def _hand_macro_f1(y, pred, shared) -> float:
    """Per shared class: TP, FP (predicted it, row of another class), FN (row of it, predicted another,
    a class without counterpart included); F1 = 2TP / (2TP + FP + FN); the mean over shared classes."""
    f1s = []
    for c in shared:
        tp = sum(1 for t, p in zip(y, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y, pred) if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1s) / len(f1s)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 4-class data set, a tiny encoder knowing its characters, and an out-of-domain CSV + mapping."""
    d = tmp_path_factory.mktemp("toy")
    korean = "정말 행복해요 화가 나요"  # for the cp949 files below
    return d, write_toy(d, ood_rows_per_label=5, extra_texts=[korean])


def _args(d: Path, encoder: Path, out: Path, ood: str, *extra: str) -> list[str]:
    return ["--dataset", str(d / "toy.csv"), "--encoder", str(encoder), "--epochs", "2", "--batch-size", "8",
            "--max-length", "32", "--ood", ood, "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def toy_run(toy, tmp_path_factory):
    d, encoder = toy
    out = tmp_path_factory.mktemp("runs") / "combined"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(_args(d, encoder, out, f"{d / 'reviews.csv'}={d / 'map.json'}", "--loss", "combined"))
    assert rc == 0
    return out, printed.getvalue()


def test_shared_class_macro_f1_by_hand():
    # classes 0, 1, 2 shared; 3 has no counterpart. Row 1 (true 0) predicted 3: a miss for class 0,
    # a false positive for none. Class 0: P 1/2, R 1/2 -> 1/2; class 1: P 1, R 1/2 -> 2/3; class 2: 1.
    y, pred = [0, 0, 1, 1, 2], [0, 3, 1, 0, 2]
    m = shared_class_metrics(y, pred, ["a", "b", "c", "d"], [0, 1, 2])
    assert m["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)  # 13/18; ignoring row 1 gives 7/9
    assert m["accuracy"] == pytest.approx(3 / 5) and m["predicted_without_counterpart"] == pytest.approx(1 / 5)
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert set(m["per_class"]) == {"a", "b", "c"}
    assert m["confusion_matrix"] == [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0]]


def test_toy_pair_end_to_end_every_rule(toy_run):
    out, printed = toy_run
    folder = out / "ood" / "reviews"
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "predictions.csv"]
    met = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    preds = pd.read_csv(folder / "predictions.csv")
    assert met["rows"] == len(preds) == 15 and met["notes"]["left_out_unmapped"] == {"bored": 5}
    assert met["shared_classes"] == ["anger", "fear", "joy"] and met["classes_without_counterpart"] == ["shame"]
    assert "a prediction of a class without counterpart counts as an error" in met["scoring"]
    assert met["notes"]["ids_sha256"] == ids_digest(preds["id"]) and met["notes"]["texts_in_training_split"] == 0
    # labels are the run's class indices, mapped from their own labels
    assert (preds["label"] == preds["source_label"].map(lambda s: CLASSES.index(MAPPING[s]))).all()
    assert set(met["by_rule"]) == {"head", "centroid", "knn", "arcface"} == {c[5:] for c in preds if c.startswith("pred_")}
    for rule, scores in met["by_rule"].items():
        y, p = preds["label"].tolist(), preds[f"pred_{rule}"].tolist()
        assert scores["macro_f1"] == pytest.approx(_hand_macro_f1(y, p, [0, 1, 2])), rule
        assert scores["accuracy"] == pytest.approx(np.mean(np.array(y) == np.array(p))), rule
    run_metrics = json.loads((out / "metrics.json").read_text())
    summary = run_metrics["out_of_domain"]["reviews"]
    assert summary["primary_rule"] == run_metrics["primary_rule"] == met["primary_rule"] == "centroid"
    assert summary["macro_f1"] == {r: s["macro_f1"] for r, s in met["by_rule"].items()}
    lines = printed.strip().splitlines()
    assert lines[0].startswith("test macro-F1") and len(lines) == 2
    assert lines[1].startswith(f"out-of-domain reviews macro-F1 {met['macro_f1']:.4f} over 3 shared classes, 15 rows")
    assert "class without counterpart counts as an error" in lines[1]
    assert json.loads((out / "config.json").read_text())["ood"].endswith("map.json")


def test_frozen_run_scores_ood_from_cached_features(toy, tmp_path, monkeypatch):
    d, encoder = toy
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "frozen"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(_args(d, encoder, out, f"{d / 'reviews.csv'}={d / 'map.json'}", "--freeze-encoder")) == 0
    met = json.loads((out / "ood" / "reviews" / "metrics.json").read_text())
    preds = pd.read_csv(out / "ood" / "reviews" / "predictions.csv")
    assert met["primary_rule"] == "head" and set(met["by_rule"]) == {"head", "centroid", "knn"}  # ce: no arcface
    assert met["macro_f1"] == pytest.approx(_hand_macro_f1(preds["label"], preds["pred_head"], [0, 1, 2]))
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 4  # train, valid, test, reviews


def test_a_failed_run_publishes_no_ood_results(toy, tmp_path, monkeypatch):
    from lib.training import train

    d, encoder = toy

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(train, "_write_run", boom)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        train.run_experiment(ExperimentConfig(dataset=str(d / "toy.csv"), encoder=str(encoder), epochs=1,
                                              batch_size=8, ood=f"{d / 'reviews.csv'}={d / 'map.json'}"), out,
                             quiet=True)
    partial = out.with_name("run.partial")
    assert not out.exists() and (partial / "FAILED.json").is_file()
    assert (partial / "ood" / "reviews" / "metrics.json").is_file()  # scored, but never published


# ---- refusals: one message naming the file, exit status 2, nothing written ------------------------

def _refusal(toy, tmp_path, capsys, ood: str) -> str:
    d, encoder = toy
    out = tmp_path / "runs" / "run"
    assert main(_args(d, encoder, out, ood)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()  # refused before any folder was made
    return err


def test_unknown_class_name_in_mapping_is_refused(toy, tmp_path, capsys):
    d, _ = toy
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"happy": "joy", "mad": "rage"}))
    err = _refusal(toy, tmp_path, capsys, f"{d / 'reviews.csv'}={bad}")
    assert f"{bad}: unknown class name(s) 'rage'" in err and "anger, fear, joy, shame" in err


def test_empty_mapping_is_refused(toy, tmp_path, capsys):
    d, _ = toy
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert f"{empty}: the mapping is empty" in _refusal(toy, tmp_path, capsys, f"{d / 'reviews.csv'}={empty}")


@pytest.mark.parametrize("text, label", [('{"happy": "joy", "happy": "anger"}', "label 'happy' is mapped twice (to 'joy' and 'anger'"),
                                         ('{"mad": "anger", " mad ": "fear"}', "label 'mad' is mapped twice"),
                                         ('{"happy": "joy", " ": "anger"}', "an empty label is mapped")])
def test_a_label_mapped_twice_or_an_empty_one_is_refused(text, label, toy, tmp_path, capsys):
    """JSON keeps the last of two equal keys without a word: a mapping that says two things is refused."""
    d, _ = toy
    bad = tmp_path / "twice.json"
    bad.write_text(text)
    assert f"{bad}: {label}" in _refusal(toy, tmp_path, capsys, f"{d / 'reviews.csv'}={bad}")


def test_a_mapped_label_whose_every_text_is_empty_is_refused(toy, tmp_path, capsys):
    """Its class would be shared with no row to score: F1 0 for every method, every macro-F1 lower."""
    d, _ = toy
    table = tmp_path / "reviews.csv"
    frame = pd.read_csv(d / "reviews.csv", dtype=str, keep_default_na=False)
    frame.loc[frame["label"] == "scared", "text"] = "  "
    frame.to_csv(table, index=False)
    err = _refusal(toy, tmp_path, capsys, f"{table}={d / 'map.json'}")
    assert f"{table}: every row of label(s) 'scared' (mapped in {d / 'map.json'}) has an empty 'text'" in err


def test_a_tuning_run_scores_no_out_of_domain_set(toy, tmp_path):
    from lib.training import train

    d, encoder = toy
    cfg = ExperimentConfig(dataset=str(d / "toy.csv"), encoder=str(encoder), epochs=1, batch_size=8,
                           ood=f"{d / 'reviews.csv'}={d / 'map.json'}")
    with pytest.raises(ConfigError, match="validation_only runs score no held-out set; ood"):
        train.run_experiment(cfg, tmp_path / "run", quiet=True, validation_only=True)
    assert not list(tmp_path.iterdir())


def _korean_csv(path: Path, encoding: str) -> Path:
    path.write_bytes("text,label\n정말 행복해요,행복\n화가 나요,분노\n".encode(encoding))
    return path


def test_cp949_file_read_as_utf8_is_refused(toy, tmp_path, capsys):
    table = _korean_csv(tmp_path / "kor.csv", "cp949")
    mapping = tmp_path / "kor.json"
    mapping.write_text(json.dumps({"행복": "joy", "분노": "anger"}, ensure_ascii=False), encoding="utf-8")
    err = _refusal(toy, tmp_path, capsys, f"{table}={mapping}")
    assert f"{table} is not utf-8 text" in err and "declare it as CSV@cp949" in err


def test_a_cp949_mapping_file_is_refused_with_the_fix_for_a_mapping(toy, tmp_path, capsys):
    table = _korean_csv(tmp_path / "kor.csv", "cp949")
    mapping = tmp_path / "kor.json"
    mapping.write_bytes(json.dumps({"행복": "joy"}, ensure_ascii=False).encode("cp949"))
    err = _refusal(toy, tmp_path, capsys, f"{table}@cp949={mapping}")
    assert f"{mapping} is not utf-8 text" in err and "save the mapping file as UTF-8" in err
    assert "CSV@cp949" not in err  # the CSV's remedy would not fix a mapping


def test_utf8_file_declared_cp949_is_refused(toy, tmp_path, capsys):
    table = _korean_csv(tmp_path / "kor.csv", "utf-8")
    mapping = tmp_path / "kor.json"
    mapping.write_text(json.dumps({"행복": "joy"}, ensure_ascii=False), encoding="utf-8")
    err = _refusal(toy, tmp_path, capsys, f"{table}@cp949={mapping}")
    assert f"{table} is UTF-8 text, not cp949 as declared" in err


def test_a_declared_cp949_file_is_read(tmp_path):
    table = _korean_csv(tmp_path / "kor.csv", "cp949")
    mapping = tmp_path / "kor.json"
    mapping.write_text(json.dumps({"행복": "기쁨", "분노": "anger"}, ensure_ascii=False), encoding="utf-8")
    [req] = parse_ood_spec(f"{table}@cp949={mapping}", "ko6")
    assert req.encoding == "cp949" and req.name == "kor"
    s = load_user_set(req, list(KO6_CLASSES), aliases={"기쁨": "happiness"})  # ko6's Korean class names
    assert s.frame["text"].tolist() == ["정말 행복해요", "화가 나요"] and s.frame["label"].tolist() == [0, 2]
    assert s.mapping == {"행복": "happiness", "분노": "anger"} and s.shared == [0, 2]


def test_mapping_label_absent_from_the_csv_is_refused(toy, tmp_path):
    d, _ = toy
    mapping = tmp_path / "typo.json"
    mapping.write_text(json.dumps({"hapy": "joy"}))
    with pytest.raises(DataInputError, match=rf"{mapping}: label\(s\) 'hapy' do not occur in column 'label'"):
        load_user_set(Request("reviews", csv=str(d / "reviews.csv"), mapping=str(mapping)), list(CLASSES))


def test_ood_texts_seen_in_training_are_counted(toy, tmp_path):
    d, _ = toy
    bundle = load_dataset(str(d / "toy.csv"))
    seen = bundle.train["text"].iloc[0]
    pd.DataFrame({"text": [seen, "never seen", "nor this", f"  {seen} "], "label": ["happy", "mad", "scared", "bored"]}
                 ).to_csv(tmp_path / "mixed.csv", index=False)
    [s] = load_out_of_domain(f"{tmp_path / 'mixed.csv'}={d / 'map.json'}", bundle)
    assert len(s.frame) == 3 and s.notes["texts_in_training_split"] == 1  # bored: left out, not counted
    assert s.notes["texts_in_validation_split"] == s.notes["texts_in_test_split"] == 0


def test_ood_texts_of_every_split_are_counted_and_a_run_warns_of_them(toy, tmp_path, capsys):
    from types import SimpleNamespace

    from lib.training.out_of_domain import load_sets

    d, _ = toy
    bundle = load_dataset(str(d / "toy.csv"))
    valid, test = bundle.valid["text"].iloc[0], bundle.test["text"].iloc[0]
    pd.DataFrame({"text": [valid, test, test, "twice", "twice", "once"],
                  "label": ["happy", "mad", "mad", "happy", "mad", "scared"]}).to_csv(tmp_path / "m.csv", index=False)
    cfg = SimpleNamespace(ood=f"{tmp_path / 'm.csv'}={d / 'map.json'}", text_column="text", label_column="label")
    [s] = load_sets(cfg, bundle)
    assert (s.notes["texts_in_training_split"], s.notes["texts_in_validation_split"],
            s.notes["texts_in_test_split"]) == (0, 1, 2)
    assert s.notes["repeated_texts"] == 2 and s.notes["texts_with_conflicting_labels"] == 1  # "twice" only
    err = capsys.readouterr().err
    assert err == (f"warning: out-of-domain set m: 1 row(s) whose text is also in the validation split, 2 row(s) "
                   f"whose text is also in the test split of {bundle.name} (ood/m/metrics.json notes them): not "
                   "wholly out of domain\n")
    pd.DataFrame({"text": ["fresh one", "fresh two", "fresh three"], "label": ["happy", "mad", "scared"]}
                 ).to_csv(tmp_path / "m.csv", index=False)
    load_sets(cfg, bundle)
    assert capsys.readouterr().err == ""  # nothing shared: nothing said


@pytest.mark.parametrize("dataset,ood,message", [
    ("ed6", "nope", "unknown out-of-domain set 'nope'"),
    ("ed32", "auto", "auto: data set 'ed32' has no named out-of-domain pair"),
    ("ed6", "ko_single_turn7", "ko_single_turn7 maps onto the classes of ko6, not of 'ed6'"),
    ("ed6", "auto,goemotions6", "two out-of-domain sets named goemotions6"),
    ("ed6", "a.csv@latin99=m.json", "unknown text encoding 'latin99'"),
    ("ed6", "a.csv=", "CSV=MAPPING.json"),
    ("ed6", "auto,,x", "empty item"),
])
def test_bad_ood_settings_are_config_errors(dataset, ood, message):
    with pytest.raises(ConfigError, match=f"^ood: .*{message}"):
        ExperimentConfig(dataset=dataset, ood=ood).validate()


def test_ood_setting_on_the_command_line(tmp_path, capsys):
    assert main(["--ood", "nope", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.startswith("error: ood: unknown out-of-domain set 'nope'")
    assert not list(tmp_path.iterdir())
    assert ExperimentConfig(ood="none").validate().ood is None  # --ood none unsets it
    assert [r.pair for r in parse_ood_spec("auto", "ko6")] == ["ko_single_turn7"]


def test_published_configs_lack_the_field_and_stay_valid():
    published = sorted((PROJECT_ROOT / "results").rglob("config.json"))
    if not published:
        pytest.skip("no published run folders")
    saved = json.loads(published[0].read_text())
    assert "ood" not in saved
    assert ExperimentConfig.from_dict(saved).validate().ood is None


# ---- the named pairs (with the shared data) -------------------------------------------------------

def _need(root: Path, *rels: str) -> None:
    missing = [r for r in rels if not (root / r).is_file()]
    if missing:
        pytest.skip(f"data not in {root}: {', '.join(missing)}")


def test_ko_single_turn7_sample(shared_data):
    _need(shared_data, KO_SINGLE_TURN7_FILE[0], "ko_emotion6/data_class_6_all.csv")
    bundle = load_dataset("ko6", root=shared_data, download=False)
    [s] = load_out_of_domain("auto", bundle, root=shared_data, download=False)
    assert s.name == "ko_single_turn7" and s.notes["file_rows"] == 38594 and len(s.frame) == 4000
    assert s.frame["source_label"].value_counts().to_dict() == {"공포": 1000, "분노": 1000, "슬픔": 1000, "행복": 1000}
    assert [KO6_CLASSES[c] for c in s.shared] == ["happiness", "anger", "anxiety", "sadness"]
    assert s.without_counterpart == ["embarrassment", "heartbroken"]
    assert s.notes["ids_sha256"] == KO_SINGLE_TURN7_SAMPLE_SHA256 == \
        "50d57774c7d42773312dce97e30fbd8e9988e1366de8bafd64299fef00842924"
    assert s.frame["id"].is_unique and s.frame["id"].is_monotonic_increasing and s.frame["text"].ne("").all()
    every_ko6_text = set(pd.concat([bundle.split(x)["text"] for x in ("train", "valid", "test")]))
    assert not s.frame["text"].isin(every_ko6_text).any() and s.notes["texts_in_training_split"] == 0
    assert s.notes["texts_in_validation_split"] == s.notes["texts_in_test_split"] == 0
    # six texts repeat in the sample; one ("어떻게 해야 할까요?") under two labels: noted, not dropped
    assert (s.notes["repeated_texts"], s.notes["texts_with_conflicting_labels"]) == (6, 1)


def test_goemotions6_pool(shared_data):
    _need(shared_data, "goemotions/train.tsv", "goemotions/dev.tsv", "goemotions/test.tsv",
          "empathetic_dialogues/train.csv")
    bundle = load_dataset("ed6", root=shared_data, download=False)
    [s] = load_out_of_domain("goemotions6", bundle, root=shared_data, download=False)
    assert len(s.frame) == 3718 and s.frame["id"].is_unique
    assert s.frame["source_label"].value_counts().to_dict() == {
        "anger": 1265, "joy": 1052, "sadness": 1003, "embarrassment": 246, "nervousness": 105, "grief": 47}
    assert s.shared == list(range(6)) and s.without_counterpart == []
    assert (s.notes["repeated_texts"], s.notes["texts_with_conflicting_labels"]) == (9, 0)
    assert (s.frame["label"] == s.frame["source_label"].map(
        lambda x: bundle.class_names.index(PAIRS["goemotions6"].mapping[x]))).all()
    ed32 = load_dataset("ed32", root=shared_data, download=False)  # every ED text, the ed6 ones included
    every_ed_text = set(pd.concat([ed32.split(x)["text"] for x in ("train", "valid", "test")]).str.lower())
    assert not s.frame["text"].str.lower().isin(every_ed_text).any()


def test_ko_single_turn7_download_is_pinned(tmp_path, shared_data, monkeypatch):
    _need(shared_data, KO_SINGLE_TURN7_FILE[0], "ko_emotion6/data_class_6_all.csv")
    rel, url, sha = KO_SINGLE_TURN7_FILE
    commit = url.split("/")[5]
    assert url.startswith("https://raw.githubusercontent.com/wisome/data/") and len(commit) == 40
    assert url.endswith("/%EB%8D%B0%EC%9D%B4%ED%84%B0%EC%85%8B.csv")  # 데이터셋.csv
    assert sha == "0aa07499070a286ed85f858e838d10dfde334ae4f387e9837a3da45905772d65"
    monkeypatch.setenv("STUDY_DATA_MIRROR", shared_data.as_uri())  # a file:// mirror: no internet here
    bundle = load_dataset("ko6", root=shared_data, download=False)
    [s] = load_out_of_domain("ko_single_turn7", bundle, root=tmp_path / "data")
    assert (tmp_path / "data" / rel).is_file() and s.notes["ids_sha256"] == KO_SINGLE_TURN7_SAMPLE_SHA256


# ---- re-runs and the loss-free baselines ----------------------------------------------------------

def test_reproduce_compares_the_ood_files(toy_run, tmp_path):
    from lib.study.reproduce import compare_runs

    out, _ = toy_run
    again = tmp_path / "again"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--reproduce", str(out), "--out", str(again), "--quiet"]) == 0
    assert "reproduced exactly" in printed.getvalue()
    for name in ("metrics.json", "predictions.csv"):  # the re-run scored the set again, bit for bit
        assert (again / "ood" / "reviews" / name).read_bytes() == (out / "ood" / "reviews" / name).read_bytes()
    preds = pd.read_csv(again / "ood" / "reviews" / "predictions.csv", dtype={"id": str})
    preds.loc[0, "pred_knn"] = (preds.loc[0, "pred_knn"] + 1) % len(CLASSES)
    preds.to_csv(again / "ood" / "reviews" / "predictions.csv", index=False)
    assert compare_runs(out, again) == ["ood/reviews/predictions.csv column pred_knn: 1 value(s) differ"]


@pytest.mark.parametrize("method", ["tfidf-lr", "encoder-lr"])
def test_baselines_score_the_sets_given_their_run_folder(toy, tmp_path, monkeypatch, method):
    from lib.training.baselines import run_baseline
    from lib.training.results import RunDir
    from lib.training.train import prepare

    d, encoder = toy
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    spec = f"{d / 'reviews.csv'}={d / 'map.json'}"
    cfg = ExperimentConfig(dataset=str(d / "toy.csv"), encoder=str(encoder), method=method, max_length=32,
                           ood=spec).validate()
    prep = prepare(cfg)
    assert [s.name for s in prep.ood] == ["reviews"]  # tfidf-lr's prepare, which loads no encoder, keeps them
    run = RunDir(tmp_path / "run")
    metrics, _, test_preds = run_baseline(cfg, prep, run)
    met = json.loads(run.path("ood/reviews/metrics.json").read_text(encoding="utf-8"))
    preds = pd.read_csv(run.path("ood/reviews/predictions.csv"))
    assert met["primary_rule"] == "head" and met["rules"] == ["head"] and set(met["by_rule"]) == {"head"}
    assert met["rows"] == len(preds) == 15 and met["classes_without_counterpart"] == ["shame"]
    assert list(preds.columns) == ["id", "source_label", "label", "pred_head", "head_confidence"]
    assert met["macro_f1"] == pytest.approx(_hand_macro_f1(preds["label"], preds["pred_head"], [0, 1, 2]))
    assert metrics["out_of_domain"]["reviews"]["macro_f1"] == {"head": met["macro_f1"]}
    assert preds["head_confidence"].between(1 / len(CLASSES), 1).all()
    # without the folder nothing is scored, and the in-domain results are the same either way
    plain, _, plain_preds = run_baseline(cfg, prep)
    assert "out_of_domain" not in plain and plain["test"] == metrics["test"]
    pd.testing.assert_frame_equal(plain_preds, test_preds)
    # and from the command line, into the run folder beside the in-domain results
    assert main(["--dataset", str(d / "toy.csv"), "--encoder", str(encoder), "--method", method, "--max-length", "32",
                 "--ood", spec, "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    assert json.loads((tmp_path / "cli" / "ood" / "reviews" / "metrics.json").read_text())["macro_f1"] == met["macro_f1"]
