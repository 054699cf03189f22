"""The published studies of PROTOCOL.md: the one list that the report, the confirmatory-runs script
and the tests read.

Each entry says where the study lives (``results/<folder>``), its column title in the main table,
the seeds PROTOCOL.md §3 fixed for it, and the ``run_all.sh`` arguments that trained it. The tuple
is in the protocol's training order (amendment 3); ``COLUMN_ORDER`` is the main table's reading
order. Standard library only: ``scripts/confirmatory_runs.sh`` reads it with any Python
(``python -m lib.study.studies``), before the project's environment matters.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Study:
    folder: str           # results/<folder>
    title: str            # column title in the main table
    seeds: tuple[int, ...]  # PROTOCOL.md §3, fixed before its runs
    run_all_args: str     # the run_all.sh arguments that trained it (shell words)


_PROFILE_5 = "--profile paper-secondary"
STUDIES: tuple[Study, ...] = (
    Study("ko6-me5-small-frozen", "ko6, me5-small frozen", tuple(range(5)),
          f"{_PROFILE_5} --freeze-encoder --by-seed --dataset ko6 --encoder me5-small"),
    Study("ed32-minilm-frozen", "ed32, MiniLM frozen", tuple(range(5)),
          f"{_PROFILE_5} --freeze-encoder --by-seed --dataset ed32"),
    Study("goemo27-minilm-frozen", "goemo27, MiniLM frozen", tuple(range(5)),
          f"{_PROFILE_5} --freeze-encoder --by-seed --dataset goemo27"),
    Study("ko6-me5-small", "ko6, me5-small fine-tuned", tuple(range(10)), "--profile paper"),
    Study("ed6-minilm", "ed6, MiniLM fine-tuned", tuple(range(5)), f"{_PROFILE_5} --by-seed"),
    Study("ed32-minilm", "ed32, MiniLM fine-tuned", tuple(range(5)),
          f"{_PROFILE_5} --by-seed --dataset ed32 --notebooks 00_data_exploration,01_baseline_ce,04_combined,"
          "05_tsne_analysis,06_summary --set 'LOSSES=[\"combined\"]'"),
)
# The main table's columns, left to right: each data set fine-tuned before frozen.
COLUMN_ORDER = ("ed6-minilm", "ko6-me5-small", "ko6-me5-small-frozen", "ed32-minilm", "ed32-minilm-frozen",
                "goemo27-minilm-frozen")


def study(folder: str) -> Study:
    for s in STUDIES:
        if s.folder == folder:
            return s
    raise KeyError(f"{folder} is not a published study (one of: {', '.join(s.folder for s in STUDIES)})")


def report_columns() -> tuple[tuple[str, str], ...]:
    """(folder, title) in the main table's order."""
    return tuple((study(f).folder, study(f).title) for f in COLUMN_ORDER)


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.study.studies``: one line per study, ``folder|run_all.sh arguments``, in the
    protocol's order (what scripts/confirmatory_runs.sh trains and publishes)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print("usage: python -m lib.study.studies  (no arguments)", file=sys.stderr)
        return 2
    for s in STUDIES:
        shlex.split(s.run_all_args)  # a quoting slip fails here, not half-way through a shell loop
        print(f"{s.folder}|{s.run_all_args}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
