"""The ``--ray`` options of run_all.sh (lib.study.fanout runs the sweep they ask for).

Standard library only: ``./run_all.sh --help`` prints them before any environment exists.
"""
from __future__ import annotations

import argparse

LOCAL = "local"  # --ray without an address: start a Ray on this machine for the sweep


def add_options(parser: argparse.ArgumentParser) -> None:
    """The runner's --ray options."""
    g = parser.add_argument_group("on a Ray cluster (see docs/cluster.md)")
    g.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                   help="train the runs as Ray tasks first, on the cluster at ADDRESS (host:port, or 'auto' for the "
                        "cluster this machine belongs to) or, without ADDRESS, on a Ray started here; the notebooks "
                        "then only read and plot")
    g.add_argument("--ray-workers", type=positive_int, metavar="N",
                   help="runs at once on the local Ray (default: the GPUs here, else half the cores); a run on "
                        "a GPU holds a whole one, so no more runs at once than GPUs")
    g.add_argument("--ray-cpus-per-run", type=positive_int, metavar="N",
                   help="CPUs (and torch threads) per run (default: 1 beside a GPU; without GPUs the cores here "
                        "divided by --ray-workers, on a cluster at ADDRESS the smallest node's CPUs, at most 4)")
    g.add_argument("--ray-retries", type=nonnegative_int, default=3, metavar="N",
                   help="times a run is restarted when its worker dies (default: 3)")


def options_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the --ray options as given, before anything is loaded or started; None if nothing."""
    if args.ray is None:
        given = [o for o, v in (("--ray-workers", args.ray_workers), ("--ray-cpus-per-run", args.ray_cpus_per_run))
                 if v is not None]
        return f"{' and '.join(given)} only apply with --ray" if given else None
    if args.ray != LOCAL and args.ray_workers is not None:
        return ("--ray-workers sets the runs at once on a local Ray; on a cluster at an address its resources "
                "decide (use --ray-cpus-per-run)")
    return None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"takes a non-negative integer, got {text!r}")
    return value
