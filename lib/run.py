"""Command line: run one experiment.

    python -m lib.run --dataset ed6 --encoder minilm --loss combined --epochs 1 --out results/runs/demo
    python -m lib.run --reproduce results/ed6-minilm/runs/ce1.0/seed0 --out /tmp/again
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from lib.entrypoint import DEBUG_ENV, run_main
from lib.training.config import ConfigError, ExperimentConfig, add_config_arguments, config_from_args
from lib.paths import results_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.run",
        description="Fine-tune an encoder with one loss (or a weighted sum of losses) on one data set and seed; "
                    "select the epoch on validation macro-F1, score the test split once, write a run folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter.__mro__[1],
    )
    add_config_arguments(parser)
    parser.add_argument("--out", default=None,
                        help="run folder to write (default: results/runs/<dataset>-<encoder>-<loss>-seed<seed>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    parser.add_argument("--save-model", action="store_true",
                        help="also write model/ into the run folder: the best epoch's encoder (Hugging Face "
                             "format), heads, centroids and class names, for python -m lib.predict RUN_DIR ...")
    parser.add_argument("--resume", action="store_true",
                        help="keep the run's state after every epoch in OUT.resume/ and, when the same command runs "
                             "again after a kill, go on from the last epoch (the same numbers as a run never stopped); "
                             "deleted once the run is written")
    parser.add_argument("--validation-only", action="store_true",
                        help="select the epoch on validation and score nothing held out: the test split is dropped "
                             "unread (and --ood refused), as in a tuning trial, whose recorded commands carry this "
                             "flag; with --reproduce it follows the run being checked")
    parser.add_argument("--reproduce", metavar="RUN_DIR", default=None,
                        help="re-run the config.json of a finished run folder (other config options are ignored) "
                             "into --out, then check that metrics, history, predictions and embeddings are identical "
                             "(exit status 1 if not)")
    parser.add_argument("--rtol", type=float, default=0.0,
                        help="with --reproduce: let float values differ by this relative amount (labels, counts "
                             "and strings must still match); 0 demands bit-identical files. Another CPU may "
                             "round differently: 1e-4 accepts that")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an unexpected error (also {DEBUG_ENV}=1); by default one line")
    return parser


def default_out(cfg) -> Path:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_.=" else "_" for c in s)  # noqa: E731
    what = cfg.loss if cfg.method == "finetune" else cfg.method
    enc = Path(cfg.encoder).name if cfg.encoder else "default"
    return results_dir() / "runs" / f"{safe(Path(cfg.dataset).stem)}-{safe(enc)}-{safe(what)}-seed{cfg.seed}"


def _report_reproduction(original: Path, out: Path, rtol: float) -> int:
    from lib.study.reproduce import differences

    found = differences(original, out)
    what = ("metrics.json, history.csv, predictions.csv (and test embeddings and ood/<set>/ files where the "
            "original has them)")
    if not found:
        print(f"reproduced exactly: {what} equal {original} (wall-clock timings aside)")
        return 0
    floats = [d.relative for d in found if d.relative is not None]
    largest = f"largest relative float difference {max(floats):.1e}" if floats else "no float differences"
    if len(floats) == len(found) and max(floats) <= rtol:
        print(f"reproduced within --rtol {rtol:g}: {len(found)} float value(s) differ ({largest}); every label, "
              f"count and string of {what} equals {original}")
        return 0
    print(f"NOT reproduced: {len(found)} difference(s) from {original} ({largest})", file=sys.stderr)
    for d in found[:20]:
        print(f"  {d.text}", file=sys.stderr)
    if len(floats) == len(found):
        print("  only float values differ: another CPU may round differently; see --rtol", file=sys.stderr)
    return 1


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ[DEBUG_ENV] = "1"
    try:
        if args.rtol < 0 or (args.rtol and not args.reproduce):
            raise ConfigError(f"--rtol {args.rtol:g}: must be >= 0, and used with --reproduce")
        if args.reproduce:
            original = Path(args.reproduce)
            if not (original / "config.json").is_file() or not (original / "metrics.json").is_file():
                raise ConfigError(f"--reproduce {original}: not a finished run folder (needs config.json and "
                                  "metrics.json)")
            if not args.out:
                raise ConfigError("--reproduce needs --out, a new folder for the re-run")
            if Path(args.out).resolve() == original.resolve():
                raise ConfigError("--reproduce: --out must differ from the run being checked (it would be replaced)")
            cfg = ExperimentConfig.from_dict(json.loads((original / "config.json").read_text()))
            # a tuning trial's seed scored no test split: its re-run does not either
            args.validation_only = "test_macro_f1" not in json.loads((original / "metrics.json").read_text())
        else:
            cfg = config_from_args(args)
        cfg.validate()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lib.data.datasets import DataFileError, DataInputError
    from lib.model.encoders import EncoderError
    from lib.training.out_of_domain import summary_lines
    from lib.training.train import run_experiment

    out = Path(args.out) if args.out else default_out(cfg)
    # SIGTERM becomes an exception, so the run folder is marked failed instead of left "running".
    signal.signal(signal.SIGTERM, _terminate)
    try:
        metrics = run_experiment(cfg, out, quiet=args.quiet, save_model=args.save_model, resume=args.resume,
                                 validation_only=args.validation_only)
    except (ConfigError, DataFileError, DataInputError, EncoderError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    how = f"rule {metrics['primary_rule']}, best epoch {metrics['best_epoch']}" if "best_epoch" in metrics \
        else f"{metrics['method']}, C={metrics['chosen_C']}"
    if args.validation_only:
        print(f"validation macro-F1 {metrics['valid_macro_f1']:.4f}  ({how}; test split not read)  -> {out}")
    else:
        print(f"test macro-F1 {metrics['test_macro_f1']:.4f}  accuracy {metrics['test_accuracy']:.4f}  ({how})  -> {out}")
    for line in summary_lines(metrics, out):  # out-of-domain sets (--ood), scored once like the test split
        print(line)
    if args.reproduce:
        return _report_reproduction(Path(args.reproduce), out, args.rtol)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
