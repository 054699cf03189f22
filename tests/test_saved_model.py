"""A run's saved model (``--save-model``) labels new sentences exactly as the run labelled its test split:
through lib.training.saved_model.load_model and through ``python -m lib.predict``; bad input is refused
in one line with exit status 2. The encoder is a tiny random BERT whose folder name makes it an e5
model, so the saved query prefix ("query: ") is exercised too."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lib.data.datasets import load_dataset
from lib.entrypoint import run_main
from lib.paths import PROJECT_ROOT
from lib.training.config import ExperimentConfig
from lib.training.saved_model import SavedModelError, load_model
from lib.training.train import prepare_data, run_experiment
from tests.tiny_encoder import make_tiny_bert


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory):
    bundle = load_dataset("ed6")
    texts = pd.concat([bundle.train["text"], bundle.valid["text"], bundle.test["text"], pd.Series(["query: "])])
    return str(make_tiny_bert(tmp_path_factory.mktemp("encoder") / "tiny-e5", texts))


def _config(encoder: str, **overrides) -> ExperimentConfig:
    fields = dict(dataset="ed6", encoder=encoder, epochs=2, batch_size=16, max_length=64, max_train_samples=96,
                  max_eval_samples=64, encoder_lr=1e-3, seed=1, eval_batch_size=16)  # several evaluation batches
    fields.update(overrides)
    return ExperimentConfig(**fields)


@pytest.fixture(scope="module")
def runs(tiny_e5, tmp_path_factory):
    """name -> (config, run folder, metrics): a fine-tuned run with all four rules and a frozen-encoder
    run with two, both saving their model; and the fine-tuned run again without saving it."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, cfg, save in (("combined", _config(tiny_e5, loss="combined"), True),
                            ("frozen", _config(tiny_e5, loss="triplet", freeze_encoder=True, head_lr=1e-2), True),
                            ("unsaved", _config(tiny_e5, loss="combined"), False)):
        made[name] = (cfg, root / name, run_experiment(cfg, root / name, quiet=True, save_model=save))
    return made


def _test_split(cfg, out) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the run's predictions.csv, its test sentences in that order: sorted by id)."""
    preds = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    test = prepare_data(cfg).test.set_index("id").loc[preds["id"]].reset_index()
    return preds, test


@pytest.mark.parametrize("name", ["combined", "frozen"])
def test_the_saved_model_gives_the_runs_test_predictions_for_every_rule(runs, name):
    cfg, out, metrics = runs[name]
    preds, test = _test_split(cfg, out)
    model = load_model(out)
    assert model.rules == metrics["rules"] and model.primary_rule == metrics["primary_rule"]
    assert set(metrics["rules"]) == ({"head", "centroid", "knn", "arcface"} if name == "combined" else {"centroid", "knn"})
    run_emb = np.load(out / "test_embeddings.npy")
    for rule in metrics["rules"]:
        frame, emb = model.predict(test["text"].tolist(), rule=rule, with_embeddings=True)
        assert np.array_equal(frame["predicted_index"].to_numpy(), preds[f"pred_{rule}"].to_numpy()), rule
        assert frame["predicted_label"].tolist() == [model.class_names[i] for i in preds[f"pred_{rule}"]]
        assert np.array_equal(emb, run_emb), rule  # the same tokens, prefix, batches and pooling
    every = model.predict(test["text"].tolist(), rule="all")  # one pass, one column pair per rule
    assert [c for c in every.columns if c.startswith("predicted_")] == \
        [f"predicted_{kind}_{r}" for r in metrics["rules"] for kind in ("label", "index")]
    for rule in metrics["rules"]:
        assert np.array_equal(every[f"predicted_index_{rule}"].to_numpy(), preds[f"pred_{rule}"].to_numpy()), rule
        assert every[f"predicted_label_{rule}"].tolist() == [model.class_names[i] for i in preds[f"pred_{rule}"]]
    default = model.predict(test["text"].tolist())
    assert np.array_equal(default["predicted_index"], preds[f"pred_{metrics['primary_rule']}"])
    assert len(set(default["predicted_index"])) > 1  # a model that labels everything alike would prove little
    probs = default.filter(like="prob_")
    if "head" in metrics["rules"]:
        assert list(probs.columns) == [f"prob_{c}" for c in model.class_names]
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(probs.max(axis=1), preds["head_confidence"], rtol=1e-6)
    else:
        assert probs.empty  # no trained classifier, no probabilities


def test_the_model_folder_holds_encoder_heads_and_settings(runs):
    from safetensors.torch import load_file

    for name in ("combined", "frozen"):
        cfg, out, metrics = runs[name]
        folder = out / "model"
        assert {p.name for p in folder.iterdir()} == {"model.json", "heads.safetensors", "encoder"}
        assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {p.name for p in (folder / "encoder").iterdir()}
        info = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        assert info["encoder"]["query_prefix"] == "query: " and info["encoder"]["pooling"] == "mean"
        assert info["encoder"]["frozen"] is (name == "frozen") and info["best_epoch"] == metrics["best_epoch"]
        assert info["class_names"] == metrics["data"]["class_names"]
        assert info["config"] == json.loads((out / "config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "heads.safetensors"))
        assert tensors["centroids"].shape == (6, cfg.embed_dim) and tensors["train_embeddings"].shape == (96, cfg.embed_dim)
        assert ("loss.arcface.centres" in tensors) is (name == "combined")
        assert info["rule_parts"] == ({"arcface": "arcface"} if name == "combined" else {})
    assert not (runs["unsaved"][1] / "model").exists()


def test_saving_the_model_changes_no_result(runs):
    (_, saved, m1), (_, unsaved, m2) = runs["combined"], runs["unsaved"]
    for key in ("test", "valid", "embedding_test", "best_epoch"):
        assert m1[key] == m2[key], key
    assert pd.read_csv(saved / "predictions.csv").equals(pd.read_csv(unsaved / "predictions.csv"))


def _command(*args):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(PROJECT_ROOT))
    env.pop("STUDY_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lib.predict", *map(str, args)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_command_line_labels_a_csv_and_sentences(runs, tmp_path):
    cfg, out, metrics = runs["combined"]
    preds, test = _test_split(cfg, out)
    source = tmp_path / "new.csv"
    test[["id", "text"]].rename(columns={"text": "sentence"}).to_csv(source, index=False)
    labelled, emb = tmp_path / "labelled.csv", tmp_path / "emb.npy"
    r = _command(out / "model", "--csv", source, "--text-column", "sentence", "--out", labelled, "--rule", "knn",
                 "--embeddings", emb, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    got = pd.read_csv(labelled, dtype={"id": str})
    assert list(got.columns[:2]) == ["id", "sentence"] and got["id"].tolist() == preds["id"].tolist()
    assert np.array_equal(got["predicted_index"], preds["pred_knn"])
    np.testing.assert_allclose(got.filter(like="prob_").sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(np.load(emb), np.load(out / "test_embeddings.npy"))
    assert not list(tmp_path.glob(".*.part"))  # no temp file left
    r = _command(out, *test["text"].iloc[:3])  # a run folder works as well as its model/
    assert r.returncode == 0, r.stderr
    from io import StringIO

    printed = pd.read_csv(StringIO(r.stdout))
    assert np.array_equal(printed["predicted_index"], preds[f"pred_{metrics['primary_rule']}"].iloc[:3])
    r = _command(out, "--rule", "all", "--device", "cpu", *test["text"].iloc[:3])
    assert r.returncode == 0, r.stderr
    printed = pd.read_csv(StringIO(r.stdout))
    for rule in metrics["rules"]:
        assert np.array_equal(printed[f"predicted_index_{rule}"], preds[f"pred_{rule}"].iloc[:3]), rule
    assert "predicted_label" not in printed and f"rules {', '.join(metrics['rules'])}" in r.stderr


def test_sentences_may_follow_the_options(runs, capsys):
    from io import StringIO

    from lib.predict import main

    cfg, out, metrics = runs["combined"]
    preds, test = _test_split(cfg, out)
    assert run_main(main, [str(out), "--rule", "knn", "--device", "cpu", *test["text"].iloc[:2]]) == 0
    printed = pd.read_csv(StringIO(capsys.readouterr().out))
    assert np.array_equal(printed["predicted_index"], preds["pred_knn"].iloc[:2])


def _refused(capsys, *argv) -> str:
    from lib.predict import main

    assert run_main(main, [str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_input_is_refused_in_one_line_with_exit_status_2(runs, tmp_path, capsys):
    _, out, _ = runs["combined"]
    _, frozen, _ = runs["frozen"]
    good = tmp_path / "good.csv"
    good.write_text("text\nI am happy\n", encoding="utf-8")
    assert "holds no saved model" in _refused(capsys, runs["unsaved"][1], "hello")
    assert "holds no saved model" in _refused(capsys, tmp_path, "hello")
    assert "no such folder" in _refused(capsys, tmp_path / "nothing", "hello")
    assert "rule 'head'" in _refused(capsys, frozen, "hello", "--rule", "head")
    assert "has only centroid, knn" in _refused(capsys, frozen, "hello", "--rule", "arcface")
    assert "no such rule" in _refused(capsys, out, "hello", "--rule", "nearest")
    assert "no column 'sentence'" in _refused(capsys, out, "--csv", good, "--text-column", "sentence")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty.csv is empty" in _refused(capsys, out, "--csv", empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("text\n", encoding="utf-8")
    assert "no rows" in _refused(capsys, out, "--csv", header_only)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\nj'ai été très content\n".encode("latin-1"))
    assert "latin.csv is not UTF-8" in _refused(capsys, out, "--csv", latin)
    blank = tmp_path / "blank.csv"
    blank.write_text("text,x\nfine,1\n ,2\n", encoding="utf-8")
    assert "lines 3" in _refused(capsys, out, "--csv", blank)
    assert "sentence 2 is empty" in _refused(capsys, out, "fine", " ")
    assert "one of the two" in _refused(capsys, out)
    mine = tmp_path / "mine.csv"
    mine.write_text("my own file", encoding="utf-8")
    assert "--out" in _refused(capsys, out, "--csv", good, "--out", mine)
    assert "--embeddings" in _refused(capsys, out, "hello", "--embeddings", mine)
    assert mine.read_text(encoding="utf-8") == "my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.csv", "empty.csv", "good.csv", "header.csv",
                                                          "latin.csv", "mine.csv"]
    with pytest.raises(SavedModelError, match="rule 'arcface'"):  # the Python function refuses alike
        load_model(frozen).predict(["hello"], rule="arcface")


def test_the_real_command_line_refuses_an_existing_out_in_one_line(runs, tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("keep", encoding="utf-8")
    r = _command(runs["combined"][1], "hello", "--out", mine)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"error: --out {mine} exists already; it is not replaced: choose a "
                                             "new file name"]
    assert mine.read_text(encoding="utf-8") == "keep"


def test_a_baseline_has_no_model_to_save(capsys, tmp_path):
    from lib.run import main

    assert main(["--method", "tfidf-lr", "--save-model", "--out", str(tmp_path / "run")]) == 2
    assert "--save-model keeps a fine-tuned model" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _finished_run(folder, cfg: ExperimentConfig, with_model: bool):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**cfg.to_dict(), "encoder": "minilm"}))
    (folder / "metrics.json").write_text(json.dumps({"test_macro_f1": 0.5}))
    if with_model:
        (folder / "model").mkdir()
        (folder / "model" / "model.json").write_text("{}")


def test_run_or_load_with_save_model_never_returns_a_run_without_its_model(tmp_path, monkeypatch):
    import lib.study.experiments as experiments
    import lib.training.train as train
    from lib.study.experiments import RunNotReusable, run_folder, run_or_load

    calls = []
    monkeypatch.setattr(train, "run_experiment",
                        lambda cfg, out, quiet=True, save_model=False, resume=False: calls.append(save_model) or {})
    cfg = ExperimentConfig(loss="ce", seed=0, encoder="minilm").validate()
    _finished_run(run_folder(tmp_path, cfg), cfg, with_model=False)
    assert run_or_load(cfg, tmp_path)["reused"] and calls == []  # no model asked: reused as before
    monkeypatch.setattr(experiments, "is_published", lambda path: True)
    with pytest.raises(RunNotReusable, match="has no saved model"):  # published: never retrained for it
        run_or_load(cfg, tmp_path, save_model=True)
    monkeypatch.setattr(experiments, "is_published", lambda path: False)
    monkeypatch.setenv(experiments.RENDER_ONLY_ENV, "1")
    with pytest.raises(RunNotReusable, match="has no saved model"):
        run_or_load(cfg, tmp_path, save_model=True)
    monkeypatch.delenv(experiments.RENDER_ONLY_ENV)
    assert run_or_load(cfg, tmp_path, save_model=True)["reused"] is False and calls == [True]  # local: retrained
    saved = ExperimentConfig(loss="ce", seed=1, encoder="minilm").validate()
    _finished_run(run_folder(tmp_path, saved), saved, with_model=True)
    assert run_or_load(saved, tmp_path, save_model=True)["reused"] and calls == [True]
    baseline = ExperimentConfig(method="tfidf-lr", seed=0).validate()
    _finished_run(run_folder(tmp_path, baseline), baseline, with_model=False)
    assert run_or_load(baseline, tmp_path, save_model=True)["reused"]  # a baseline has no model to keep


def test_the_python_api_refuses_what_it_would_label_wrongly(runs):
    _, out, _ = runs["combined"]
    model = load_model(out, device="cpu")
    with pytest.raises(SavedModelError, match="not one string"):  # it would be labelled letter by letter
        model.predict("I am happy")
    with pytest.raises(SavedModelError, match=r"text 1: nan is not a string"):  # a CSV's missing cell
        model.predict(["I am happy", float("nan")])
    with pytest.raises(SavedModelError, match="text 1 is empty"):
        model.embed(["I am happy", "  "])


def test_a_model_folder_records_its_code_and_refuses_a_missing_encoder(runs, tmp_path):
    import shutil

    from lib.training.saved_model import check_rule, read_info

    _, out, metrics = runs["combined"]
    _, info = read_info(out)
    env = json.loads((out / "environment.json").read_text(encoding="utf-8"))
    assert info["trained_with"]["git"] == env["git"] and info["trained_with"]["packages"] == env["packages"]
    # the default rule is the one model.json records (a loss not registered here need not be rebuilt for it)
    assert check_rule(info, None) == metrics["primary_rule"] == info["primary_rule"]
    assert check_rule({**info, "primary_rule": "knn"}, None) == "knn"
    copy = tmp_path / "copied"
    shutil.copytree(out / "model", copy, ignore=shutil.ignore_patterns("encoder"))  # an incomplete copy
    with pytest.raises(SavedModelError, match=r"copied/encoder is missing: the model folder is incomplete"):
        load_model(copy, device="cpu")


def test_the_command_line_refuses_a_clashing_csv_before_loading_and_a_missing_gpu(runs, tmp_path, capsys,
                                                                                  monkeypatch):
    import torch

    import lib.predict

    _, out, _ = runs["combined"]
    clashing = tmp_path / "clash.csv"
    clashing.write_text("text,prob_sad\nI am happy,1\n", encoding="utf-8")
    monkeypatch.setattr(lib.predict, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    assert "already has column(s) prob_sad" in _refused(capsys, out, "--csv", clashing)
    clashing.write_text("text,predicted_index_knn\nI am happy,1\n", encoding="utf-8")  # --rule all's columns
    assert "already has column(s) predicted_index_knn" in _refused(capsys, out, "--csv", clashing, "--rule", "all")
    monkeypatch.undo()
    if not torch.cuda.is_available():
        assert "device cuda: torch sees no CUDA GPU here" in _refused(capsys, out, "hello", "--device", "cuda")


def test_a_sentence_longer_than_max_length_is_cut_and_counted(runs, capsys):
    from lib.predict import main

    _, out, _ = runs["combined"]
    long = " ".join(["happy"] * 300)  # far beyond the run's 64 tokens
    assert run_main(main, [str(out), "--device", "cpu", "short and fine", long]) == 0
    assert "1 sentence(s) longer than 64 tokens were truncated" in capsys.readouterr().err


def test_labelling_new_sentences_keeps_no_tokens_in_memory(runs):
    """A notebook or service that labels batch after batch must not grow: the training token cache is for
    a run's splits, not for a saved model's inputs."""
    from lib.training import batching

    _, out, _ = runs["combined"]
    model = load_model(out, device="cpu")
    before = dict(batching._TOKEN_CACHE)
    for i in range(3):
        model.predict([f"new sentence number {i}", "another one"])
    assert batching._TOKEN_CACHE == before


def test_predictions_print_to_a_text_only_stdout(runs):
    """In a Jupyter kernel or under redirect_stdout, stdout has no byte buffer: the table is written as text."""
    import contextlib
    import io

    from lib.predict import main

    _, out, _ = runs["combined"]
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        assert run_main(main, [str(out), "--device", "cpu", "기쁘다", "I am sad"]) == 0
    printed = pd.read_csv(io.StringIO(captured.getvalue()))
    assert printed["text"].tolist() == ["기쁘다", "I am sad"] and "predicted_label" in printed
