"""The published studies of each protocol: the one list that the report, the confirmatory-runs script
and the tests read.

Each entry says where the study lives (``results/<folder>``), its column title in the main table,
the seeds its protocol fixed for it, the ``run_all.sh`` arguments that trained it and, where the
protocol has the compared methods of a seed trained back to back, the arguments run seed by seed
first. ``STUDIES`` is PROTOCOL.md's (Study 1), in its training order (amendment 3); ``STUDIES_2`` is
Study 2's, written into this file with PROTOCOL-2.md, before any of its runs. ``COLUMN_ORDER`` is
the main table's reading order. Standard library only: ``scripts/confirmatory_runs.sh`` reads it
with any Python (``python -m lib.study.studies [--protocol 2]``), before the project's environment
matters.
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
    # run_all.sh arguments run once per seed (with --seeds k) before run_all_args: the compared methods
    # of a seed trained back to back, so that a study stopped half-way stays paired (PROTOCOL.md 2(b)).
    # Neither names --seeds: the script adds ``seeds``, the one place a study's seeds are written.
    paired_args: str = ""


_PROFILE_5 = "--profile paper-secondary"
STUDIES: tuple[Study, ...] = (
    Study("ko6-me5-small-frozen", "ko6, me5-small frozen", tuple(range(5)),
          f"{_PROFILE_5} --freeze-encoder --by-seed --dataset ko6 --encoder me5-small"),
    Study("ed32-minilm-frozen", "ed32, MiniLM frozen", tuple(range(5)),
          f"{_PROFILE_5} --freeze-encoder --by-seed --dataset ed32"),
    Study("goemo27-minilm-frozen", "goemo27, MiniLM frozen", tuple(range(5)),
          f"{_PROFILE_5} --freeze-encoder --by-seed --dataset goemo27"),
    Study("ko6-me5-small", "ko6, me5-small fine-tuned", tuple(range(10)), "--profile paper",
          "--profile paper --notebooks 00_data_exploration,01_baseline_ce,04_combined"),
    Study("ed6-minilm", "ed6, MiniLM fine-tuned", tuple(range(5)), f"{_PROFILE_5} --by-seed"),
    Study("ed32-minilm", "ed32, MiniLM fine-tuned", tuple(range(5)),
          f"{_PROFILE_5} --by-seed --dataset ed32 --notebooks 00_data_exploration,01_baseline_ce,04_combined,"
          "05_tsne_analysis,06_summary --set 'LOSSES=[\"combined\"]'"),
)
# Study 2 (PROTOCOL-2.md): filled in with its protocol, in one commit, before any of its runs.
STUDIES_2: tuple[Study, ...] = ()
PROTOCOLS = {1: ("PROTOCOL.md", STUDIES), 2: ("PROTOCOL-2.md", STUDIES_2)}
# The main table's columns, left to right: each data set fine-tuned before frozen.
COLUMN_ORDER = ("ed6-minilm", "ko6-me5-small", "ko6-me5-small-frozen", "ed32-minilm", "ed32-minilm-frozen",
                "goemo27-minilm-frozen")


def every_study() -> list[Study]:
    """The studies of every protocol, in the protocols' order."""
    return [s for _, listed in PROTOCOLS.values() for s in listed]


def study(folder: str) -> Study:
    """The study of any protocol whose folder is ``folder``."""
    every = every_study()
    for s in every:
        if s.folder == folder:
            return s
    raise KeyError(f"{folder} is not a published study (one of: {', '.join(s.folder for s in every)})")


def report_columns() -> tuple[tuple[str, str], ...]:
    """(folder, title) in the main table's order."""
    return tuple((study(f).folder, study(f).title) for f in COLUMN_ORDER)


USAGE = "usage: python -m lib.study.studies [--protocol N]  (N: 1, PROTOCOL.md, the default; 2, PROTOCOL-2.md)"


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.study.studies [--protocol N]``: one line per study of protocol N,
    ``folder|run_all.sh arguments|seed-by-seed arguments|seeds`` (seeds comma-separated), in the
    protocol's order (what scripts/confirmatory_runs.sh trains and publishes)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and (len(argv) != 2 or argv[0] != "--protocol" or not argv[1].isdigit() or int(argv[1]) not in PROTOCOLS):
        print(USAGE, file=sys.stderr)
        return 2
    number = int(argv[1]) if argv else 1
    name, studies = PROTOCOLS[number]
    earlier = {s.folder: n for n, (_, listed) in PROTOCOLS.items() if n != number for s in listed}
    taken = [s.folder for s in studies if s.folder in earlier]
    if taken:  # publishing would replace the other protocol's published study (confirmatory_runs.sh publish)
        print(f"error: {name} lists {', '.join(taken)}, a study of {PROTOCOLS[earlier[taken[0]]][0]}: each protocol's "
              "studies need folders of their own", file=sys.stderr)
        return 2
    if not studies:
        print(f"error: {name} names no study yet (its studies are written into lib/study/studies.py with it)",
              file=sys.stderr)
        return 2
    folders = [s.folder for s in studies]
    twice = sorted({f for f in folders if folders.count(f) > 1})
    if twice:  # the script would train the first one's arguments twice
        print(f"error: {name} lists {', '.join(twice)} more than once", file=sys.stderr)
        return 2
    for s in studies:
        problem = _listing_problem(s)
        if problem:
            print(f"error: {name}, study {s.folder!r}: {problem}", file=sys.stderr)
            return 2
    for s in studies:
        print(f"{s.folder}|{s.run_all_args}|{s.paired_args}|{','.join(map(str, s.seeds))}")
    return 0


def _listing_problem(s: Study) -> str | None:
    """What would make the script train other seeds than the study's, or misread its line (None: nothing)."""
    if not s.seeds or len(set(s.seeds)) != len(s.seeds) or any(not isinstance(k, int) or k < 0 for k in s.seeds):
        return f"seeds {s.seeds!r}: distinct non-negative integers, at least one"
    for field in (s.folder, s.title, s.run_all_args, s.paired_args):
        if "|" in field or "\n" in field or "\r" in field:
            return f"{field!r}: '|' separates the printed fields and a line break the studies; neither can stand in one"
    for words in (s.run_all_args, s.paired_args):
        try:
            split = shlex.split(words)  # a quoting slip fails here, not half-way through a shell loop
        except ValueError as e:
            return f"run_all.sh arguments {words!r}: {e}"
        if "--seeds" in split or any(w.startswith("--seeds=") for w in split):
            return "its run_all.sh arguments name --seeds: the script adds the study's seeds (one place for them)"
    return None


if __name__ == "__main__":
    sys.exit(main())
