"""Hyperparameter search per (data set, encoder, method) on Ray Tune, so that every method is compared
at its best recipe under an equal tuning budget.

    python -m lib.study.tuning --dataset ko6 --encoder me5-small --method ce --method combined
    ./run_all.sh --profile tune --setting frozen --dataset ed32 --method ce --ray auto --gpus-per-trial 0.25

The search. One search per method (a loss spec: its parts name it, its weights are the Study 1
recipe's), with the space of lib/study/search_spaces.py and a named setting of lib/study/profiles.py
(TUNING): every method of a setting gets the same trials, the same maximum epochs and the same seeds
per trial. Optuna's TPE sampler proposes (Ray Tune's OptunaSearch; the first trial is the Study 1
recipe, a sum's weights scaled to sum 1, so each search starts where Study 1 stood) and ASHA ends trials that trail at its rungs
(from the setting's grace period, at least 2 epochs). A trial is one ExperimentConfig per seed, each
trained into an ordinary run folder (``<method>/trials/<trial id>/seed<k>/``); trial.json beside them
gives the ``python -m lib.run`` command that re-runs it to the same validation score.

The objective is the validation macro-F1 of the method's a-priori rule (lib/training/rules.py) at the
epoch the run selects, averaged over the trial's seeds: tuning seeds 100 and up, never the
confirmatory seeds 0-9. After the search the winner is re-run on fresh seeds (200, 201): the drop of
its score measures how much being the maximum of many trials flatters it (best.json). The test split
is never read: runs train with ``validation_only`` (lib.training.train drops the test split before
tokenising and scores none), and no record holds a test score.

Seeds in lockstep. ASHA needs one number per epoch, and that number must average the seeds. A trial
starts one thread per seed, but only the thread holding the turn runs: seed 100 trains its epoch 1,
saves its random-number state (Python, NumPy, torch CPU and CUDA) in ``on_epoch`` and passes the turn;
seed 101 trains its epoch 1 and passes it back; then the trial reports the mean over seeds of the
best validation score so far (a seed stopped early keeps its final best) and, unless ASHA ends the
trial, the next round begins. Since only one seed runs at a time and each resumes with its own
random state, every seed computes exactly what ``python -m lib.run`` computes for it alone; a seed's
last epoch keeps the turn until its run folder is written, so a trial that reaches the maximum
epochs is complete before its last report.

Resuming. A trial writes trial.json once it has ended, and the records are the search's state (Ray
Tune's own, written a little behind, can miss the last trials before a kill): the same command
starts Ray Tune again for the trials left, with the ended ones in the sampler's history (TPE goes
on from them; its seed moves past every trial number issued, interrupted ones included, so no draw
repeats: sampler_seed) and in ASHA's rungs (an empty rung would let the next trial through whatever
its score). Finished trials are never run again, and the total is the budget. A trial killed mid-way
goes on where it stopped: after every epoch it writes its record so far (trial.partial.json) and each
seed its state (lib/training/checkpoint.py); the next command enqueues its sampled point first, and the trial that gets it takes over the folder, reports the
epochs of the record again (ASHA decides on them anew, with the rungs as they are now) and trains on
from the checkpoints, to the numbers a trial never stopped computes (tests/test_tuning_resume.py,
tests/test_tuning.py). Both stay on their machine (scripts/tuning_runs.sh saves only the records of
ended trials): a seed without its checkpoint trains anew, and the trial's reports start again with it;
on another machine the interrupted trial is gone and the search samples its next point afresh. The
winner's and the recipe's runs on fresh seeds (confirm_best, confirm_recipe) keep their state after
every epoch too: on the same machine a kill loses only the epoch in progress.

Where it runs: a Ray started here (all cores and GPUs), or a cluster (``--ray ADDRESS``, joined and
given the project's environment as lib/study/fanout.py does); a trial asks for ``--cpus-per-trial``
CPUs and ``--gpus-per-trial`` of a GPU (0.25: four small fine-tunes share one GPU).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import shlex
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from lib.model.losses import parameter_owner
from lib.study import search_spaces
from lib.study.profiles import TUNING
from lib.study.ray_options import positive_int
from lib.training.config import ADDED_LATER, ConfigError, ExperimentConfig, is_config_field
from lib.training.results import is_complete, write_json
from lib.training.seeding import rng_state, set_rng_state

METRIC = "valid_macro_f1"
RECORD = "trial.json"
SEARCH = "search.json"
BEST = "best.json"
RECIPE = "recipe.json"  # the Study 1 recipe re-run on the fresh seeds (confirm_recipe)
PARTIAL = "trial.partial.json"  # a running trial's record after each epoch: what a resumed search goes on from
RAY_RETRIES = 2  # runs of the trials left after trials failed inside Ray (see _run_search)
RECORD_WAIT_S = 300  # the longest wait for the record of a trial Ray saw end (_await_records: its seeds halting)
RAY_STATE = ".ray"  # Ray Tune's working folder of a search's current run: machine-local, not a result


class TuningError(ValueError):
    """Bad input to a search (a setting, a results folder of another search): one message, exit status 2."""
    exit_status = 2


@dataclass(frozen=True)
class Search:
    """One method's search: what every trial needs, and what a resumed search must agree with."""
    dataset: str
    encoder: str
    method: str  # the loss spec as given: its parts name the method, its weights are the recipe's
    setting: str
    trials: int
    max_epochs: int
    grace_epochs: int
    startup_trials: int
    seeds: tuple
    confirm_seeds: tuple
    frozen: bool
    base: dict  # the Study 1 recipe as ExperimentConfig fields: what a trial's sampled values replace
    folder: str  # <study>/<method>/, absolute

    @property
    def name(self) -> str:
        return search_spaces.method_name(self.method)

    def budget(self) -> dict:
        """What a resumed search must share with the one it resumes."""
        keep = ("dataset", "encoder", "method", "setting", "trials", "max_epochs", "grace_epochs", "startup_trials",
                "seeds", "confirm_seeds", "frozen", "base")
        out = {k: v for k, v in asdict(self).items() if k in keep}
        out.update(seeds=list(self.seeds), confirm_seeds=list(self.confirm_seeds),
                   space={k: list(v) for k, v in search_spaces.declared(self.method, self.frozen,
                                                                        self.max_epochs).items()})
        return json.loads(json.dumps(out))  # as it reads back from search.json


# ---- settings, folders, configurations ----

def setting(name: str) -> dict:
    if name not in TUNING:
        raise TuningError(f"--setting {name!r}: not a search setting; choose from {', '.join(TUNING)} "
                          "(lib/study/profiles.py TUNING)")
    return TUNING[name]


def study_folder(dataset: str, encoder: str, setting_name: str, results: str | None = None) -> Path:
    """results/tuning/<dataset>-<encoder>[-frozen] (the setting's pattern), or ``results``."""
    from lib.study.experiments import resolve_results_dir

    if results is None:
        results = setting(setting_name)["results"].format(dataset=Path(dataset).stem,
                                                          encoder=Path(encoder).name.replace("/", "_"))
    return resolve_results_dir(results)


def method_folder(study: Path, method: str) -> Path:
    return study / search_spaces.method_name(method).replace("+", "_")


def recipe_config(dataset: str, encoder: str, method: str, setting_name: str) -> ExperimentConfig:
    """The Study 1 recipe of a method: the run notebook 04 trains for this loss with the setting's
    training parameters (lib/study/profiles.py: PROTOCOL_TRAINING, FROZEN_TRAINING)."""
    from lib.study.parameters_cell import notebook_defaults
    from lib.study.plan import notebook_runs

    s = setting(setting_name)
    params = {**notebook_defaults("04_combined"), **s["training"], "DATASET": dataset, "ENCODER": encoder,
              "SEED": s["seeds"][0], "LOSSES": [method], "GRID": []}
    try:
        return notebook_runs("04_combined", params)[0].config.validate()
    except ConfigError as e:
        raise TuningError(f"--method {method!r}: {e}") from None


def make_search(dataset: str, encoder: str, method: str, setting_name: str, study: Path,
                trials: int | None = None) -> Search:
    s = setting(setting_name)
    base = recipe_config(dataset, encoder, method, setting_name)
    if base.epochs > s["max_epochs"]:
        raise TuningError(f"setting {setting_name}: the recipe's {base.epochs} epochs exceed max_epochs "
                          f"{s['max_epochs']}")
    if base.resplit:  # a redraw pools the test split into training: a search would train on test sentences
        raise TuningError(f"setting {setting_name}: a search tunes on the data set's own split, not on resplit "
                          "(a redraw pools the test sentences with training)")
    return Search(dataset=dataset, encoder=encoder, method=method, setting=setting_name,
                  trials=trials or s["trials"], max_epochs=s["max_epochs"], grace_epochs=s["grace_epochs"],
                  startup_trials=s["startup_trials"], seeds=tuple(s["seeds"]), confirm_seeds=tuple(s["confirm_seeds"]),
                  frozen=base.freeze_encoder, base=base.to_dict(), folder=str(method_folder(study, method)))


def trial_configs(search: Search, params: dict, seeds, num_threads: int | None = None,
                  device: str | None = None) -> list[ExperimentConfig]:
    """A trial's sampled values over the recipe, one validated ExperimentConfig per seed (the parameter of
    a loss registered without a config field goes into ``loss_options``); ``num_threads`` and ``device``
    (runtime fields: the same experiment) where given."""
    base = replace(ExperimentConfig.from_dict(search.base), **{k: v for k, v in params.items() if is_config_field(k)})
    options = {k: v for k, v in params.items() if not is_config_field(k) and parameter_owner(k) is not None}
    if options:
        base = replace(base, loss_options={**(base.loss_options or {}), **options})
    if num_threads:
        base = replace(base, num_threads=num_threads)  # a runtime field: the same experiment
    if device:
        base = replace(base, device=device)
    return [replace(base, seed=seed).validate() for seed in seeds]


def trial_device(resources: dict) -> str | None:
    """The device of a trial (or re-run) given Ray ``resources``: the recipe's own ("auto") with a GPU share,
    else "cpu". Ray does not hide a node's GPUs from a task that asked for none, so "auto" would put every
    such trial on GPU 0, outside Ray's accounting (several at once, beside the GPU trials)."""
    return None if resources.get("gpu") else "cpu"


def device_problem(device: str, bf16: bool) -> str | None:
    """Why a run of ``device`` and ``bf16`` cannot train here (e.g. bf16 on a GPU without bfloat16), or None."""
    from lib.training.train import pick_device

    try:
        pick_device(device, bf16)
    except ConfigError as e:
        return str(e)
    return None


def check_trial_device(search: Search, resources: dict) -> None:
    """Refuse at once a search whose trials cannot train on the GPU Ray gives them (checked on one GPU, in a
    task with a trial's resources): each trial would fail alike and be recorded as an error, spending the
    whole equal budget on nothing."""
    if not resources.get("gpu"):
        return
    import ray

    base = ExperimentConfig.from_dict(search.base)
    print(f"tune {search.name}: checking that a trial's GPU can train the search's runs (waits for a free "
          f"{resources['gpu']:g} GPU)", flush=True)
    task = ray.remote(device_problem).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"], max_retries=0)
    problem = ray.get(task.remote(base.device, base.bf16))
    if problem:
        remedy = ("; the setting's numeric mode is fixed (lib/study/profiles.py TUNING: bf16): run the search "
                  "without --gpus-per-trial (on CPUs), or on GPUs with bfloat16 (Ampere or newer)") if base.bf16 else ""
        raise TuningError(f"tune {search.name}: a trial's GPU cannot train this search's runs ({problem}){remedy}")


def run_command(cfg: ExperimentConfig, out: str) -> str:
    """The ``python -m lib.run`` command that trains ``cfg`` (every field that differs from the default) as a
    trial does: ``--validation-only``, so following it reads no test split either."""
    default = ExperimentConfig()
    words = ["python", "-m", "lib.run"]
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                words += [flag, f"{k}={v}"]
        else:
            words += [flag, "none" if value is None else str(value).lower() if isinstance(value, bool) else
                      repr(value) if isinstance(value, float) else str(value)]
    return shlex.join(words + ["--validation-only", "--out", out])


# ---- one trial: its seeds in lockstep ----

class _Stopped(BaseException):
    """The search ended this trial (ASHA) or a sibling seed failed: a seed's run ends here, marked failed."""


class _SeedRun:
    """One seed of a trial: a thread that trains only while it holds the turn (module docstring). A seed
    of a resumed trial starts with the epochs it had run (its checkpoint), or is done (its run folder)."""

    def __init__(self, cfg: ExperimentConfig, out: Path, resumed: bool = False):
        self.cfg, self.out = cfg, out
        self.valid, self.best = [], []  # per epoch: validation macro-F1, best so far
        self.metrics, self.error, self.done, self.stop = None, None, False, False
        self._stale, self._rng = 0, None
        self._turn, self._paused = threading.Event(), threading.Event()
        if resumed and self._pick_up():
            return
        self._thread = threading.Thread(target=self._main, name=f"seed{cfg.seed}", daemon=True)
        self._thread.start()

    def _pick_up(self) -> bool:
        """Take over what this seed ran before a kill; True when its run had ended (nothing left to train)."""
        from lib.training import checkpoint
        from lib.training.results import git_state
        from lib.training.train import pick_device

        from lib.study.experiments import config_differences

        commit = git_state()["commit"]
        env = _read_json(self.out / "environment.json") or {}
        differ = (config_differences(_read_json(self.out / "config.json") or {}, copy.deepcopy(self.cfg).validate())
                  if is_complete(self.out) else {})
        if differ:  # another trial's run in this folder (the threads or device aside: they define no run)
            aside = self.out.with_name(f"{self.out.name}.other-config")
            for n in range(2, 1000):
                if not aside.exists():
                    break
                aside = self.out.with_name(f"{self.out.name}.other-config{n}")
            self.out.rename(aside)
            print(f"{self.out}: a finished run of another configuration ({', '.join(differ)} differ) moved to "
                  f"{aside.name}; this seed trains anew", file=sys.stderr, flush=True)
        if is_complete(self.out) and env.get("git", {}).get("commit") == commit:
            import pandas as pd


            self.metrics = _read_json(self.out / "metrics.json")
            scores = pd.read_csv(self.out / "history.csv", float_precision="round_trip")["valid_macro_f1"].tolist()
            self._follow(scores)
            self.done = True
            return True
        ident = checkpoint.identity(copy.deepcopy(self.cfg).validate(), pick_device(self.cfg.device, self.cfg.bf16).type)
        self._follow(checkpoint.progress(self.out, ident) or [])
        return False

    def _follow(self, scores: list[float]) -> None:
        for valid in scores:
            self._count(valid, max(valid, self.best[-1]) if self.best else valid)

    def _count(self, valid: float, best: float) -> None:
        self._stale = 0 if valid > (self.best[-1] if self.best else -1.0) else self._stale + 1  # as train.py counts
        self.valid.append(valid)
        self.best.append(best)

    def _main(self) -> None:
        from lib.training.train import run_experiment

        try:
            self._wait_for_turn()
            self.metrics = run_experiment(self.cfg, self.out, quiet=True, on_epoch=self._on_epoch,
                                          validation_only=True, resume=True)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the trial, which reports it
            self.error = e
        finally:
            self.done = True
            self._paused.set()

    def _wait_for_turn(self) -> None:
        self._turn.wait()
        self._turn.clear()
        if self.stop:
            raise _Stopped()

    def _on_epoch(self, epoch: int, valid: float, best: float) -> None:
        if epoch <= len(self.best):
            # its checkpoint was named but could not be read, so the run began anew: it trains again, without
            # giving up the turn, the epochs the trial has counted (the same numbers: the same run)
            return
        self._count(valid, best)
        patience = self.cfg.patience
        if epoch >= self.cfg.epochs or (patience is not None and self._stale >= patience):
            return  # the last epoch keeps the turn: the run restores its best epoch and writes its folder first
        self._rng = rng_state()
        self._paused.set()
        self._wait_for_turn()
        set_rng_state(self._rng)

    def step(self) -> None:
        """Give this seed the turn; return once it has trained its next epoch (or ended)."""
        self._paused.clear()
        self._turn.set()
        self._paused.wait()

    def halt(self) -> None:
        self.stop = True
        if not self.done:
            self._turn.set()
            self._thread.join(timeout=60)


def run_trial(search: Search, trial_id: str, number: int, params: dict, report, num_threads: int | None = None,
              recipe: bool = False, resumed: dict | None = None, device: str | None = None) -> dict:
    """Train one trial's seeds in lockstep; ``report(epoch, mean best validation macro-F1 so far)`` after
    every epoch (it raises SystemExit when the search ends the trial: ASHA). Returns the trial record, also
    written to ``<method>/trials/<trial id>/trial.json`` once the trial has ended (complete, stopped or
    error; never a test score); an interrupted trial writes none, only its record so far (trial.partial.json,
    after every epoch) and its seeds' checkpoints. ``resumed``: that partial record, when this trial goes on
    from it (its folder is the trial's folder already): the epochs it had run are reported again, from the
    record, and its seeds train on from their checkpoints."""
    folder = Path(search.folder) / "trials" / trial_id
    record = {"trial_id": trial_id, "number": number, "method": search.name, "status": "running", "recipe": recipe,
              "params": {k: v for k, v in sorted(params.items()) if k != "loss"},  # as sampled: loss is in config
              "seeds": list(search.seeds), "epochs": []}
    t0, runs, before = time.perf_counter(), [], {}
    try:
        configs = trial_configs(search, params, search.seeds, num_threads, device)
        record.update(config=configs[0].to_dict(),
                      commands={str(c.seed): run_command(c, shown_path(folder / f"again-seed{c.seed}")) for c in configs})
        runs = [_SeedRun(cfg, folder / f"seed{cfg.seed}", resumed is not None) for cfg in configs]
        # the epochs reported before the kill that every seed still has (a checkpoint left on another
        # machine is not here: that seed starts anew, and so do the trial's reports)
        live = [len(r.best) for r in runs if not r.done] or [len(r.best) for r in runs]
        kept = min(live)
        before = {e["epoch"]: e for e in (resumed or {}).get("epochs", []) if e["epoch"] <= kept}
        if before:
            t0 -= before[max(before)]["seconds"]
        for epoch in range(1, max(c.epochs for c in configs) + 1):
            for run in runs:
                if not run.done and len(run.best) < epoch:  # a resumed seed may be ahead of the others
                    run.step()
                if run.error is not None:
                    raise run.error
            if not any(len(r.best) >= epoch for r in runs):
                break  # every seed ended before this epoch (early stopping); its last score was reported
            _add_epoch(record, runs, epoch, time.perf_counter() - t0)
            if epoch in before:  # the time it took before the kill
                record["epochs"][-1]["seconds"] = before[epoch]["seconds"]
            if all(r.done for r in runs) and epoch >= max(len(r.best) for r in runs):
                _finish(record, folder, runs, "complete")
            else:
                write_json(folder / PARTIAL, record)
            report(epoch, record["epochs"][-1]["best_valid_macro_f1"])
            if record["status"] == "complete":
                return record
        _finish(record, folder, runs, "complete")
        return record
    except BaseException as e:
        if record["status"] != "complete":
            for run in runs:
                run.halt()
            if not isinstance(e, KeyboardInterrupt):  # SystemExit: Ray Tune ended the trial (the driver checks why)
                record["error"] = None if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}"
                _finish(record, folder, runs, "stopped" if isinstance(e, SystemExit) else "error")
        raise


def _add_epoch(record: dict, runs: list[_SeedRun], epoch: int, seconds: float) -> None:
    ran = [r for r in runs if len(r.best) >= epoch]
    record["epochs"].append({
        "epoch": epoch,
        "valid_macro_f1": sum(r.valid[epoch - 1] for r in ran) / len(ran),  # mean over the seeds that ran it
        "best_valid_macro_f1": sum(r.best[min(epoch, len(r.best)) - 1] for r in runs) / len(runs),
        "seconds": round(seconds, 2)})
    record["seconds"] = round(seconds, 2)


def _finish(record: dict, folder: Path, runs: list[_SeedRun], status: str) -> None:
    """Fill in the trial's score and write trial.json (a stopped trial: its mean best so far)."""
    record["status"] = status
    per_seed = {str(r.cfg.seed): (r.metrics["valid_macro_f1"] if r.metrics else (r.best[-1] if r.best else None))
                for r in runs}
    record["valid_macro_f1_per_seed"] = per_seed
    known = [v for v in per_seed.values() if v is not None]
    record[METRIC] = sum(known) / len(known) if known and len(known) == len(runs) else None
    record["epochs_run"] = {str(r.cfg.seed): len(r.best) for r in runs}
    write_json(folder / RECORD, record)
    if status != "stopped":  # stopped by ASHA or by an interrupted search: the driver tells (discard_partial)
        discard_partial(folder)


def discard_partial(folder: Path) -> None:
    """A trial has ended for good: its partial record and its seeds' checkpoints go."""
    from lib.training import checkpoint

    for seed in sorted(folder.glob("seed*")):
        if seed.name.endswith(checkpoint.SUFFIX):
            checkpoint.remove(seed.with_name(seed.name[:-len(checkpoint.SUFFIX)]))
    (folder / PARTIAL).unlink(missing_ok=True)
    (folder / "trial.interrupted.json").unlink(missing_ok=True)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---- on Ray Tune ----

def _space(trial, method: str, frozen: bool, max_epochs: int, offset: int) -> dict:
    """OptunaSearch's define-by-run space: the sampled config fields, and the trial's number (Optuna's,
    after the finished trials of an interrupted search: ``offset`` keeps the numbers unique). Ray adds the
    point as sampled (the space's own names, e.g. a sum's stick coordinates)."""
    return {**search_spaces.suggest(trial, method, frozen, max_epochs), "trial_number": trial.number + offset}


def _trainable(config: dict, search: dict, num_threads: int | None, device: str | None = None) -> None:
    """A Ray Tune trial (runs on a worker)."""
    from ray import tune

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec = Search(**search)
    params = {k: v for k, v in config.items() if k != "trial_number"}
    recipe = search_spaces.recipe_point(spec.base, spec.method, spec.frozen, spec.max_epochs)
    trial_id = tune.get_context().get_trial_id()
    run_trial(spec, trial_id, config["trial_number"], params,
              lambda epoch, best: tune.report({METRIC: best, "epoch": epoch}), num_threads,
              _same_point(params, recipe), _take_over(spec, params, trial_id), device=device)


def _same_point(params: dict, point: dict) -> bool:
    """Whether a trial's sampled values are ``point`` (a point of the space, by the space's names)."""
    return all(k in params and (math.isclose(params[k], v) if isinstance(v, float) else params[k] == v)
               for k, v in point.items())


def point_of(search: Search, params: dict) -> dict:
    """A trial's point in the space (the space's names, e.g. a sum's stick coordinates) from its params."""
    return {k: params[k] for k in search_spaces.declared(search.method, search.frozen, search.max_epochs)}


def _partial_files(search: Search) -> list[tuple[Path, dict]]:
    """(folder, partial record) of the trials a kill interrupted (no trial.json), in trial order. The folder
    is where the record lies: after a take-over it can still carry the old trial's id until its next epoch."""
    out = []
    for path in (Path(search.folder) / "trials").glob(f"*/{PARTIAL}"):
        record = _read_json(path)
        if record and not (path.parent / RECORD).exists():
            out.append((path.parent, record))
    return sorted(out, key=lambda found: found[1]["number"])


def _partials(search: Search) -> list[dict]:
    """The partial records of trials a kill interrupted (no trial.json), in trial order."""
    return [record for _, record in _partial_files(search)]


def _take_over(search: Search, params: dict, trial_id: str) -> dict | None:
    """The partial record of an interrupted trial with these sampled values, its folder renamed to this
    trial's (Ray names trials anew in every run) and the record rewritten under this trial's id at once (a
    kill before the next epoch leaves a record that names its folder): the trial goes on from it. None
    when there is none."""
    for old, record in _partial_files(search):
        if _same_point(params, point_of(search, record["params"])):
            folder = old.with_name(trial_id)
            old.rename(folder)
            marker = folder / "trial.interrupted.json"
            if marker.exists():  # back under the old id: a save may have committed that trial's record before
                # the search set it aside, and scripts/tuning_runs.sh takes such a copy back where it finds this
                old.mkdir(exist_ok=True)
                marker.rename(old / marker.name)
            write_json(folder / PARTIAL, {**record, "trial_id": trial_id})
            print(f"tune {search.name}: trial {trial_id} goes on from interrupted trial {record['trial_id']} after "
                  f"{len(record['epochs'])} epoch(s)", flush=True)
            return record
    return None


def _dirname(trial) -> str:
    return trial.trial_id


# Trials whose end the driver saw (completed, ended by ASHA, failed), by search folder: a trial Ray stopped
# because the search itself was interrupted (Ctrl-C) wrote "stopped" too, and its record is set aside.
_ENDED: dict[str, set] = {}


def _progress_callback(search: Search):
    from ray import tune

    class Progress(tune.Callback):
        """One line per finished trial; which trials ended (``_ENDED``)."""
        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trials, trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trials, trial)

        def _line(self, trials, trial):
            _ENDED.setdefault(search.folder, set()).add(trial.trial_id)
            folder = Path(search.folder) / "trials" / trial.trial_id
            # ended for good (complete, ASHA, an error of ours: it has its record); a trial lost inside Ray
            # (no record) is run again by run_search's retries, from its checkpoints
            if trial.status != "ERROR" or (folder / RECORD).exists():
                discard_partial(folder)
            record = _read_json(Path(search.folder) / "trials" / trial.trial_id / RECORD) or {}
            result = trial.last_result or {}
            records = _records(search)
            status = record.get("status") or ("error" if trial.status == "ERROR" else "stopped")
            score = record.get(METRIC, result.get(METRIC))
            epochs = len(record["epochs"]) if record.get("epochs") else result.get("training_iteration", 0)
            best = max((r[METRIC] for r in records if r.get("status") == "complete" and r.get(METRIC) is not None),
                       default=float("nan"))
            print(f"tune {search.name}: trial {len(_ENDED[search.folder])}/{search.trials} {status}, validation macro-F1 "
                  f"{'-' if score is None else f'{score:.4f}'} after {epochs} epoch(s); best complete {best:.4f}",
                  flush=True)

    return Progress()


def _records(search: Search) -> list[dict]:
    """The trial records of a search (a record exists once its trial has ended), in trial order."""
    out = []
    for path in sorted((Path(search.folder) / "trials").glob(f"*/{RECORD}")):
        record = _read_json(path)
        if record:
            out.append(record)
    return sorted(out, key=lambda r: r["number"])


def connect(address: str | None) -> bool:
    """Join the Ray at ``address`` or start one here (lib/study/fanout.py's way: the project's environment
    on every worker). False when this process is connected already (a notebook, a test): left as is."""
    import ray

    if ray.is_initialized():
        return False
    from lib.study import fanout

    problem = fanout._connect(ray, argparse.Namespace(ray=address or fanout.LOCAL, ray_workers=None,
                                                      ray_cpus_per_run=None))
    if problem:
        raise TuningError(problem)
    return True


def trial_resources(cpus: int, gpus: float) -> dict:
    """Ray resources of one trial; refused at once where no node could ever give them (Ray would wait)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus for n in nodes):
        raise TuningError(f"--cpus-per-trial {cpus}: no Ray node has that many CPUs "
                          f"(the largest has {max((int(n.get('CPU', 0)) for n in nodes), default=0)})")
    if gpus and not any(n.get("GPU", 0) >= gpus for n in nodes):
        raise TuningError(f"--gpus-per-trial {gpus:g}: no Ray node has a GPU to give")
    return {"cpu": cpus, "gpu": gpus} if gpus else {"cpu": cpus}


def _seeded_study(search: Search, finished: list[dict]):
    """An Optuna study holding the finished trials of an interrupted search (none for a new one), so TPE
    goes on from what they found. A trial ASHA stopped counts with its score when stopped, as Ray's
    OptunaSearch counts it in an uninterrupted search."""
    import optuna

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name=search.name, direction="maximize")
    dists = search_spaces.distributions(search.method, search.frozen, search.max_epochs)
    for r in finished:
        ok = r["status"] != "error" and r.get(METRIC) is not None
        study.add_trial(optuna.trial.create_trial(
            params={k: r["params"][k] for k in dists}, distributions=dists, value=r[METRIC] if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL))
    return storage


def restore_rungs(scheduler, finished: list[dict]) -> None:
    """ASHA's rungs as the ended trials left them: a resumed search stops a trial where the search never
    stopped would have (an empty rung lets the first trial through, whatever its score). A trial's score at
    a rung is what it reported at that epoch (its record's epochs). Ray's ASHA keeps its rungs as
    ``_brackets[i]._rungs``, a list of (milestone, {trial id: score}); tests/test_tuning.py checks it."""
    try:
        (bracket,) = scheduler._brackets  # one bracket: ASHA's default, and what this module asks for
        rungs, sign = bracket._rungs, scheduler._metric_op
    except (AttributeError, ValueError):
        raise TuningError("this Ray's ASHAScheduler keeps its rungs otherwise than Ray 2.60 (the pinned version): "
                          "restore_rungs cannot resume a search with them") from None
    for milestone, recorded in rungs:
        for r in finished:
            epochs = r.get("epochs") or []
            if len(epochs) >= milestone:
                recorded[f"ended-{r['trial_id']}"] = sign * epochs[milestone - 1]["best_valid_macro_f1"]


def run_search(search: Search, resources: dict, concurrent: int | None = None) -> list[str]:
    """Run one method's search, or what is left of it, on the connected Ray; returns its trial ids in order.

    A search goes on from its trial records: the trials that ended count towards the budget and seed
    the sampler and ASHA; a trial killed mid-way goes on from its partial record and checkpoints."""
    import shutil
    import warnings

    import optuna
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our records are the results, and
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # one line per trial (the callback): no tables
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # A trial that fails inside Ray (not in our code: e.g. a worker lost) leaves no record and is run
    # again, at most RAY_RETRIES times; a Ctrl-C ends the loop with the trials left for the next command.
    for attempt in range(1 + RAY_RETRIES):
        finished = _records(search)
        left = search.trials - len(finished)
        for folder in (Path(search.folder) / "trials").glob("*"):  # partial state no trial will go on from
            if (folder / PARTIAL).exists() and ((folder / RECORD).exists() or left <= 0):
                discard_partial(folder)
        if finished:
            print(f"tune {search.name}: resuming the search: {len(finished)} of {search.trials} trials ended earlier, "
                  f"{max(left, 0)} to run", flush=True)
        if left > 0:
            threads = int(resources["cpu"])
            trainable = tune.with_resources(
                tune.with_parameters(_trainable, search=asdict(search), num_threads=threads,
                                     device=trial_device(resources)), resources)
            offset = max((r["number"] for r in finished), default=-1) + 1 - len(finished)
            space = functools.partial(_space, method=search.method, frozen=search.frozen, max_epochs=search.max_epochs,
                                      offset=offset)
            recipe = search_spaces.recipe_point(search.base, search.method, search.frozen, search.max_epochs)
            sampler = optuna.samplers.TPESampler(seed=sampler_seed(finished, _partials(search)),
                                                 n_startup_trials=search.startup_trials, multivariate=True,
                                                 constant_liar=True)
            # first the trials a kill interrupted (they go on from their checkpoints), then the recipe if not run yet
            again = [point_of(search, r["params"]) for r in _partials(search)][:left]
            if not any(r.get("recipe") for r in finished) and not any(_same_point(p, recipe) for p in again):
                again.append(recipe)
            searcher = OptunaSearch(space, metric=METRIC, mode="max", sampler=sampler, study_name=search.name,
                                    storage=_seeded_study(search, finished), points_to_evaluate=again)
            scheduler = ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode="max",
                                      max_t=search.max_epochs, grace_period=search.grace_epochs, reduction_factor=3)
            restore_rungs(scheduler, finished)
            storage = Path(search.folder) / RAY_STATE
            shutil.rmtree(storage, ignore_errors=True)  # Ray's state of an interrupted run: the records replace it
            tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=left, max_concurrent_trials=concurrent,
                reuse_actors=True, trial_dirname_creator=_dirname),  # a stopped trial writes its record (see run_trial)
                run_config=tune.RunConfig(name="search", storage_path=str(storage), verbose=0,
                                          callbacks=[_progress_callback(search), JsonLoggerCallback()],
                                          failure_config=tune.FailureConfig(max_failures=0)))
            before = {r["trial_id"] for r in finished}
            _ENDED[search.folder] = set(before)  # the progress lines count ended trials from here
            with warnings.catch_warnings():
                # multivariate TPE and constant liar are "experimental" in Optuna: nothing to act on
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                grid = tuner.fit()
            ended = _ENDED.pop(search.folder, set())
            _await_records(search, ended - before)
            for r in _records(search):  # stopped by an interrupted search, not by ASHA: not an ended trial
                if r["trial_id"] not in before and r["trial_id"] not in ended:
                    path = Path(search.folder) / "trials" / r["trial_id"] / RECORD
                    path.replace(path.with_name("trial.interrupted.json"))
        if left <= 0 or len(_records(search)) >= search.trials:
            break
        failed = [str(e) for e in getattr(grid, "errors", [])]
        # Every trial this fit started was seen to end (ASHA, complete or error), yet some left no record:
        # lost inside Ray (a trial stopped while its actor was handed on), not a Ctrl-C, which ends trials
        # unseen and leaves the rest to the next command.
        lost = len(ended - before) >= left
        if not failed and not lost:
            break
        why = f"failed in Ray ({failed[0][:200]})" if failed else "ended without a record"
        print(f"tune {search.name}: {search.trials - len(_records(search))} trial(s) {why}; running the trials "
              f"left again ({attempt + 1} of {RAY_RETRIES})", file=sys.stderr, flush=True)
    records = _records(search)
    if len(records) < search.trials:  # Ray Tune was interrupted (Ctrl-C) and stopped its trials
        print(f"tune {search.name}: interrupted with {len(records)} of {search.trials} trials ended; the same "
              "command resumes the search", file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    if len(records) > search.trials:
        raise TuningError(f"{search.folder}: {len(records)} trial records for a budget of {search.trials}")
    return [r["trial_id"] for r in records]


def _await_records(search: Search, trial_ids, timeout: float | None = None) -> list[str]:
    """Wait until every trial of ``trial_ids`` (seen to end) has its record, for ``timeout`` seconds at most
    (RECORD_WAIT_S); returns those still without one. A trial ASHA stops writes its record on its worker once
    its seeds have halted, which can be after Ray Tune has moved on and ended the fit: counted lost then, it
    would be run again in its place, one draw more than the budget (it happened to a search of the older
    code: docs/results.md#tuning-status)."""
    paths = {t: Path(search.folder) / "trials" / t / RECORD for t in sorted(trial_ids)}
    deadline = time.monotonic() + (RECORD_WAIT_S if timeout is None else timeout)
    while (missing := [t for t, p in paths.items() if not p.exists()]) and time.monotonic() < deadline:
        time.sleep(0.5)
    return missing


def sampler_seed(finished: list[dict], partials: list[dict]) -> int:
    """TPE's seed for a search (re)started with these ended and interrupted trials: one past every trial
    number issued so far (the trial count of an uninterrupted search). Counting the interrupted ones
    matters: TPE's start-up draws ignore the history, so with the seed of the session that drew an
    interrupted point, the first draw after that point's re-run would be the same point again, a second
    trial of one configuration (tests/test_tuning_resume.py)."""
    return 1 + max((r["number"] for r in [*finished, *partials]), default=-1)


def _confirm_task(search: dict, config: dict, seeds: list, num_threads: int | None,
                  device: str | None = None) -> dict:
    """The winner's configuration on fresh seeds (on a worker): {seed: validation macro-F1}."""
    from lib.study.experiments import same_config
    from lib.training.train import run_experiment

    spec = Search(**search)
    scores = {}
    for cfg in trial_configs(spec, config, seeds, num_threads, device):
        out = Path(spec.folder) / "confirm" / f"seed{cfg.seed}"
        if is_complete(out) and same_config(_read_json(out / "config.json") or {}, cfg):
            metrics = _read_json(out / "metrics.json")
        else:
            # resume: a kill (a working session's end) loses only the epoch in progress of these full runs
            metrics = run_experiment(cfg, out, quiet=True, validation_only=True, resume=True)
        scores[str(cfg.seed)] = metrics["valid_macro_f1"]
    return scores


def confirm_best(search: Search, trial_ids: list[str], resources: dict) -> dict:
    """Re-run the best complete trial on the setting's fresh seeds; write and return best.json."""
    import ray

    records = {r["trial_id"]: r for r in _records(search) if r["trial_id"] in set(trial_ids)}
    complete = [r for r in records.values() if r["status"] == "complete" and r.get(METRIC) is not None]
    if not complete:
        raise TuningError(f"{search.folder}: no trial of the search completed; nothing to confirm")
    best = max(complete, key=lambda r: (r[METRIC], -r["number"]))
    rank = 1 + [r["trial_id"] for r in _records(search) if r["trial_id"] in records].index(best["trial_id"])
    config = {k: v for k, v in best["config"].items() if is_config_field(k) and k not in ("seed", "num_threads")}
    threads = int(resources["cpu"])
    task = ray.remote(_confirm_task).options(num_cpus=resources["cpu"], num_gpus=resources.get("gpu", 0),
                                             max_retries=0)
    device = trial_device(resources)
    scores = ray.get(task.remote(asdict(search), config, list(search.confirm_seeds), threads, device))
    confirm = sum(scores.values()) / len(scores)
    recipe = next((r for r in records.values() if r.get("recipe")), None)
    configs = trial_configs(search, config, search.confirm_seeds, threads, device)  # as the task ran them
    out = {"method": search.name, "trial_id": best["trial_id"], "number": best["number"], "trial": rank,
           "params": best["params"],
           "config": best["config"], "search_seeds": list(search.seeds), "search_valid_macro_f1": best[METRIC],
           "confirm_seeds": list(search.confirm_seeds), "confirm_valid_macro_f1_per_seed": scores,
           "confirm_valid_macro_f1": confirm, "drop": best[METRIC] - confirm,
           "confirm_commands": {str(c.seed): run_command(c, shown_path(Path(search.folder) / "confirm" / f"again-seed{c.seed}"))
                                for c in configs},
           "recipe": {"config": search.base, "trial_id": recipe["trial_id"] if recipe else None,
                      "status": recipe["status"] if recipe else None,
                      "search_valid_macro_f1": recipe.get(METRIC) if recipe else None}}
    write_json(Path(search.folder) / BEST, out)
    return out


def shown_path(path: Path) -> str:
    """A path as a record names it: relative to the project where it lies inside it (no machine's folders)."""
    from lib.paths import PROJECT_ROOT

    path = Path(path)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _validation_runs(configs: list[ExperimentConfig], folder: Path) -> dict:
    """Each config trained (validation only) into ``folder/seed<k>``, or reused where it is there:
    {seed: {"valid_macro_f1", "git", "hardware"}} (the run folders stay on this machine)."""
    from lib.study.experiments import same_config
    from lib.training.results import hardware_of
    from lib.training.train import run_experiment

    out = {}
    for cfg in configs:
        run = folder / f"seed{cfg.seed}"
        if is_complete(run) and same_config(_read_json(run / "config.json") or {}, cfg):
            metrics = _read_json(run / "metrics.json")
        else:
            metrics = run_experiment(cfg, run, quiet=True, validation_only=True, resume=True)  # as _confirm_task
        env = _read_json(run / "environment.json") or {}
        out[str(cfg.seed)] = {"valid_macro_f1": metrics["valid_macro_f1"], "git": env.get("git"),
                              "hardware": hardware_of(env)}
    return out


def confirm_recipe(search: Search) -> dict:
    """Re-run the Study 1 recipe, as the search's first trial ran it, on the fresh seeds the winner was
    re-run on; write and return recipe.json. The winner's tuning-seed score is the maximum of many trials
    and flatters it; on the same fresh seeds, winner minus recipe is what tuning bought (still on the
    validation split the winner was chosen on). Runs here, in this process, with the torch threads of the
    winner's re-run, and the winner's fresh-seed runs are made again beside it: a run's validation score
    moves with the machine (seen on the frozen ko6 searches; likely bf16 features rounding differently on
    another CPU), by as much as the differences tuned, so both sides come from this code and machine.
    ``winner_reproduced`` says whether the winner's re-run gave best.json's scores exactly."""
    best = _read_json(Path(search.folder) / BEST)
    if best is None:
        raise TuningError(f"{Path(search.folder) / BEST}: missing; the search has not finished")
    first = next((r for r in _records(search) if r.get("recipe") and r.get("config")), None)
    if first is None:  # a trial ASHA stopped still names its configuration: re-run here in full
        raise TuningError(f"{search.folder}: the Study 1 recipe's trial is missing; nothing to compare the winner with")
    threads = best["config"].get("num_threads")
    seeds = list(search.confirm_seeds)
    recipe = replace(ExperimentConfig.from_dict(first["config"]), num_threads=threads)
    winner = replace(ExperimentConfig.from_dict(best["config"]), num_threads=threads)
    folder = Path(search.folder)
    ran = _validation_runs([replace(recipe, seed=k).validate() for k in seeds], folder / "recipe")
    again = _validation_runs([replace(winner, seed=k).validate() for k in seeds], folder / "confirm-again")
    scores = {k: r["valid_macro_f1"] for k, r in ran.items()}
    mean = sum(scores.values()) / len(scores)
    winner_scores = {k: r["valid_macro_f1"] for k, r in again.items()}
    winner_mean = sum(winner_scores.values()) / len(winner_scores)
    per_seed = {k: winner_scores[k] - scores[k] for k in scores}
    out = {"method": search.name, "trial_id": first["trial_id"], "config": replace(recipe, seed=seeds[0]).to_dict(),
           "seeds": seeds, "valid_macro_f1_per_seed": scores, "valid_macro_f1": mean,
           "commands": {str(k): run_command(replace(recipe, seed=k).validate(),
                                            shown_path(folder / "recipe" / f"again-seed{k}")) for k in seeds},
           "winner_rerun_valid_macro_f1_per_seed": winner_scores, "winner_rerun_valid_macro_f1": winner_mean,
           "best_minus_recipe": winner_mean - mean, "best_minus_recipe_per_seed": per_seed,
           "git": {k: r["git"] for k, r in ran.items()}, "hardware": {k: r["hardware"] for k, r in ran.items()},
           "winner_rerun_git": {k: r["git"] for k, r in again.items()},
           "winner_rerun_hardware": {k: r["hardware"] for k, r in again.items()},
           "winner_rerun_minus_best_json": winner_mean - best["confirm_valid_macro_f1"],
           "winner_reproduced": all(winner_scores[k] == best["confirm_valid_macro_f1_per_seed"][k] for k in again)}
    write_json(folder / RECIPE, out)
    return out


def _with_later_defaults(saved: dict) -> dict:
    """``saved`` (a search.json budget) with the config fields added since (``ADDED_LATER``) that its Study 1
    recipe lacks, as the value they were added with: a search saved earlier resumes or publishes from a
    later commit."""
    base = saved.get("base")
    if not isinstance(base, dict):
        return saved
    return {**saved, "base": {**{k: v for k, v in ADDED_LATER.items() if k not in base}, **base}}


def _search_state(search: Search) -> dict | None:
    """search.json of an earlier search in the same folder; refused when it was another search."""
    state = _read_json(Path(search.folder) / SEARCH)
    now = search.budget()
    saved = _with_later_defaults((state or {}).get("budget", {}))
    if state is not None and saved != now:
        differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if "base" in differ and isinstance(saved.get("base"), dict) and isinstance(now.get("base"), dict):
            a, b = saved["base"], now["base"]  # name the recipe's fields that differ
            differ = sorted(set(differ) - {"base"}) + sorted(f"base.{k}" for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise TuningError(f"{Path(search.folder) / SEARCH} belongs to a search with other settings ({', '.join(differ)}"
                          "); pass --results another folder, or remove that method's folder to start over")
    return state


def run_searches(dataset: str, encoder: str, methods: list[str], setting_name: str, results: str | None = None, *,
                 ray_address: str | None = None, cpus_per_trial: int | None = None, gpus_per_trial: float = 0.0,
                 concurrent: int | None = None, trials: int | None = None, run: bool = True,
                 finished_only: bool = False) -> Path:
    """Every method's search (resumed where one was interrupted; skipped where finished), each winner
    and the Study 1 recipe re-run on fresh seeds (``run=False``: nothing is run; ``finished_only``:
    refused unless every search has finished). Returns the study folder, whose report
    lib.study.tuning_report writes."""
    if not methods:
        raise TuningError("name at least one --method (a loss spec such as ce, combined or ce=0.5+supcon=0.5)")
    study = study_folder(dataset, encoder, setting_name, results)
    from lib.ownership import NotOursError, check_owned

    try:  # never write into a user's folder
        check_owned(study, _is_tuning_study, "a tuning study folder (<method>/search.json)",
                    "Give --results a new or empty folder, or one this program wrote.")
    except NotOursError as e:
        raise TuningError(str(e)) from None
    searches = [make_search(dataset, encoder, m, setting_name, study, trials) for m in methods]
    names = [s.name for s in searches]
    if len(set(names)) < len(names):
        raise TuningError(f"--method: two methods with the same parts ({', '.join(names)}); a sum's weights are "
                          "tuned, so name each set of parts once")
    todo = [s for s in searches if not ((_search_state(s) or {}).get("finished") and (Path(s.folder) / BEST).is_file())]
    if finished_only and todo:
        raise TuningError(f"--publish: not finished in {study}: {', '.join(s.name for s in todo)}; run the searches "
                          "first (the same command without --publish)")
    for s in searches:
        if s not in todo:
            print(f"tune {s.name}: finished earlier ({s.trials} trials) in {s.folder}", flush=True)
    if todo and run:
        _run_on_ray(todo, study, ray_address, cpus_per_trial, gpus_per_trial, concurrent)
    elif todo:
        print(f"tune: not run here (report only): {', '.join(s.name for s in todo)}", flush=True)
    for s in searches:  # what tuning bought: the recipe on the winner's fresh seeds
        if (Path(s.folder) / BEST).is_file() and not (Path(s.folder) / RECIPE).is_file():
            if not run:
                print(f"tune {s.name}: recipe not re-run on fresh seeds (report only)", flush=True)
                continue
            r = confirm_recipe(s)
            print(f"tune {s.name}: Study 1 recipe {r['valid_macro_f1']:.4f} on fresh seeds "
                  f"{','.join(map(str, s.confirm_seeds))}, the winner re-run beside it "
                  f"{r['winner_rerun_valid_macro_f1']:.4f} (winner minus recipe {r['best_minus_recipe']:+.4f}; the "
                  f"winner's re-run {'reproduced best.json' if r['winner_reproduced'] else 'differs from best.json by '}"
                  f"{'' if r['winner_reproduced'] else format(r['winner_rerun_minus_best_json'], '+.4f')})",
                  flush=True)
    return study


def _is_tuning_study(folder: Path) -> bool:
    """A study folder this program filled: a method's search.json, or the study's report.json."""
    from lib.ownership import json_object

    return (any(json_object(p, "budget", "finished") for p in folder.glob(f"*/{SEARCH}"))
            or json_object(folder / "report.json", "equal_budget", "methods") is not None)


def _run_on_ray(todo: list[Search], study: Path, address, cpus_per_trial, gpus_per_trial, concurrent) -> None:
    import ray

    from lib.study import fanout

    study.mkdir(parents=True, exist_ok=True)
    started = connect(address)
    try:
        if address not in (None, fanout.LOCAL):
            problem = fanout.check_shared_folder(ray, study)
            if problem:
                raise TuningError(problem)
        cpus = cpus_per_trial or (1 if gpus_per_trial or todo[0].frozen else min(4, os.cpu_count() or 1))
        resources = trial_resources(cpus, gpus_per_trial)
        for search in todo:
            check_trial_device(search, resources)
            state = _search_state(search) or {}
            write_json(Path(search.folder) / SEARCH, {"budget": search.budget(), "finished": False,
                                                      "trials": state.get("trials", [])})
            print(f"tune {search.name}: {search.trials} trials of at most {search.max_epochs} epochs, seeds "
                  f"{','.join(map(str, search.seeds))}, {resources} per trial -> {search.folder}", flush=True)
            ids = run_search(search, resources, concurrent)
            if len(ids) != search.trials:
                raise TuningError(f"{search.folder}: Ray Tune ran {len(ids)} trials, not the budget of {search.trials}")
            write_json(Path(search.folder) / SEARCH, {"budget": search.budget(), "finished": True, "trials": ids})
            best = confirm_best(search, ids, resources)
            print(f"tune {search.name}: best trial {best['trial']} validation macro-F1 "
                  f"{best['search_valid_macro_f1']:.4f} on seeds {','.join(map(str, search.seeds))}, "
                  f"{best['confirm_valid_macro_f1']:.4f} on fresh seeds {','.join(map(str, search.confirm_seeds))} "
                  f"(drop {best['drop']:+.4f})", flush=True)
    finally:
        if started:
            ray.shutdown()


def render_notebook(study: Path, dataset: str, encoder: str, methods: list[str], setting_name: str) -> Path:
    """Notebook 07 executed over the study's records (RUN_SEARCH False: it trains nothing) into
    ``<study>/notebooks/07_tuning.ipynb``, paths project-relative, as the study notebooks are."""
    from lib.paths import PROJECT_ROOT
    from lib.study.profiles import TUNING_NOTEBOOK
    from lib.study.runner import Report, execute

    params = {"DATASET": dataset, "ENCODER": encoder, "SETTING": setting_name, "METHODS": methods,
              "RESULTS_DIR": os.path.relpath(study, PROJECT_ROOT), "RUN_SEARCH": False}
    report = Report()
    status = execute(TUNING_NOTEBOOK, None, params, study / "notebooks", True, report)
    if report.failed:
        raise TuningError(f"notebook {TUNING_NOTEBOOK} over {study}: {status} (executed copy: "
                          f"{report.failed[0]['executed_copy']})")
    print(f"tune: notebook {study / 'notebooks' / TUNING_NOTEBOOK}.ipynb {status}", flush=True)
    return study / "notebooks" / f"{TUNING_NOTEBOOK}.ipynb"


# ---- command line ----

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lib.study.tuning (or run_all.sh --profile tune)",
        description="Hyperparameter search per method (Optuna TPE through Ray Tune, ASHA early termination) "
                    "under an equal budget: the same trials, maximum epochs and seeds for every method; objective "
                    "the validation macro-F1 of the method's a-priori rule; the test split is never read. "
                    "Resumable: the same command continues an interrupted search.")
    p.add_argument("--profile", choices=["tune"], help=argparse.SUPPRESS)
    p.add_argument("--dataset", default="ed6", help="data set name or CSV path (default: ed6)")
    p.add_argument("--encoder", default=None, help="encoder (default: me5-small for ko6, minilm otherwise)")
    p.add_argument("--method", action="append", default=[], metavar="LOSS",
                   help="a method to tune, as a loss spec (ce, triplet, combined, ce=0.5+supcon=0.5, ...); repeatable "
                        "or comma-separated; a sum's weights are tuned on the simplex from the given ones")
    p.add_argument("--setting", default=None, choices=sorted(TUNING),
                   help="named search setting (lib/study/profiles.py TUNING): finetune (24 trials, at most 15 "
                        "epochs), frozen (40 trials, at most 30 epochs, frozen encoder), smoke (CI); default: "
                        "frozen with --freeze-encoder, else finetune")
    p.add_argument("--freeze-encoder", action="store_true", help="the frozen setting (the default setting otherwise)")
    p.add_argument("--trials", type=positive_int, default=None,
                   help="trials per method instead of the setting's (keep it equal across the methods you compare)")
    p.add_argument("--results", default=None,
                   help="study folder (default: results/tuning/<dataset>-<encoder>[-frozen]; smoke: results/smoke/...)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="the Ray cluster at ADDRESS (host:port or auto); without it a Ray is started here")
    p.add_argument("--cpus-per-trial", type=positive_int, default=None,
                   help="CPUs (and torch threads) per trial (default: 1 for a frozen encoder or with a GPU share, else "
                        "up to 4)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="FRACTION",
                   help="GPU share per trial, e.g. 0.25: four trials on one GPU (default: 0: trials train on CPUs, "
                        "even on a node with GPUs); a GPU that cannot train the setting's numeric mode (bf16 before "
                        "Ampere) is refused before any trial")
    p.add_argument("--concurrent", type=positive_int, default=None,
                   help="trials at once at most (default: as many as the resources allow)")
    p.add_argument("--report-only", action="store_true", help="run nothing: rewrite the report of what exists")
    p.add_argument("--publish", action="store_true",
                   help="the published report of finished searches in results/tuning/<study>: re-run the Study 1 recipe "
                        "on the fresh seeds where missing, write the report, execute notebook 07 over the records "
                        "into <study>/notebooks/; refused while a named search is unfinished")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    methods = [m.strip() for item in args.method for m in item.split(",") if m.strip()]
    name = args.setting or ("frozen" if args.freeze_encoder else "finetune")
    try:
        if args.freeze_encoder and not setting(name)["training"].get("FREEZE_ENCODER"):
            raise TuningError(f"--freeze-encoder: setting {name} fine-tunes the encoder; use --setting frozen")
        if not 0 <= args.gpus_per_trial <= 64 or (args.gpus_per_trial > 1 and args.gpus_per_trial % 1):
            raise TuningError(f"--gpus-per-trial {args.gpus_per_trial:g}: a fraction in (0, 1] or a whole number")
        from lib.study.runner import check_inputs
        from lib.training.train import default_encoder

        encoder = args.encoder or default_encoder(ExperimentConfig(dataset=args.dataset))
        problem = check_inputs(args.dataset, encoder)
        if problem:
            raise TuningError(problem)
        if args.publish and (args.results or args.report_only or args.trials):
            raise TuningError("--publish writes the published report of the setting's own searches; it takes none "
                              "of --results, --report-only, --trials")
        study = run_searches(args.dataset, encoder, methods, name, args.results, ray_address=args.ray,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             concurrent=args.concurrent, trials=args.trials, run=not args.report_only,
                             finished_only=args.publish)
        from lib.study import tuning_report

        report = tuning_report.write_report(study)
        if args.publish:
            render_notebook(study, args.dataset, encoder, methods, name)
    except (TuningError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report["budget"].to_string(index=False))
    print(f"tune: report (trials.csv, best_configs.csv, importance.csv, report.json, figures/) in {study}", flush=True)
    return 0


if __name__ == "__main__":
    from lib.entrypoint import run_main
    from lib.study import tuning  # this file by its module name: Ray pickles the search's functions by it

    sys.exit(run_main(tuning.main))
