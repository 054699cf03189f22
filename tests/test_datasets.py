"""Named data sets keep their fixed splits; CSVs load with clear errors; downloads verify sha256."""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from lib.data import datasets
from lib.data.datasets import DataFileError, DataInputError, ids_digest, load_csv, load_dataset
from lib.data.download import check_url_allowed

KO6_TEST_DIGEST = "ac8162ec9c4dba0fc81e1b1ec491bee51b2e78d14c58cc5886cd0f142d183c0d"


def test_ko6_split_is_the_seed_studys(shared_data):
    b = load_dataset("ko6", root=shared_data, download=False)
    assert b.sizes() == {"train": 7000, "valid": 2100, "test": 900}
    counts = b.class_counts()
    assert counts["train"].tolist() == [1175, 1139, 1162, 1174, 1166, 1184]
    assert counts["valid"].tolist() == [353, 341, 349, 352, 350, 355]
    assert counts["test"].tolist() == [151, 147, 149, 151, 150, 152]
    assert ids_digest(b.test["id"]) == KO6_TEST_DIGEST
    assert b.class_names[4] == "heartbroken" and b.language == "ko"
    ids = set(b.train["id"]) | set(b.valid["id"]) | set(b.test["id"])
    assert len(ids) == 10000  # every row in exactly one split


def test_ed6_official_split_in_korean_class_order(shared_data):
    b = load_dataset("ed6", root=shared_data, download=False)
    assert b.sizes() == {"train": 3397, "valid": 523, "test": 480}
    assert b.class_names == ["joyful", "embarrassed", "angry", "anxious", "devastated", "sad"]
    assert set(b.train["label"]) == set(range(6))
    assert not b.train["text"].str.startswith(" ").any()


def test_ed32_and_goemo27_sizes(shared_data):
    ed = load_dataset("ed32", root=shared_data, download=False)
    assert ed.sizes() == {"train": 17802, "valid": 2761, "test": 2541} and ed.num_classes == 32
    go = load_dataset("goemo27", root=shared_data, download=False)
    assert go.sizes() == {"train": 23485, "valid": 2956, "test": 2984} and go.num_classes == 27
    assert go.train["label"].max() == 26  # neutral (27) dropped


def test_unknown_dataset_name_lists_the_choices():
    with pytest.raises(DataInputError, match="unknown data set 'nope'.*ko6, ed6, ed32, goemo27"):
        load_dataset("nope")


def test_every_named_set_has_a_loader_and_a_language():
    """A named set is one entry in each table (docs/code-layout-and-extending.md): the training code tells
    a named set from a CSV by NAMED, load_dataset by LOADERS, the default encoder comes from LANGUAGE."""
    assert list(datasets.LOADERS) == list(datasets.NAMED) and set(datasets.LANGUAGE) == set(datasets.NAMED)
    assert datasets.NOT_REDISTRIBUTABLE <= set(datasets.NAMED)


def _write(tmp_path: Path, text: str, name="mine.csv", encoding="utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def _csv_rows(n_per_class=10, labels=("joy", "anger", "fear")):
    rows = ["text,label"] + [f"sentence {i} about {lab},{lab}" for lab in labels for i in range(n_per_class)]
    return "\n".join(rows) + "\n"


def test_csv_with_label_names_is_split_stratified_by_seed(tmp_path):
    p = _write(tmp_path, _csv_rows())
    a, b = load_csv(p, seed=0), load_csv(p, seed=1)
    assert a.class_names == ["anger", "fear", "joy"]
    assert sum(a.sizes().values()) == 30
    assert (a.class_counts()["test"] > 0).all()
    assert list(a.test["id"]) != list(b.test["id"])  # the seed decides the split
    assert list(load_csv(p, seed=0).test["id"]) == list(a.test["id"])


def test_csv_with_numeric_labels_sorts_numerically(tmp_path):
    p = _write(tmp_path, _csv_rows(labels=("10", "2", "1")))
    assert load_csv(p).class_names == ["1", "2", "10"]


def test_csv_errors_name_the_problem(tmp_path):
    with pytest.raises(DataInputError, match="no column 'label'"):
        load_csv(_write(tmp_path, "text,emotion\na,b\n"))
    with pytest.raises(DataInputError, match="not UTF-8"):
        load_csv(_write(tmp_path, "text,label\ncaf\u00e9,x\n", encoding="latin-1"))
    with pytest.raises(DataInputError, match="fewer than 3 examples.*'rare' \\(1\\)"):
        load_csv(_write(tmp_path, _csv_rows() + "odd one,rare\n"))
    with pytest.raises(DataInputError, match="1 rows have no label.*lines 32"):
        load_csv(_write(tmp_path, _csv_rows() + "no label here,\n"))
    with pytest.raises(DataInputError, match="CSV file not found"):
        load_csv(tmp_path / "absent.csv")


def test_csv_empty_texts_dropped_and_counted_or_refused(tmp_path):
    p = _write(tmp_path, _csv_rows() + "   ,joy\n,anger\n")
    b = load_csv(p)
    assert b.notes["dropped_empty_texts"] == 2 and sum(b.sizes().values()) == 30
    with pytest.raises(DataInputError, match="2 rows have an empty text"):
        load_csv(p, empty_texts="error")


# ---- downloads: a local mirror over file:// and over http on 127.0.0.1 -------------------------

def test_download_from_file_url_verifies_sha(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("STUDY_DATA_MIRROR", shared_data.as_uri())
    b = load_dataset("ko6", root=tmp_path)
    assert (tmp_path / "ko_emotion6" / "data_class_6_all.csv").exists()
    assert ids_digest(b.test["id"]) == KO6_TEST_DIGEST


@pytest.fixture
def http_mirror(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_over_http_from_loopback(tmp_path, shared_data, http_mirror, monkeypatch):
    served, url = http_mirror
    for rel in ("empathetic_dialogues/train.csv", "empathetic_dialogues/valid.csv", "empathetic_dialogues/test.csv"):
        (served / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / rel, served / rel)
    monkeypatch.setenv("STUDY_DATA_MIRROR", url)
    root = tmp_path / "data"
    b = load_dataset("ed6", root=root)
    assert b.sizes()["train"] == 3397
    assert sorted(p.name for p in (root / "empathetic_dialogues").iterdir()) == ["test.csv", "train.csv", "valid.csv"]


def test_download_with_wrong_sha_leaves_nothing(tmp_path, http_mirror, monkeypatch):
    served, url = http_mirror
    (served / "ko_emotion6").mkdir()
    (served / "ko_emotion6" / "data_class_6_all.csv").write_text("filenm,emotion,text,labels\nx,y,z,0\n")
    monkeypatch.setenv("STUDY_DATA_MIRROR", url)
    root = tmp_path / "data"
    with pytest.raises(DataFileError, match="sha256 is .* expected bba17707"):
        load_dataset("ko6", root=root)
    assert not any(p.is_file() for p in root.rglob("*"))


def test_existing_file_with_wrong_sha_is_never_used(tmp_path):
    (tmp_path / "ko_emotion6").mkdir()
    (tmp_path / "ko_emotion6" / "data_class_6_all.csv").write_text("tampered\n")
    with pytest.raises(DataFileError, match="not the pinned file"):
        load_dataset("ko6", root=tmp_path)


def test_missing_file_without_download_says_where_it_looked(tmp_path):
    with pytest.raises(DataFileError, match=f"not found in {tmp_path}.*STUDY_DATA_DIR"):
        load_dataset("ed6", root=tmp_path, download=False)


def test_unreachable_mirror_fails_with_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_DATA_MIRROR", "http://127.0.0.1:9")
    with pytest.raises(DataFileError, match="download failed.*Set STUDY_DATA_DIR"):
        load_dataset("ed6", root=tmp_path)


@pytest.mark.parametrize("url", ["http://example.com/x.csv", "ftp://127.0.0.1/x.csv"])
def test_only_https_or_local_urls_are_fetched(url):
    with pytest.raises(DataFileError, match="only https"):
        check_url_allowed(url)


def test_upstream_addresses_are_pinned_https():
    for rel, url, sha in datasets.FILES.values():
        assert url.startswith("https://raw.githubusercontent.com/") and len(sha) == 64
        commit = url.split("/")[5]
        assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit), url


def test_subsample_is_stratified_and_seeded(shared_data):
    b = load_dataset("ed6", root=shared_data, download=False)
    s = datasets.subsample(b.train, 60, seed=3)
    assert len(s) == 60 and set(s["label"]) == set(range(6))
    assert list(datasets.subsample(b.train, 60, seed=3)["id"]) == list(s["id"])
    assert np.bincount(s["label"]).min() >= 8


def test_csv_class_too_small_for_the_stratified_split_is_a_clear_error(tmp_path):
    p = _write(tmp_path, _csv_rows(n_per_class=40) + "".join(f"odd {i},rare\n" for i in range(3)))
    with pytest.raises(DataInputError, match="cannot split stratified.*'rare' \\(3\\)"):
        load_csv(p)


def test_tsv_files_are_tab_separated(tmp_path):
    text = _csv_rows().replace(",", "\t")
    b = load_csv(_write(tmp_path, text, name="mine.tsv"))
    assert b.class_names == ["anger", "fear", "joy"] and sum(b.sizes().values()) == 30
