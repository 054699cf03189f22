"""Headless reproduction: execute every notebook for every seed with papermill (run_all.sh calls this).

Resumable: an executed notebook that finished is skipped; one that was interrupted or failed
is redone; ``--force`` redoes everything. Inside a notebook, finished runs are reused too, and an
interrupted fine-tune goes on from its last finished epoch (lib/training/checkpoint.py).

The published results (``results/<study>/``, tracked by git) are a reference, not a cache: by
default a study trains into ``results/local/<study>/`` (ignored by git) and ends by comparing its
summary with the published one (lib.study.compare). ``--publish`` writes into the published
folder instead, reusing the runs found there (re-rendering), and says so first and last.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lib.paths import PROJECT_ROOT
# Only standard-library modules at the top: ./run_all.sh --help runs before any environment exists
# (tests/test_command_lines.py). The rest is imported where it is used.
from lib.study.parameters_cell import accepts, declared_parameters, loss_option_parameters
from lib.study.profiles import (FROZEN_TRAINING, NOTEBOOKS, PROFILES, TRAINING_NOTEBOOKS, notebook_parameters,
                                profile_notebooks)
from lib.study.ray_options import add_options as add_ray_options, options_problem

KERNEL = "emotion-study"
# The kernel's own log stays out of the run log: ipykernel's three-line "running over TCP without
# encryption" warning (a local kernel on 127.0.0.1, started by papermill) once per notebook, and
# "KeyboardInterrupt caught in kernel" when a slow machine shuts a kernel down late. A failing
# cell or a dead kernel is still reported, by papermill, in the notebook and the runner's report.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


@dataclass
class Report:
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated non-negative integers such as 0,1,2; "
                                         f"got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds takes distinct non-negative integers such as 0,1,2; got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_all.sh",
        description="Run the study's notebooks headless with papermill: 00 once, 01-04 once per seed, then the "
                    "t-SNE (first seed) and summary notebooks over what exists. Executed notebooks, run folders, "
                    "figures and the summary go to the results folder.")
    p.add_argument("--profile", default="default", choices=sorted(PROFILES) + ["tune"],
                   help="tune: the hyperparameter search of notebook 07 on Ray Tune (its own options: "
                        "./run_all.sh --profile tune --help); smoke: tiny CI check (minutes); default: ed6 + minilm trained as the published ed6 "
                        "study (up to 15 epochs, early stopping) on its first seed (laptop CPU, under an hour); paper: the primary confirmatory study of PROTOCOL.md, ko6 + me5-small, CE "
                        "and combined, 10 seeds, up to 15 epochs with early stopping (GPU recommended, resumable on "
                        "CPU); paper-secondary: PROTOCOL.md's secondary studies, the same budget, 5 seeds, every "
                        "notebook (ed6 + minilm unless --dataset/--encoder)")
    p.add_argument("--dataset", help="data set name or CSV path (default: the profile's)")
    p.add_argument("--encoder", help="encoder name, Hugging Face id or folder (default: the profile's)")
    p.add_argument("--seeds", type=parse_seeds, help="comma-separated seeds, e.g. 0,1,2 (default: the profile's)")
    p.add_argument("--text-column", help="text column of a CSV data set (default: text)")
    p.add_argument("--label-column", help="label column of a CSV data set (default: label)")
    p.add_argument("--results", help="results folder (default: results/local/<dataset>-<encoder>[-frozen][-resplit]"
                                     "[-tuned], ignored by git; smoke: results/smoke/<dataset>-<encoder>); with "
                                     "RESPLIT or TUNED_RECIPES set its name must end so")
    p.add_argument("--publish", action="store_true",
                   help="write into the published results/<dataset>-<encoder> (tracked by git; or --results "
                        "results/<folder> of a study that lib/study/studies.py lists) instead: finished "
                        "runs there are reused, not re-trained, so the notebooks are re-rendered from the "
                        "published numbers; missing runs are trained and added")
    p.add_argument("--compare-with", metavar="DIR",
                   help="published study to compare the summary with at the end (default: "
                        "results/<dataset>-<encoder>[-frozen][-resplit][-tuned] where it has a summary.csv)")
    p.add_argument("--notebooks",
                   help="comma-separated notebook names to run (default: the profile's: all, except that paper "
                        "skips 02 and 03, since PROTOCOL.md compares CE and combined on ko6, unless the encoder is "
                        "frozen)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="train only the heads on cached encoder outputs (every loss in minutes): sets "
                        f"{', '.join(f'{k}={v}' for k, v in FROZEN_TRAINING.items())} in the training notebooks "
                        "and writes to results/local/<dataset>-<encoder>-frozen by default (with --publish "
                        "results/<dataset>-<encoder>-frozen)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="set a notebook parameter in every selected notebook that declares it, e.g. --set EPOCHS=3 "
                        "or --set 'LOSSES=[\"combined\"]' (VALUE is JSON, or True/False/None as the notebooks write them, "
                        "else a plain string); repeatable")
    p.add_argument("--force", action="store_true", help="redo every notebook and run, even finished ones")
    p.add_argument("--render-only", action="store_true",
                   help="train nothing: re-execute the notebooks from finished runs (figures, summary); a run that "
                        "is missing or was trained with other settings fails its notebook instead of being trained; "
                        "takes neither --force nor --ray")
    p.add_argument("--debug", action="store_true",  # taken out of argv by lib.entrypoint: listed for --help
                   help="show the traceback of an unexpected error (also STUDY_DEBUG=1); by default one line")
    p.add_argument("--by-seed", action="store_true",
                   help="execute the training notebooks seed by seed (01-04 of seed 0, then of seed 1, ...) instead "
                        "of notebook by notebook, so a long study stopped half-way has every method for its first "
                        "seeds")
    add_ray_options(p)  # --ray, --ray-workers, --ray-cpus-per-run, --ray-retries (lib/study/fanout.py)
    return p


def default_results(profile: str, dataset: str, encoder: str, frozen: bool, tuned: bool = False,
                    resplit: bool = False) -> str:
    """results/<dataset>-<encoder>[-frozen][-resplit][-tuned] (a frozen study and a fine-tuned one never share a
    summary, nor a study at the tuned recipes, TUNED_RECIPES, and one at the Study 1 recipe, nor one whose seeds
    each have their own split, RESPLIT, and one on the data set's split)."""
    from pathlib import PurePath

    from lib.study.experiments import TUNED_SUFFIX

    safe_encoder = PurePath(encoder).name.replace("/", "_")
    folder = PROFILES[profile]["results"].format(dataset=PurePath(dataset).stem, encoder=safe_encoder)
    return folder + ("-frozen" if frozen else "") + ("-resplit" if resplit else "") + (TUNED_SUFFIX if tuned else "")


LOCAL_RESULTS = "results/local"  # ignored by git: where a study trains unless --publish or --results


def local_results(profile: str, dataset: str, encoder: str, frozen: bool, tuned: bool = False,
                  resplit: bool = False) -> str:
    """results/local/<study>: a fresh clone trains here and leaves every tracked file unchanged
    (the smoke profile keeps its own ignored results/smoke/<study>)."""
    published = default_results(profile, dataset, encoder, frozen, tuned, resplit)
    if not published.startswith("results/") or published.startswith("results/smoke/"):
        return published
    return f"{LOCAL_RESULTS}/{published[len('results/'):]}"


def finished_runs(results: Path) -> dict[str, float]:
    """Complete run folders under results/runs (metrics.json -> modification time)."""
    return {str(m.parent): m.stat().st_mtime for m in sorted((results / "runs").glob("**/seed*/metrics.json"))
            if not any(part.endswith(".partial") for part in m.parts)}


def project_relative(value: str) -> str:
    """A path inside the project as the notebooks and the reader see it: relative to the root."""
    p = Path(value)
    if p.is_absolute():
        try:
            return str(p.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            return value
    return value


def parse_overrides(items: list[str], selected: list[str]) -> dict[str, object]:
    """``NAME=VALUE`` strings -> {NAME: value}; a name that reaches no selected notebook is an error (the
    parameter of a loss of one's own reaches the notebooks that declare LOSSES: parameters_cell.accepts)."""
    out: dict[str, object] = {}
    declared = set().union(*(declared_parameters(nb) for nb in selected)) if selected else set()
    loss_options = None  # read from the loss registry (torch) only for a name no cell declares, and once
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--set takes NAME=VALUE, e.g. --set EPOCHS=3; got {item!r}")
        if name not in declared:
            if loss_options is None:
                loss_options = loss_option_parameters()
            if not any(accepts(nb, name, loss_options) for nb in selected):
                raise ValueError(f"--set {name}: no selected notebook has a parameter {name!r}; parameters are "
                                 f"{', '.join(sorted(declared))}, and a registered loss's parameter without a "
                                 "config field (upper-cased) in a notebook with LOSSES")
        try:
            out[name] = json.loads(text)
        except ValueError:
            # the notebooks' own spelling (True, False, None): as a string "False" would read as true
            out[name] = PYTHON_LITERALS.get(text.strip(), text)
    return out


PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def is_frozen_study(items: list[str], freeze_encoder: bool) -> bool:
    """The one answer to "is this a frozen-encoder study?": ``--set FREEZE_ENCODER=...`` if given, else
    ``--freeze-encoder``. It decides the default notebooks, the profile's fine-tuned-only parameters
    and the results folder (``-frozen``), on the sequential and the Ray path alike."""
    return bool(parse_overrides(items, list(NOTEBOOKS)).get("FREEZE_ENCODER", freeze_encoder))


def tuned_recipes_problem(profile: str, dataset: str, encoder: str, seeds: list[int], results: Path,
                          selected: list[str], overrides: dict, columns: dict, frozen: bool) -> str | None:
    """TUNED_RECIPES, checked before anything trains (lib.study.tuned_recipes): the results folder holds no
    runs of another recipe source, and every planned run has its method's tuned recipe, tuned under the
    notebook's settings. Prints where each recipe comes from; returns the problem, or None."""
    from lib.study.fanout import planned_runs
    from lib.study.tuned_recipes import TunedRecipeError, check_results_folder, describe
    from lib.training.config import ConfigError

    value = overrides.get("TUNED_RECIPES")
    try:
        check_results_folder(results, value)
        if value is not None:
            runs = planned_runs(profile, dataset, encoder, seeds, results, selected, overrides, columns, frozen=frozen)
            print(describe([r.config for r in runs if r.group is None], value), flush=True)
    except (TunedRecipeError, ConfigError) as e:
        return str(e)
    return None


def listed_study_folder(results: str) -> bool:
    """``results`` is the published folder of a study some protocol lists (results/<folder>, lib/study/studies.py):
    the one --results that --publish takes, for a study whose folder name the runner would not derive (e.g. a
    Study 1 recipe re-trained for Study 2)."""
    from lib.study.experiments import resolve_results_dir
    from lib.study.studies import every_study

    folders = {s.folder for s in every_study()}
    path = resolve_results_dir(results)
    return path.parent == (PROJECT_ROOT / "results").resolve() and path.name in folders


def design_folder_problem(results: Path, resplit: bool) -> str | None:
    """RESPLIT and the results folder's name agree (lib.study.experiments.check_design_folder), or the problem."""
    from lib.study.experiments import DesignFolderError, check_design_folder

    try:
        check_design_folder(results, resplit)
    except DesignFolderError as e:
        return str(e)
    return None


def ensure_kernel() -> None:
    """Register the project's kernel in this environment if it is missing (notebooks name it)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if KERNEL not in KernelSpecManager().find_kernel_specs():
        from ipykernel.kernelspec import install

        install(prefix=sys.prefix, kernel_name=KERNEL, display_name="Python (emotion-study)")


def jobs(seeds: list[int], selected: list[str], by_seed: bool = False):
    """(notebook, seed) executions in order: by notebook (01 for every seed, then 02, ...) or, with
    ``by_seed``, every training notebook of one seed before the next seed, so that the methods of a
    paired comparison finish together when a long study is stopped half-way."""
    training = [nb for nb in selected if nb in TRAINING_NOTEBOOKS]
    for nb in selected:
        if nb == "00_data_exploration":
            yield nb, None
        elif nb in TRAINING_NOTEBOOKS:
            if not by_seed:
                yield from ((nb, seed) for seed in seeds)
            elif nb == training[0]:
                yield from ((t, seed) for seed in seeds for t in training)
        elif nb == "05_tsne_analysis":
            yield nb, seeds[0]
        else:
            yield nb, None


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def executed_parameters(path: Path) -> dict | None:
    """The papermill parameters an executed notebook ran with (None if unreadable)."""
    try:
        return json.loads(path.read_text())["metadata"]["papermill"]["parameters"]
    except (OSError, ValueError, KeyError):
        return None


def absolute_if_path(value: str) -> str:
    """Notebooks run in notebooks/: make a relative file or folder argument absolute first."""
    p = Path(value).expanduser()
    return str(p.resolve()) if not p.is_absolute() and p.exists() else value


def check_inputs(dataset: str, encoder: str, csv_options: dict | None = None) -> str | None:
    """Fail once, before any notebook, on a data set or encoder that cannot be used."""
    from lib.data.datasets import DataFileError, DataInputError, load_dataset
    from lib.model.encoders import EncoderError, resolve

    try:
        load_dataset(dataset, **(csv_options or {}))
        resolve(encoder)
    except (DataFileError, DataInputError, EncoderError) as e:
        return str(e)
    return None


def refused_results_folder(results: Path) -> str | None:
    """Why ``results`` is not ours to write into (lib.study.results_folder), or None."""
    from lib.ownership import NotOursError
    from lib.study.results_folder import claim_results_folder

    try:
        claim_results_folder(results)
    except NotOursError as e:
        return str(e)
    return None


def use_this_lib_in_kernels() -> None:
    """Kernels start in notebooks/ and import ``lib`` by the environment's editable install, which names
    one checkout: a worktree sharing that .venv would run another checkout's code. PYTHONPATH, which
    kernels inherit, puts this process's own project first."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(PROJECT_ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *rest])


def quiet_papermill_about(names: set[str]) -> None:
    """papermill warns "Passed unknown parameter: NAME" for a value its notebook's cell does not declare:
    for the parameters of a loss of one's own that is by design (the notebook reads them from its
    globals), so the run log leaves those lines out. Any other unknown name is still reported."""
    import logging

    if names:
        unknown = {f"Passed unknown parameter: {name}" for name in names}
        logging.getLogger("papermill").addFilter(lambda record: record.getMessage() not in unknown)


def execute(nb: str, seed, params: dict, out_dir: Path, force: bool, report: Report) -> str:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    name = nb if seed is None else f"{nb}-seed{seed}"
    final = out_dir / f"{name}.ipynb"
    summarises = nb in ("05_tsne_analysis", "06_summary")  # they read whatever exists: always redone
    if final.exists() and not force and not summarises:
        from lib.study.executed import strip_root

        same = {k: v for k, v in json.loads(strip_root(json.dumps(params))).items() if k != "FORCE"}
        ran = json.loads(strip_root(json.dumps(executed_parameters(final) or {})))
        if {k: v for k, v in ran.items() if k != "FORCE"} == same:
            report.skipped.append(name)
            return "skipped (finished earlier)"
        print(f"    {name} ran earlier with other parameters: running it again", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    running = out_dir / f".{name}.running.ipynb"
    failed = out_dir / f"{name}.failed.ipynb"
    use_this_lib_in_kernels()
    try:
        pm.execute_notebook(str(PROJECT_ROOT / "notebooks" / f"{nb}.ipynb"), str(running), parameters=params,
                            kernel_name=KERNEL, cwd=str(PROJECT_ROOT / "notebooks"), progress_bar=False,
                            extra_arguments=KERNEL_ARGUMENTS)
    except PapermillExecutionError as e:
        running.replace(failed)
        where = f"cell {e.exec_count}" if e.exec_count else f"cell index {e.cell_index}"
        report.failed.append({"notebook": name, "cell": where, "error": f"{e.ename}: {e.evalue}"[:300],
                              "executed_copy": str(failed)})
        return f"FAILED at {where}: {e.ename}: {str(e.evalue)[:200]}"
    except Exception as e:  # the kernel died (out of memory, killed): record it and go on with the rest
        if running.exists():
            running.replace(failed)
        report.failed.append({"notebook": name, "cell": "kernel", "error": f"{type(e).__name__}: {e}"[:300],
                              "executed_copy": str(failed)})
        return f"FAILED: {type(e).__name__}: {str(e)[:200]}"
    except BaseException:
        running.unlink(missing_ok=True)  # interrupted: nothing that looks finished stays
        raise
    failed.unlink(missing_ok=True)
    from lib.study.plots import palette_notebook_images  # matplotlib: loaded only once a notebook has run

    palette_notebook_images(running)  # the committed executed notebooks keep to the results budget
    from lib.study.executed import relativise
    from lib.training.results import git_state

    # no absolute path of this machine in what a reader sees; the commit that rendered it, for a reader who
    # traces a figure or sentence to its code
    relativise(running, final_name=final.name, rendered_with=git_state())
    running.replace(final)
    report.done.append(name)
    return "done"


def main(argv=None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if "--profile=tune" in words or any(w == "--profile" and v == "tune" for w, v in zip(words, words[1:])):
        from lib.study.tuning import main as tune  # --profile tune: the hyperparameter search

        return tune(words)
    args = build_parser().parse_args(argv)
    if args.render_only and (args.force or args.ray is not None):
        print("error: --render-only trains nothing; it takes neither --force nor --ray", file=sys.stderr)
        return 2
    problem = options_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    prof = PROFILES[args.profile]
    dataset = absolute_if_path(args.dataset or prof["dataset"])
    encoder = absolute_if_path(args.encoder or prof["encoder"])
    seeds = args.seeds or prof["seeds"]
    try:
        frozen = is_frozen_study(args.overrides, args.freeze_encoder)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    default_notebooks = ",".join(profile_notebooks(args.profile, frozen))
    selected = list(dict.fromkeys(n.strip() for n in (args.notebooks or default_notebooks).split(",") if n.strip()))
    unknown = [n for n in selected if n not in NOTEBOOKS]
    if unknown:
        print(f"error: unknown notebook(s) {', '.join(unknown)}; choose from {', '.join(NOTEBOOKS)}", file=sys.stderr)
        return 2
    try:
        overrides = parse_overrides(args.overrides, selected)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # torch, sklearn, ...: seconds; a mistyped option above is answered without them
    from lib.study.experiments import RENDER_ONLY_ENV, is_published
    from lib.study.fanout import ray_sweep

    if args.freeze_encoder:
        overrides = {**FROZEN_TRAINING, **overrides}
    columns = {k: v for k, v in (("TEXT_COLUMN", args.text_column), ("LABEL_COLUMN", args.label_column)) if v}
    problem = check_inputs(dataset, encoder, {k.lower(): v for k, v in columns.items()})
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.publish and (args.profile == "smoke" or (args.results and not listed_study_folder(args.results))):
        print("error: --publish writes into the published results/<dataset>-<encoder>, or with --results into "
              "results/<a study a protocol lists> (lib/study/studies.py); it takes no other --results nor the "
              "smoke profile (whose numbers mean nothing)", file=sys.stderr)
        return 2
    tuned = overrides.get("TUNED_RECIPES") is not None  # Study 2: a folder of its own (default_results)
    resplit = bool(overrides.get("RESPLIT"))  # every seed with its own split: likewise
    study_args = (args.profile, dataset, encoder, frozen, tuned, resplit)
    results = args.results or (default_results if args.publish else local_results)(*study_args)
    from lib.study.experiments import resolve_results_dir

    results_path = resolve_results_dir(results)
    problem = design_folder_problem(results_path, resplit)  # before the folder is made
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    publishing = is_published(results_path)
    before = finished_runs(results_path)
    if os.path.lexists(results_path) and not results_path.is_dir():
        kind = "a link to nothing" if results_path.is_symlink() else "a file"
        print(f"error: --results {results_path} is {kind}, not a folder; nothing was changed. Give --results a new "
              "or empty folder, or one this program wrote.", file=sys.stderr)
        return 2
    try:
        results_path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a parent that is a file
        print(f"error: cannot create the results folder {results_path}: {e.strerror}", file=sys.stderr)
        return 2
    if not os.access(results_path, os.W_OK):
        print(f"error: results folder {results_path} cannot be written", file=sys.stderr)
        return 2
    problem = refused_results_folder(results_path)  # never writes into (or replaces files of) a user's folder
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    problem = tuned_recipes_problem(args.profile, dataset, encoder, seeds, results_path, selected, overrides, columns,
                                    frozen)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if publishing:
        print(publish_line(results_path, before, "start"), flush=True)
    ensure_kernel()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.render_only:
        os.environ[RENDER_ONLY_ENV] = "1"  # the notebooks' kernels inherit it (lib.study.experiments.run_or_load)
    else:
        os.environ.pop(RENDER_ONLY_ENV, None)  # one left in the shell must not stop an ordinary run
    todo = list(jobs(seeds, selected, args.by_seed))
    print(f"profile {args.profile}: {project_relative(dataset)} with {project_relative(encoder)}, seeds "
          f"{','.join(map(str, seeds))}, {len(todo)} notebook executions -> {project_relative(str(results_path))}",
          flush=True)
    if overrides:
        print("parameters set: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()), flush=True)
    # --ray (lib/study/fanout.py): train every run on Ray first, so the notebooks only read; None without --ray.
    sweep = ray_sweep(args, args.profile, dataset, encoder, seeds, results_path, selected, overrides, columns,
                      frozen=frozen)
    if sweep is not None:
        if sweep.exit_code is not None:
            return sweep.exit_code
        todo = [job for job in todo if job not in sweep.blocked]  # a failed run: its notebooks are not executed
    report = Report(failed=list(sweep.failed) if sweep else [])
    t0 = time.perf_counter()
    out_dir = results_path / "notebooks"
    loss_options = loss_option_parameters() if set(overrides) - set().union(*map(declared_parameters, selected)) else set()
    quiet_papermill_about(loss_options & set(overrides))
    for i, (nb, seed) in enumerate(todo, 1):
        label = nb if seed is None else f"{nb} seed {seed}"
        print(f"[{i}/{len(todo)}] {label} ...", flush=True)
        t = time.perf_counter()
        params = notebook_parameters(args.profile, nb, dataset, encoder, seed, project_relative(str(results_path)),
                                     columns, frozen=frozen)
        params.update({k: v for k, v in overrides.items() if accepts(nb, k, loss_options)})
        if args.force and nb in TRAINING_NOTEBOOKS and sweep is None:
            params["FORCE"] = True  # retrain the runs too, not only re-execute the notebook
        status = execute(nb, seed, params, out_dir, args.force, report)
        print(f"[{i}/{len(todo)}] {label}: {status} in {_fmt(time.perf_counter() - t)} "
              f"(elapsed {_fmt(time.perf_counter() - t0)}, {len(todo) - i} left)", flush=True)
    print(f"\nfinished in {_fmt(time.perf_counter() - t0)}: {len(report.done)} done, {len(report.skipped)} skipped, "
          f"{len(report.failed)} failed")
    for f in report.failed:
        print(f"  FAILED {f['notebook']} at {f['cell']}: {f['error']}\n         see "
              f"{project_relative(f['executed_copy'])}")
    after = finished_runs(results_path)
    trained = sorted(k for k, t in after.items() if before.get(k) != t)
    print(f"runs: {len(trained)} trained by this command, {len(after) - len(trained)} reused from earlier")
    summary = results_path / "summary.md"
    if summary.exists():
        print(f"summary: {project_relative(str(summary))}")
        published = Path(args.compare_with) if args.compare_with else PROJECT_ROOT / default_results(
            "default" if args.profile == "smoke" else args.profile, dataset, encoder, frozen, tuned, resplit)
        compare_with_published(results_path, resolve_results_dir(published), args.profile)
    if publishing:
        print(publish_line(results_path, before, "end", trained), flush=True)
    return 1 if report.failed else 0


def publish_line(results: Path, before: dict, when: str, trained: list | None = None) -> str:
    """The first and last line of a command that writes into the published tree."""
    where = project_relative(str(results))
    if when == "start":
        return (f"PUBLISHED RESULTS: writing into {where}, which git tracks. {len(before)} finished runs there are "
                "reused, not re-trained: notebooks, figures and the summary are re-rendered from the published "
                "numbers (missing runs are trained; --force retrains all).")
    return (f"PUBLISHED RESULTS: {where} re-rendered: {len(before) - len(set(trained or []) & set(before))} "
            f"published runs reused, {len(trained or [])} trained; `git status {where}` shows what changed.")


def compare_with_published(results: Path, published: Path, profile: str) -> None:
    """Print and write (comparison.csv/.json) this study's numbers beside the published ones."""
    from lib.study.compare import compare, format_comparison, format_settings_differences, settings_differences, \
        write_comparison

    if published.resolve() == results.resolve():
        return
    if not (published / "summary.csv").exists():
        print(f"no published results at {project_relative(str(published))} to compare with")
        return
    note = ("smoke profile: subsampled data and 1 epoch, so its numbers are not expected to match"
            if profile == "smoke" else "")
    table = compare(results, published)
    settings = settings_differences(results, published)
    paths = write_comparison(table, results, results, published, note, settings)
    print(f"\nyours ({project_relative(str(results))}) against the published "
          f"{project_relative(str(published))}: test macro-F1 of each method's primary rule, 95% interval over "
          f"the published seeds, and the range a mean over your seeds lands in 95% of the time when only the "
          f"seeds differ" + (f"\n({note})" if note else ""))
    if settings:
        print(f"the two studies were trained differently (yours against published): "
              f"{format_settings_differences(settings)}; a gap may come from that, not from chance")
    print(format_comparison(table))
    known = table.dropna(subset=["within_expected_range"])
    print(f"{int(known['within_expected_range'].sum())} of {len(known)} methods within the range expected "
          f"from seed variation; written {project_relative(str(paths['csv']))} and "
          f"{project_relative(str(paths['json']))}")
