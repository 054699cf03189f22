"""lib.study.tuning: the search spaces, a trial's seeds in lockstep, a real search on Ray (equal budgets,
no test split read, winners that lib.run reproduces, resumable after a kill), and notebook 07 on it.

One Ray head node for the module (its start-up is slow); every search is the "smoke" setting on a tiny
frozen BERT, so a trial takes a second or two."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import shlex
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from lib.paths import PROJECT_ROOT
from lib.study import search_spaces, tuning, tuning_report
from lib.training.config import ExperimentConfig
from tests.ray_cluster import RAY_ENV, Cluster

METHODS = ["ce", "ce+supcon"]
EVERY_METHOD = ["ce", "triplet", "arcface", "supcon", "combined", "ce+supcon", "triplet+arcface",
                "ce=1+triplet=1+arcface=1+supcon=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Cached frozen features of this module's encoder go to a temporary folder (Ray workers inherit it)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDY_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, shared_data):
    from lib.data.datasets import load_dataset
    from tests.tiny_encoder import make_tiny_bert

    bundle = load_dataset("ed6")
    return str(make_tiny_bert(tmp_path_factory.mktemp("encoder") / "tiny", pd.concat([bundle.train.text,
                                                                                      bundle.valid.text])))


@pytest.fixture(scope="module")
def ray_here(cache, tmp_path_factory):
    """A Ray head node on this machine (tests/ray_cluster.py: its own session, at a higher CPU priority where
    allowed, so that its start does not race the other test workers), joined here the way a search joins
    one; its address for the command lines. A search's own local Ray (lib.study.fanout's) is tested in
    tests/test_fanout.py."""
    import ray

    cluster = Cluster(tmp_path_factory.mktemp("ray-node"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():  # this process joins as a driver: no token authentication, as the node
            mp.setenv(key, value)
        try:
            cluster.start_node(cpus=2)
            assert tuning.connect(cluster.address)
            yield cluster.address
        finally:
            ray.shutdown()
            cluster.stop()


def _trial_records(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.glob("*/trials/*/trial.json")}


@pytest.fixture(scope="module")
def searched(ray_here, encoder, tmp_path_factory):
    """Two methods searched with the smoke setting, the way a long study meets a failure: the command line
    (joining this module's Ray as a cluster) is killed once two trials have finished; the search is then
    resumed here. Returns the study, its report, the trial records at the kill with their times, the logs."""
    import contextlib
    import io

    study = tmp_path_factory.mktemp("tuning") / "study"
    command = [sys.executable, "-m", "lib.study.tuning", "--dataset", "ed6", "--encoder", encoder, "--setting",
               "smoke", "--concurrent", "1", "--results", str(study), "--ray", ray_here,
               *[w for m in METHODS for w in ("--method", m)]]
    first = subprocess.Popen(command, cwd=PROJECT_ROOT, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_trial_records(study)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver, mid-search; Ray ends its trials
    killed_log = first.communicate()[0]
    finished = _trial_records(study)
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    stamps.update({m: m.stat().st_mtime_ns for p in finished for m in p.parent.glob("seed*/metrics.json")})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tuning.run_searches("ed6", encoder, METHODS, "smoke", str(study), concurrent=1)
    return study, tuning_report.write_report(study), finished, stamps, killed_log + out.getvalue()


# ---- the search space (no Ray) ----

@pytest.mark.parametrize("frozen", [False, True])
def test_every_sampled_config_is_valid_with_weights_on_the_simplex(frozen):
    for method in EVERY_METHOD:
        parts = search_spaces.parts_of(method)
        search = tuning.Search(dataset="ed6", encoder="minilm", method=method, setting="x", trials=1, max_epochs=15,
                               grace_epochs=2, startup_trials=1, seeds=(100,), confirm_seeds=(200,), frozen=frozen,
                               base=ExperimentConfig(freeze_encoder=frozen).to_dict(), folder="unused")
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), direction="maximize")
        for _ in range(25):
            trial = study.ask()
            fields = search_spaces.suggest(trial, method, frozen, 15)
            (cfg,) = tuning.trial_configs(search, fields, [100])  # validate() raises on any bad value
            weights = cfg.loss_weights()
            assert tuple(weights) == parts, (method, cfg.loss)
            assert math.isclose(sum(weights.values()), 1.0, abs_tol=1e-9), cfg.loss
            assert min(weights.values()) >= search_spaces.MIN_WEIGHT - 0.0015, cfg.loss
            assert 5 <= cfg.epochs <= 15 and ("encoder_lr" in trial.params) != frozen
            assert set(trial.params) == set(search_spaces.declared(method, frozen, 15))
            study.tell(trial, 0.0)


def test_the_recipe_is_a_point_of_every_space_and_comes_back_as_itself():
    recipe = tuning.recipe_config("ko6", "me5-small", "combined", "finetune")
    assert (recipe.epochs, recipe.patience, recipe.encoder_lr, recipe.freeze_encoder) == (15, 3, 3e-5, False)
    for method in EVERY_METHOD:
        space = search_spaces.distributions(method, False, 15)
        point = search_spaces.recipe_point(recipe.to_dict(), method, False, 15)
        assert set(point) == set(space) and all(space[k]._contains(space[k].to_internal_repr(v))
                                                for k, v in point.items()), method
        back = search_spaces.config_fields(point, method)["loss"]
        given = ExperimentConfig(loss=method).validate().loss_weights()
        assert pytest.approx(list(ExperimentConfig(loss=back).loss_weights().values()), abs=1e-3) == \
            [w / sum(given.values()) for w in given.values()], method
    random.seed(0)
    for k in (2, 3, 4):
        for _ in range(200):
            weights = search_spaces.simplex_weights([random.random() for _ in range(k - 1)])
            assert math.isclose(sum(weights), 1.0, abs_tol=1e-9) and min(weights) > 0.04


def test_a_trial_is_an_ordinary_lib_run_command():
    from lib.run import build_parser
    from lib.training.config import config_from_args

    cfg = ExperimentConfig(dataset="ko6", encoder="me5-small", loss="ce=0.3+supcon=0.7", seed=101, epochs=7,
                           freeze_encoder=True, patience=None, head_lr=0.0012345678901234, num_threads=2).validate()
    words = tuning.run_command(cfg, "/tmp/x").split()
    assert words[:3] == ["python", "-m", "lib.run"]
    args = build_parser().parse_args(words[3:])
    assert config_from_args(args).validate() == cfg and args.out == "/tmp/x" and args.validation_only


def _keys(data) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(data, dict):
        return set(map(str, data)) | set().union(*(_keys(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(_keys(v) for v in data))
    return set()


# ---- one trial, in this process ----

class _Untouchable:
    """Stands for the test split: any use of it fails the test."""
    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __getitem__(self, key):
        raise AssertionError(f"the test split was read ([{key!r}])")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_a_trial_never_reads_the_test_split(monkeypatch, tmp_path, encoder, cache):
    from lib.data import datasets
    from lib.training import train

    def load_without_test(*args, **kwargs):
        bundle = datasets.load_dataset(*args, **kwargs)
        bundle.test = _Untouchable()
        return bundle

    monkeypatch.setattr(train, "load_dataset", load_without_test)
    search = tuning.make_search("ed6", encoder, "ce+supcon", "smoke", tmp_path)
    reports = []
    record = tuning.run_trial(search, "t1", 1, {"head_lr": 3e-3, "dropout": 0.2, "epochs": 2,
                                                "loss": "ce=0.6+supcon=0.4"}, lambda e, b: reports.append((e, b)))
    assert record["status"] == "complete" and [e for e, _ in reports] == [1, 2]
    assert reports[-1][1] == record["valid_macro_f1"] == pytest.approx(
        sum(record["valid_macro_f1_per_seed"].values()) / 2)
    assert not [k for k in _keys(record) if "test" in k]
    for seed in search.seeds:
        run = Path(search.folder) / "trials" / "t1" / f"seed{seed}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert not [k for k in metrics if "test" in k] and not (run / "predictions.csv").exists()


def test_a_search_refuses_a_recipe_that_redraws_the_split(monkeypatch, tmp_path):
    """resplit pools the test sentences into training before its redraw: no search trains on them."""
    recipe = tuning.recipe_config("ed6", "minilm", "ce", "smoke")
    monkeypatch.setattr(tuning, "recipe_config", lambda *args: tuning.replace(recipe, resplit=True))
    with pytest.raises(tuning.TuningError, match="not on resplit"):
        tuning.make_search("ed6", "minilm", "ce", "smoke", tmp_path)


def test_a_trials_command_reads_no_test_split_and_reproduces(monkeypatch, tmp_path, encoder, cache, capsys):
    """lib.run --validation-only, as a trial record's commands run: the test split is never touched, and
    --reproduce of such a run re-runs it the same way (the original has no test score to compare)."""
    from lib.data import datasets
    from lib.run import main
    from lib.training import train

    def load_without_test(*args, **kwargs):
        bundle = datasets.load_dataset(*args, **kwargs)
        bundle.test = _Untouchable()
        return bundle

    monkeypatch.setattr(train, "load_dataset", load_without_test)
    cfg = tuning.trial_configs(tuning.make_search("ed6", encoder, "ce", "smoke", tmp_path), {"epochs": 1}, [100])[0]
    words = shlex.split(tuning.run_command(cfg, str(tmp_path / "again")))
    assert main(words[3:] + ["--quiet"]) == 0
    assert "test split not read" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert "valid_macro_f1" in metrics and not [k for k in metrics if "test" in k]
    assert not (tmp_path / "again" / "predictions.csv").exists()
    assert main(["--reproduce", str(tmp_path / "again"), "--out", str(tmp_path / "twice"), "--quiet"]) == 0
    assert "reproduced exactly" in capsys.readouterr().out


# ---- a real search on Ray ----

@pytest.mark.slow
def test_every_method_gets_the_same_budget(searched):
    study, report = searched[:2]
    budget = report["budget"].set_index("method")
    trials = tuning.setting("smoke")["trials"]
    assert sorted(budget.index) == sorted(search_spaces.method_name(m) for m in METHODS)
    assert (budget["trials"] == trials).all() and (budget["budget_trials"] == trials).all()
    assert budget["max_epochs"].nunique() == 1 and budget["seeds"].nunique() == 1 and budget["finished"].all()
    assert report["summary"]["equal_budget"] is True
    curve = report["best_so_far"]
    assert (curve.groupby("method")["trial"].max() == trials).all()
    assert (report["trials"]["epochs_run"] <= tuning.setting("smoke")["max_epochs"]).all()
    # the compute each method used: every seed of a trial trains the trial's epochs
    seeds = len(tuning.setting("smoke")["seeds"])
    assert budget["seed_epochs_trained"].to_dict() == \
        (report["trials"].groupby("method")["epochs_run"].sum() * seeds).to_dict()
    tuning_report.check_report(report)
    unequal = report["budget"].assign(trials=[trials, trials - 1])
    assert not tuning_report.equal_budget(unequal)
    on_disk = json.loads((study / "report.json").read_text(encoding="utf-8"))
    assert on_disk["equal_budget"] is True and pd.read_csv(study / "trials.csv").shape[0] == 2 * trials


@pytest.mark.slow
def test_the_first_trial_is_the_study_1_recipe(searched):
    study = searched[0]
    for method in METHODS:
        search = tuning.make_search("ed6", "unused", method, "smoke", study)
        records = tuning._records(search)
        recipe = search_spaces.recipe_point(search.base, method, True, search.max_epochs)
        assert [r["number"] for r in records if r["recipe"]] == [0], method
        assert records[0]["params"] == pytest.approx(recipe), method
        assert all(r["params"] != pytest.approx(recipe) for r in records[1:]), method


@pytest.mark.slow
def test_no_file_of_a_search_holds_a_test_score(searched):
    study = searched[0]
    assert not list(study.rglob("predictions.csv")) and not list(study.rglob("test_embeddings.npy"))
    for path in study.rglob("*.json"):
        if path.name in ("leakage.json", "environment.json") or ".ray" in path.parts:
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "metrics.json":  # only the data sizes name the test split: it had 0 sentences
            assert data["data"]["sizes"]["test"] == 0, path
            data["data"].pop("sizes")
        assert not [k for k in _keys(data) if "test" in k], path


@pytest.mark.slow
def test_the_winner_reruns_with_lib_run_to_the_same_validation_score(searched, tmp_path):
    """Seeds train in lockstep in one process; each must still compute what it computes alone."""
    from lib.run import main

    study = searched[0]
    best = json.loads((study / "ce_supcon" / "best.json").read_text(encoding="utf-8"))
    record = json.loads((study / "ce_supcon" / "trials" / best["trial_id"] / "trial.json").read_text())
    for seed, command in record["commands"].items():
        words = command.split()
        words[words.index("--out") + 1] = str(tmp_path / seed)
        assert main(words[3:] + ["--quiet"]) == 0
        again = json.loads((tmp_path / seed / "metrics.json").read_text())
        assert again["valid_macro_f1"] == record["valid_macro_f1_per_seed"][seed]
        trained = pd.read_csv(study / "ce_supcon" / "trials" / best["trial_id"] / f"seed{seed}" / "history.csv")
        losses = [c for c in trained if c.startswith("train_loss") or c == "valid_macro_f1"]
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / seed / "history.csv")[losses], trained[losses])
    assert best["confirm_seeds"] == [200, 201] and best["drop"] == pytest.approx(
        best["search_valid_macro_f1"] - best["confirm_valid_macro_f1"])
    # trials given no GPU train on the CPU, whatever GPU the node has (Ray does not hide it from them)
    assert record["config"]["device"] == "cpu" and "--device cpu" in record["commands"][str(best["search_seeds"][0])]
    assert all(f"seed{k}" in best["confirm_commands"][k] and "--device cpu" in best["confirm_commands"][k]
               for k in best["confirm_commands"])


@pytest.mark.slow
def test_the_recipe_reruns_on_the_fresh_seeds_and_tuning_bought_best_minus_recipe(searched, tmp_path):
    """recipe.json: the first trial's configuration on the winner's fresh seeds; its commands re-run to its
    scores; the report's gain is the winner's fresh-seed score minus the recipe's."""
    from lib.run import main

    study, report = searched[0], searched[1]
    for method in METHODS:
        folder = tuning.method_folder(study, method)
        best = json.loads((folder / "best.json").read_text(encoding="utf-8"))
        recipe = json.loads((folder / "recipe.json").read_text(encoding="utf-8"))
        first = json.loads((folder / "trials" / recipe["trial_id"] / "trial.json").read_text(encoding="utf-8"))
        assert first["recipe"] and recipe["seeds"] == best["confirm_seeds"] == [200, 201]
        same = ("seed", "num_threads")
        assert {k: v for k, v in recipe["config"].items() if k not in same} == {
            k: v for k, v in first["config"].items() if k not in same}
        assert recipe["valid_macro_f1"] == pytest.approx(sum(recipe["valid_macro_f1_per_seed"].values()) / 2)
        assert set(recipe["git"]) == {"200", "201"} and all("dirty" in g for g in recipe["git"].values())
        # the winner re-run beside the recipe (same code, same machine) gives the search's own re-run exactly
        assert recipe["winner_reproduced"] and recipe["winner_rerun_valid_macro_f1_per_seed"] == best[
            "confirm_valid_macro_f1_per_seed"]
        assert recipe["best_minus_recipe"] == pytest.approx(best["confirm_valid_macro_f1"] - recipe["valid_macro_f1"])
        row = report["budget"].set_index("method").loc[search_spaces.method_name(method)]
        assert row["best_minus_recipe_fresh_seeds"] == pytest.approx(recipe["best_minus_recipe"])
    words = recipe["commands"]["201"].split()
    words[words.index("--out") + 1] = str(tmp_path / "again")
    assert main(words[3:] + ["--quiet"]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["valid_macro_f1"] == recipe["valid_macro_f1_per_seed"]["201"]
    bought = tuning_report.bought(report["budget"])
    assert list(bought.columns) == ["method", *tuning_report.BOUGHT_COLUMNS.values()] and len(bought) == len(METHODS)


@pytest.mark.slow
def test_a_killed_search_resumes_without_rerunning_finished_trials(searched):
    study, report, finished, stamps, log = searched
    assert len(finished) >= 2 and "resuming the search" in log, log[-3000:]
    trials = tuning.setting("smoke")["trials"]
    for method in METHODS:
        state = json.loads((tuning.method_folder(study, method) / "search.json").read_text())
        assert state["finished"] and len(state["trials"]) == len(set(state["trials"])) == trials
        assert len(list(tuning.method_folder(study, method).glob("trials/*/trial.json"))) == trials
    ids = {t for m in METHODS for t in json.loads((tuning.method_folder(study, m) / "search.json").read_text())["trials"]}
    assert {p.parent.name for p in finished} <= ids  # the trials finished before the kill are the search's
    assert {p: p.read_bytes() for p in finished} == finished  # and were not run again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(report["trials"]) == trials * len(METHODS)


@pytest.mark.slow
def test_a_trial_killed_mid_way_goes_on_in_the_resumed_search(ray_here, encoder, tmp_path):
    """A partial trial (killed after its first epoch) is enqueued first by the next run of its search, on
    Ray, and the trial that gets its point takes its folder over and goes on from the checkpoints."""
    search = tuning.make_search("ed6", encoder, "ce+supcon", "smoke", tmp_path, trials=1)
    point = search_spaces.recipe_point(search.base, search.method, search.frozen, search.max_epochs)
    params = {**point, **search_spaces.config_fields(point, search.method)}  # a trial's config, as Ray gives it

    def killed(epoch, best):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tuning.run_trial(search, "old", 0, params, killed, num_threads=1, recipe=True)  # as run_search runs it
    partial = json.loads((Path(search.folder) / "trials" / "old" / tuning.PARTIAL).read_text())
    plain = tuning.run_trial(tuning.replace(search, folder=str(tmp_path / "plain")), "plain", 0, params,
                             lambda epoch, best: None, num_threads=1)  # never stopped, in this process
    (trial_id,) = tuning.run_search(search, {"cpu": 1}, concurrent=1)
    folder = Path(search.folder) / "trials" / trial_id
    record = json.loads((folder / tuning.RECORD).read_text())
    assert trial_id != "old" and not (folder.parent / "old").exists()
    assert record["status"] in ("complete", "stopped") and record["recipe"] and record["params"] == partial["params"]
    assert record["epochs"][0] == partial["epochs"][0]  # reported again from the record, seconds and all
    assert record["valid_macro_f1_per_seed"] == plain["valid_macro_f1_per_seed"]  # trained on to the same numbers
    assert [e["valid_macro_f1"] for e in record["epochs"]] == [e["valid_macro_f1"] for e in plain["epochs"]]
    assert not (folder / tuning.PARTIAL).exists() and not list(folder.glob("seed*.resume"))


# ---- command lines and notebook 07 ----

@pytest.mark.parametrize("args,message", [
    (["--method", "ce+nope"], "unknown loss name 'nope'"),
    (["--method", "ce", "--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5"),
    (["--method", "ce", "--freeze-encoder", "--setting", "finetune"], "setting finetune fine-tunes"),
    (["--method", "ce", "--method", "ce=2"], "two methods with the same parts"),
    ([], "name at least one --method"),
])
def test_bad_input_fails_with_one_message_through_run_all(args, message, tmp_path, capsys):
    from lib.study.runner import main

    assert main(["--profile", "tune", "--dataset", "ed6", "--results", str(tmp_path / "r"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_search_whose_gpu_trials_cannot_train_is_refused_before_any_trial(monkeypatch, tmp_path):
    """bf16 on a GPU without bfloat16: every trial would fail alike and spend the equal budget as errors."""
    import types

    from lib.training.config import ConfigError

    search = tuning.make_search("ed6", "minilm", "ce", "smoke", tmp_path)
    asked = []

    def remote(fn):  # a stand-in for Ray: the task runs here, with the resources it asked for recorded
        return types.SimpleNamespace(options=lambda **kw: types.SimpleNamespace(
            remote=lambda *a: (asked.append(kw), fn(*a))[1]))

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(remote=remote, get=lambda x: x))
    tuning.check_trial_device(search, {"cpu": 2})  # no GPU asked: nothing to check, no task
    assert asked == []
    assert tuning.device_problem("auto", False) is None  # this machine trains the search's runs
    tuning.check_trial_device(search, {"cpu": 2, "gpu": 0.25})
    assert asked == [{"num_cpus": 2, "num_gpus": 0.25, "max_retries": 0}]

    def no_bf16(device, bf16=False):
        raise ConfigError("bf16 autocast needs a GPU with bfloat16 support; Tesla T4 has none")

    import lib.training.train as train
    monkeypatch.setattr(train, "pick_device", no_bf16)
    with pytest.raises(tuning.TuningError, match=r"tune ce: a trial's GPU cannot train this search's runs \(bf16 "
                                                 r"autocast needs .*Tesla T4 has none\)$"):  # no bf16 remedy: fp32
        tuning.check_trial_device(search, {"cpu": 2, "gpu": 1})
    bf16 = tuning.replace(search, base={**search.base, "bf16": True})  # as a bf16 setting would make it
    with pytest.raises(tuning.TuningError, match=r"Tesla T4 has none\); the setting's numeric mode is fixed .*"
                                                 r"without --gpus-per-trial"):
        tuning.check_trial_device(bf16, {"cpu": 2, "gpu": 1})


def test_a_folder_of_the_user_is_never_written(tmp_path, capsys):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.txt").write_text("mine")
    assert tuning.main(["--dataset", "ed6", "--method", "ce", "--setting", "smoke",
                        "--results", str(tmp_path / "thesis")]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "thesis").iterdir()) == ["chapter1.txt"]


def test_a_search_saved_before_a_config_field_existed_is_the_same_search(tmp_path):
    """A field added to the code later (resplit) reads as its default in a saved search.json, as in a saved
    run's config: the ed6 searches, saved at 6824355, publish from a later commit. Another value is refused."""
    search = tuning.make_search("ed6", "minilm", "ce", "smoke", tmp_path / "study")
    Path(search.folder).mkdir(parents=True)
    budget = search.budget()
    del budget["base"]["resplit"]  # as the searches saved before resplit existed
    tuning.write_json(Path(search.folder) / tuning.SEARCH, {"budget": budget, "finished": True, "trials": []})
    assert tuning._search_state(search)["finished"]
    budget["base"]["resplit"] = True  # a search that did run otherwise
    tuning.write_json(Path(search.folder) / tuning.SEARCH, {"budget": budget, "finished": True, "trials": []})
    with pytest.raises(tuning.TuningError, match=r"search\.json belongs to a search with other settings \(base\.resplit\)"):
        tuning._search_state(search)
    del budget["base"]["resplit"]  # saved before the field, asked for now with it on: not the same search
    tuning.write_json(Path(search.folder) / tuning.SEARCH, {"budget": budget, "finished": True, "trials": []})
    with pytest.raises(tuning.TuningError, match=r"base\.resplit"):
        tuning._search_state(tuning.replace(search, base={**search.base, "resplit": True}))


def test_publish_is_refused_while_a_search_is_unfinished(tmp_path, capsys):
    study = tuning.study_folder("ed6", "minilm", "smoke")
    existed = study.exists()
    assert tuning.main(["--dataset", "ed6", "--method", "ce", "--setting", "smoke", "--publish"]) == 2
    assert "--publish: not finished" in capsys.readouterr().err
    assert study.exists() == existed
    assert tuning.main(["--dataset", "ed6", "--method", "ce", "--setting", "smoke", "--publish",
                        "--results", str(tmp_path / "r")]) == 2
    assert "it takes none of --results" in capsys.readouterr().err


@pytest.mark.slow
def test_the_published_notebook_07_is_executed_over_the_records_with_relative_paths(searched, encoder):
    from lib.study.executed import absolute_paths
    from lib.study.runner import executed_parameters

    study = searched[0]
    records = _trial_records(study)
    path = tuning.render_notebook(study, "ed6", encoder, METHODS, "smoke")
    assert path == study / "notebooks" / "07_tuning.ipynb" and _trial_records(study) == records  # nothing re-run
    assert executed_parameters(path)["RUN_SEARCH"] is False
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code) and not [o for c in code for o in c["outputs"]
                                                           if o.get("name") == "stderr"]
    assert "best minus recipe, fresh seeds" in json.dumps(nb)
    assert not absolute_paths(path)


def test_notebook_07_is_a_thin_clean_template():
    import ast

    nb = json.loads((PROJECT_ROOT / "notebooks" / "07_tuning.ipynb").read_text(encoding="utf-8"))
    assert nb["metadata"] == json.loads((PROJECT_ROOT / "notebooks" / "00_data_exploration.ipynb").read_text(
        encoding="utf-8"))["metadata"]
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    for node in ast.parse("".join(code[0]["source"])).body:
        assert isinstance(node, ast.Assign) and all(t.id.isupper() for t in node.targets)
        ast.literal_eval(node.value)
    assert 'RESULTS_DIR = "results/local/' in "".join(code[0]["source"])
    for cell in code:
        tree = ast.parse("".join(cell["source"]))
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]


@pytest.mark.slow
def test_notebook_07_runs_under_nbval_on_the_search(searched, encoder, tmp_path):
    import papermill as pm

    study = searched[0]
    for name in ("trials.csv", "figures/best_so_far.png"):
        (study / name).unlink()
    prepared = tmp_path / "07_tuning.ipynb"
    pm.execute_notebook(str(PROJECT_ROOT / "notebooks" / "07_tuning.ipynb"), str(prepared), prepare_only=True,
                        parameters={"DATASET": "ed6", "ENCODER": encoder, "SETTING": "smoke", "METHODS": METHODS,
                                    "RESULTS_DIR": str(study)}, kernel_name="emotion-study", progress_bar=False)
    r = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-p",
                        "no:xdist", "--rootdir", str(tmp_path), str(prepared)], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"), timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert (study / "trials.csv").is_file() and (study / "figures" / "best_so_far.png").is_file()


def test_the_tuning_table_marks_a_recipe_trial_asha_stopped_and_words_the_gap_of_gains():
    cols = {c: [0.5, 0.5] for c in tuning_report.BOUGHT_COLUMNS.values()}
    table = pd.DataFrame({"study": ["s", "s"], "method": ["ce", "ce+triplet+arcface"], **cols,
                          "_gain": [0.01234, 0.00111], "_recipe_status": ["complete", "stopped"]})
    md = tuning_report.table_markdown(table)
    rows = [line for line in md.splitlines() if line.startswith("| s |")]
    assert "| 0.5000 |" in rows[0] and "| 0.5000 (stopped) |" in rows[1]
    assert "ASHA ended the recipe's trial early" in md
    assert "CE's gain minus the combined loss's gain: +0.0112." in md  # from the unrounded gains
