"""A search stopped mid-trial goes on with that trial (lib/study/tuning.py, "Resuming"): its seeds train on
from their checkpoints, the epochs it had reported are reported again, and its record is the one a trial
never stopped writes; ASHA's rungs come back from the ended trials. No Ray here: run_trial in this
process, with the tiny frozen BERT of tests/test_tuning.py (seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.study import tuning
from lib.training import checkpoint, train
from tests.test_tuning import cache, encoder  # noqa: F401 - fixtures

PARAMS = {"head_lr": 3e-3, "dropout": 0.2, "epochs": 3, "patience": 1, "loss": "ce=0.6+supcon=0.4"}
# Validation scores by seed: seed 100 stops early after epoch 2 (patience 1), seed 101 runs all 3 epochs.
SCORES = {100: [0.50, 0.40], 101: [0.30, 0.40, 0.45]}


class Killed(KeyboardInterrupt):
    """Stands for the kill of a search while Ray waited for a report."""


def _scripted_scores(monkeypatch) -> dict:
    """Epoch scores from SCORES, by seed, in the order each seed's epochs are scored; returns the call counts."""
    calls = {}

    def select_score(model, loss_fn, inputs, cfg, *args):
        calls[cfg.seed] = calls.get(cfg.seed, 0) + 1
        return SCORES[cfg.seed][calls[cfg.seed] - 1]

    monkeypatch.setattr(train, "_select_score", select_score)
    return calls


def _kill_at_2(epoch, best):
    if epoch == 2:
        raise Killed


def _search(encoder, folder):  # noqa: F811
    return tuning.make_search("ed6", encoder, "ce+supcon", "smoke", folder)


def _scores(record):
    return ({k: v for k, v in record.items() if k not in ("seconds", "commands", "epochs")},
            [{k: v for k, v in e.items() if k != "seconds"} for e in record["epochs"]])


def test_a_trial_killed_between_epochs_goes_on_from_its_checkpoints(encoder, cache, tmp_path, monkeypatch):  # noqa: F811
    calls, events = {}, []

    def select_score(model, loss_fn, inputs, cfg, *args):
        calls[cfg.seed] = calls.get(cfg.seed, 0) + 1
        events.append(f"seed {cfg.seed} epoch {calls[cfg.seed]}")
        return SCORES[cfg.seed][calls[cfg.seed] - 1]

    monkeypatch.setattr(train, "_select_score", select_score)
    plain = tuning.run_trial(_search(encoder, tmp_path / "plain"), "t1", 1, PARAMS, lambda e, b: None)
    assert plain["status"] == "complete" and plain["epochs_run"] == {"100": 2, "101": 3}

    calls.clear()
    search = _search(encoder, tmp_path / "killed")
    folder = Path(search.folder) / "trials" / "t1"

    with pytest.raises(Killed):
        tuning.run_trial(search, "t1", 1, PARAMS, _kill_at_2)
    partial = json.loads((folder / tuning.PARTIAL).read_text())
    assert [e["epoch"] for e in partial["epochs"]] == [1, 2] and not (folder / tuning.RECORD).exists()
    assert (folder / "seed100" / "metrics.json").is_file()  # seed 100 had ended: its run folder is there
    assert json.loads((checkpoint.folder(folder / "seed101") / checkpoint.MARKER).read_text())["epoch"] == 2

    reports, events[:] = [], []
    record = tuning.run_trial(search, "t1", 1, PARAMS, lambda e, b: (reports.append((e, b)), events.append(e)),
                              resumed=partial)
    assert [e for e, _ in reports] == [1, 2, 3] and calls == {100: 2, 101: 3}  # nothing trained twice
    assert events == [1, 2, "seed 101 epoch 3", 3]  # the epochs before the kill are reported before any training
    assert _scores(record) == _scores(plain)
    assert [e["seconds"] for e in record["epochs"][:2]] == [e["seconds"] for e in partial["epochs"]]
    assert not (folder / tuning.PARTIAL).exists() and not list(folder.glob(f"*{checkpoint.SUFFIX}"))


def test_a_trial_whose_checkpoint_is_gone_trains_that_seed_anew_and_keeps_the_ended_one(encoder, cache, tmp_path,  # noqa: F811
                                                                                       monkeypatch):
    """A search resumed on another machine: the partial record came along, the checkpoint did not."""
    import shutil

    calls = _scripted_scores(monkeypatch)
    plain = tuning.run_trial(_search(encoder, tmp_path / "plain"), "t1", 1, PARAMS, lambda e, b: None)
    calls.clear()
    search = _search(encoder, tmp_path / "moved")
    folder = Path(search.folder) / "trials" / "t1"

    with pytest.raises(Killed):
        tuning.run_trial(search, "t1", 1, PARAMS, _kill_at_2)
    partial = json.loads((folder / tuning.PARTIAL).read_text())
    shutil.rmtree(checkpoint.folder(folder / "seed101"))
    calls.clear()
    record = tuning.run_trial(search, "t1", 1, PARAMS, lambda e, b: None, resumed=partial)
    assert calls == {101: 3} and _scores(record) == _scores(plain)  # seed 100's ended run is kept
    assert record["epochs"][0]["seconds"] != partial["epochs"][0]["seconds"]  # timed anew


def test_a_checkpoint_that_cannot_be_read_makes_the_seed_train_its_counted_epochs_again(encoder, cache,  # noqa: F811
                                                                                        tmp_path, monkeypatch):
    calls = _scripted_scores(monkeypatch)
    plain = tuning.run_trial(_search(encoder, tmp_path / "plain"), "t1", 1, PARAMS, lambda e, b: None)
    calls.clear()
    search = _search(encoder, tmp_path / "cut")
    folder = Path(search.folder) / "trials" / "t1"

    with pytest.raises(Killed):
        tuning.run_trial(search, "t1", 1, PARAMS, _kill_at_2)
    (checkpoint.folder(folder / "seed101") / "state-2.pt").write_bytes(b"cut short")
    partial = json.loads((folder / tuning.PARTIAL).read_text())
    calls.clear()
    reports = []
    record = tuning.run_trial(search, "t1", 1, PARAMS, lambda e, b: reports.append(e), resumed=partial)
    assert calls == {101: 3} and reports == [1, 2, 3] and _scores(record) == _scores(plain)


def test_a_search_discards_partial_state_no_trial_will_go_on_from(encoder, tmp_path):  # noqa: F811
    search = _search(encoder, tmp_path)
    search = tuning.replace(search, trials=1)
    trials = Path(search.folder) / "trials"
    tuning.write_json(trials / "done" / tuning.RECORD, {"trial_id": "done", "number": 0, "status": "complete",
                                                         "valid_macro_f1": 0.5, "epochs": []})
    tuning.write_json(trials / "done" / tuning.PARTIAL, {"trial_id": "done", "number": 0, "params": {}})
    tuning.write_json(trials / "late" / tuning.PARTIAL, {"trial_id": "late", "number": 1, "params": {}})
    (checkpoint.folder(trials / "late" / "seed100")).mkdir()  # an empty checkpoint folder: ours
    assert tuning.run_search(search, {"cpu": 1}) == ["done"]  # the budget is spent: nothing to go on with
    assert not list(trials.glob(f"*/{tuning.PARTIAL}")) and not list(trials.glob("*/seed*.resume"))


@pytest.mark.parametrize("set_aside", [False, True])
def test_a_search_enqueues_its_interrupted_trial_and_the_trial_takes_over_its_folder(set_aside, encoder,  # noqa: F811
                                                                                     tmp_path):
    """set_aside: the interrupted trial had written a record, which the search renamed trial.interrupted.json;
    that marker stays under the old id, where scripts/tuning_runs.sh's save looks for it."""
    search = _search(encoder, tmp_path)
    trials = Path(search.folder) / "trials"
    point = {"head_lr": 0.004, "dropout": 0.1, "epochs": 3, "weight_decay": 0.01, "weight_stick1": 0.3}
    point = {k: point.get(k, 0.5) for k in tuning.search_spaces.declared(search.method, True, search.max_epochs)}
    partial = {"trial_id": "old", "number": 4, "params": dict(point), "epochs": [{"epoch": 1, "seconds": 1.0}]}
    tuning.write_json(trials / "old" / tuning.PARTIAL, partial)
    if set_aside:
        tuning.write_json(trials / "old" / "trial.interrupted.json", {**partial, "status": "stopped"})
    assert [tuning.point_of(search, r["params"]) for r in tuning._partials(search)] == [point]
    assert tuning._take_over(search, {**point, "head_lr": 0.005}, "new") is None  # another point: a new trial
    taken = tuning._take_over(search, {**point, "loss": "ce=0.3+supcon=0.7"}, "new")
    assert taken["trial_id"] == "old" and (trials / "new" / tuning.PARTIAL).is_file()
    assert not (trials / "new" / "trial.interrupted.json").exists()
    assert sorted(p.name for p in (trials / "old").iterdir()) == ["trial.interrupted.json"] if set_aside else \
        not (trials / "old").exists()
    assert [p.parent.name for p in trials.glob(f"*/{tuning.PARTIAL}")] == ["new"] and not tuning._records(search)
    # the record names its new folder at once: a kill before the trial's next epoch leaves them agreeing
    assert json.loads((trials / "new" / tuning.PARTIAL).read_text())["trial_id"] == "new"
    # a partial whose id is not its folder's (written before the record was renamed with it) is still found
    # where it lies, and taken over from there
    tuning.write_json(trials / "new" / tuning.PARTIAL, partial)  # says "old", lies in "new"
    assert tuning._take_over(search, dict(point), "newer")["epochs"] == partial["epochs"]
    assert [p.parent.name for p in trials.glob(f"*/{tuning.PARTIAL}")] == ["newer"]


def test_asha_resumed_with_the_ended_trials_stops_where_an_empty_one_lets_through():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    def scheduler():
        return ASHAScheduler(time_attr="training_iteration", metric="m", mode="max", max_t=15, grace_period=2,
                             reduction_factor=3)

    class Trial:
        trial_id = "new"

    ended = [{"trial_id": f"t{i}", "epochs": [{"best_valid_macro_f1": s - 0.1}, {"best_valid_macro_f1": s}]}
             for i, s in enumerate([0.60, 0.70, 0.80])]
    empty, resumed = scheduler(), scheduler()
    tuning.restore_rungs(resumed, ended)
    (bracket,) = resumed._brackets
    assert {m: sorted(r.values()) for m, r in bracket._rungs} == {6: [], 2: [0.60, 0.70, 0.80]}
    assert empty._brackets[0].on_result(Trial(), 2, 0.65) == TrialScheduler.CONTINUE
    assert bracket.on_result(Trial(), 2, 0.65) == TrialScheduler.STOP  # below the top third of the rung


def test_a_resumed_search_never_draws_its_interrupted_point_a_second_time(encoder, tmp_path):  # noqa: F811
    """A session draws point C first and is killed in it with no trial ended; the next session re-runs C
    (enqueued), then draws on. With the first session's seed its first draw would be C again: Optuna's
    start-up draws ignore the history. sampler_seed counts the interrupted trial, so the draw is new."""
    import optuna

    search = _search(encoder, tmp_path)
    finished = [{"number": 0}]  # fewer than the start-up trials: random draws

    def first_draw(seed: int, enqueued: dict | None = None) -> dict:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials, multivariate=True,
                                             constant_liar=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        if enqueued is not None:  # the interrupted trial, run again to its end
            study.enqueue_trial(enqueued)
            trial = study.ask()
            tuning.search_spaces.suggest(trial, search.method, search.frozen, search.max_epochs)
            assert trial.params == enqueued
            study.tell(trial, 0.5)
        trial = study.ask()
        tuning.search_spaces.suggest(trial, search.method, search.frozen, search.max_epochs)
        return trial.params

    assert search.startup_trials > len(finished)
    assert tuning.sampler_seed(finished, []) == len(finished)  # an uninterrupted search: its trial count
    killed = first_draw(tuning.sampler_seed(finished, []))
    assert first_draw(len(finished), killed) == killed  # the old seed (the trials ended) repeats it
    partial = {"number": 1, "params": killed}
    assert tuning.sampler_seed(finished, [partial]) == 2
    assert first_draw(tuning.sampler_seed(finished, [partial]), killed) != killed


def _recipe_runs(search, configs) -> float:  # confirm_recipe's runs, into <method>/recipe/
    return tuning._validation_runs(configs, Path(search.folder) / "recipe")["101"]["valid_macro_f1"]


def _winner_runs(search, configs) -> float:  # confirm_best's runs (on a Ray worker there), into <method>/confirm/
    config = {k: v for k, v in configs[0].to_dict().items() if k not in ("seed", "num_threads")}
    return tuning._confirm_task(tuning.asdict(search), config, [101], None)["101"]


@pytest.mark.parametrize("runs, sub", [(_recipe_runs, "recipe"), (_winner_runs, "confirm")], ids=["recipe", "winner"])
def test_a_fresh_seed_run_killed_mid_way_goes_on_from_its_last_epoch(runs, sub, encoder, cache, tmp_path,  # noqa: F811
                                                                     monkeypatch):
    """The winner's and the recipe's full runs on fresh seeds (confirm_best, confirm_recipe) keep their
    state after every epoch: the run started again after a kill trains only the epochs it had not, to the
    numbers of a run never stopped."""
    script = []

    def select_score(model, loss_fn, inputs, cfg, *args):
        score = script.pop(0)
        if score is None:
            raise Killed  # in epoch 2: epoch 1's state is saved
        return score

    monkeypatch.setattr(train, "_select_score", select_score)
    plain_search, search = _search(encoder, tmp_path / "plain"), _search(encoder, tmp_path / "killed")
    configs = tuning.trial_configs(search, {**PARAMS, "patience": 3}, [101])
    script[:] = SCORES[101]
    plain = runs(plain_search, configs)
    script[:] = [SCORES[101][0], None, *SCORES[101][1:]]
    with pytest.raises(Killed):
        runs(search, configs)
    state = checkpoint.folder(Path(search.folder) / sub / "seed101")
    assert json.loads((state / checkpoint.MARKER).read_text())["epoch"] == 1
    again = runs(search, configs)
    assert not script  # epochs 2 and 3 scored after the kill, epoch 1 not trained again
    assert again == plain and not state.exists()


def test_the_search_waits_for_the_record_of_a_trial_ray_saw_end(encoder, tmp_path):  # noqa: F811
    """A trial ASHA stopped writes its record once its seeds have halted, possibly after Ray Tune ended the
    fit: the search waits for it instead of counting the trial lost and running another in its place."""
    import threading

    search = _search(encoder, tmp_path)
    late = Path(search.folder) / "trials" / "late" / tuning.RECORD
    writer = threading.Timer(1.0, lambda: tuning.write_json(late, {"trial_id": "late", "number": 0}))
    writer.start()
    try:
        assert tuning._await_records(search, {"late"}, timeout=30) == []
    finally:
        writer.cancel()
    assert late.is_file()
    # a trial lost for good (no record ever) is given up on after the timeout
    assert tuning._await_records(search, {"late", "lost"}, timeout=0.2) == ["lost"]


def test_a_finished_seed_of_another_configuration_is_set_aside_and_trained_anew(encoder, cache, tmp_path,  # noqa: F811
                                                                                  monkeypatch, capsys):
    """A resumed trial counts a seed's finished run only if that run trained this trial's configuration; the
    thread count and device define no run, so a search resumed with other resources keeps its seeds."""
    calls = _scripted_scores(monkeypatch)
    plain = tuning.run_trial(_search(encoder, tmp_path / "plain"), "t1", 1, PARAMS, lambda e, b: None, num_threads=1)
    for dropout, retrained in ((PARAMS["dropout"], {101: 3}), (0.3, {100: 2, 101: 3})):
        search = _search(encoder, tmp_path / f"other{dropout}")
        folder = Path(search.folder) / "trials" / "t1"
        calls.clear()
        with pytest.raises(Killed):
            tuning.run_trial(search, "t1", 1, PARAMS, _kill_at_2, num_threads=2)
        partial = json.loads((folder / tuning.PARTIAL).read_text())
        config = folder / "seed100" / "config.json"
        written = json.loads(config.read_text())
        assert written["num_threads"] == 2 and written["dropout"] == PARAMS["dropout"]
        config.write_text(json.dumps({**written, "dropout": dropout}))
        calls.clear()
        record = tuning.run_trial(search, "t1", 1, PARAMS, lambda e, b: None, num_threads=1, resumed=partial)
        # seed 101's checkpoint was saved with 2 threads: it trains anew (a checkpoint resumes only the same run)
        assert calls == retrained and _scores(record) == _scores(plain)
    assert sorted(p.name for p in folder.glob("seed100*")) == ["seed100", "seed100.other-config"]
    assert json.loads((folder / "seed100.other-config" / "config.json").read_text())["dropout"] == 0.3
    assert "(dropout differ) moved to seed100.other-config; this seed trains anew" in capsys.readouterr().err
