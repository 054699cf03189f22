"""Command line: classify new sentences with a model saved by ``python -m lib.run --save-model``.

    python -m lib.predict results/runs/mine "I passed the exam!" "The bus left without me."
    python -m lib.predict results/runs/mine --csv new.csv --text-column text --out labelled.csv
    python -m lib.predict results/runs/mine --csv new.csv --out labelled.csv --rule knn --embeddings emb.npy

The label comes from the run's a-priori rule (PROTOCOL.md: the head for cross-entropy alone, the
nearest class centroid otherwise) unless ``--rule`` names another rule the run has, or ``all``: one
label column per rule (predicted_label_<rule>, predicted_index_<rule>).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lib.entrypoint import DEBUG_ENV, run_main
from lib.evaluation.evaluate import RULES
from lib.training.saved_model import ALL_RULES, PROB_PREFIX, check_rule, label_columns, load_model, read_info


class PredictInputError(ValueError):
    """A sentence, CSV file or output path cannot be used; the message names it."""
    exit_status = 2  # bad input: see lib.entrypoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib.predict",
        description="Label new sentences with a model saved by python -m lib.run --save-model (or a notebook run "
                    "with SAVE_MODEL = True). Output: CSV with predicted_label, predicted_index and, where the run "
                    "trained a classifier head, prob_<class> columns.")
    parser.add_argument("model", metavar="MODEL_DIR", help="a run folder trained with --save-model, or its model/")
    parser.add_argument("sentences", nargs="*", metavar="SENTENCE", help="sentences to label (or --csv)")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="a UTF-8 CSV (.tsv: tab-separated) with a header line; every row is labelled")
    parser.add_argument("--text-column", default="text", help="the text column of --csv (default: text)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="write the labelled rows here (a new file; .tsv: tab-separated); default: stdout. "
                             "With --csv every input column is kept")
    parser.add_argument("--rule", default=None,
                        help=f"prediction rule: {', '.join(RULES)} or a loss's own rule (default: the run's a-priori "
                             f"rule); the model must have it. {ALL_RULES}: every rule the model has, in columns "
                             "predicted_label_<rule> and predicted_index_<rule>")
    parser.add_argument("--embeddings", metavar="FILE.npy", default=None,
                        help="also write the embeddings (float32, one row per sentence, in input order) to this "
                             "new .npy file")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, ... (default: auto)")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an unexpected error (also {DEBUG_ENV}=1); by default one line")
    return parser


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def read_texts(path: Path, column: str) -> pd.DataFrame:
    """Every cell as a string; refuses a missing, empty, undecodable or unparsable file, a missing
    column and empty texts, each in one line naming the file."""
    if not path.is_file():
        raise PredictInputError(f"--csv {path}: no such file")
    try:
        frame = pd.read_csv(path, sep=_separator(path), dtype=str, keep_default_na=False,
                            encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is no part of a column name
    except UnicodeDecodeError as e:
        raise PredictInputError(f"--csv {path} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as "
                                "UTF-8") from None
    except pd.errors.EmptyDataError:
        raise PredictInputError(f"--csv {path} is empty: it needs a header line naming the {column!r} column, "
                                "then one row per sentence") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as e:
        raise PredictInputError(f"--csv {path} is not a readable CSV file ({' '.join(str(e).split())})") from None
    except OSError as e:
        raise PredictInputError(f"--csv {path}: cannot read it ({e.strerror or e})") from None
    frame = frame.fillna("")  # short rows leave NaN even with keep_default_na=False
    if column not in frame.columns:
        raise PredictInputError(f"--csv {path} has no column {column!r} (set --text-column); its columns are "
                                f"{list(frame.columns)}")
    if frame.empty:
        raise PredictInputError(f"--csv {path} has a header line but no rows to label")
    empty = np.flatnonzero(frame[column].str.strip().eq("").to_numpy())
    if len(empty):
        lines = ", ".join(str(i + 2) for i in empty[:5])  # +2: the header line, 1-based lines
        raise PredictInputError(f"--csv {path}: {len(empty)} row(s) have an empty {column!r} (lines {lines}"
                                f"{', ...' if len(empty) > 5 else ''}); remove them")
    return frame


def check_new(path: Path, option: str) -> None:
    """An output is written only where nothing is: a file this program did not create is never replaced."""
    if os.path.lexists(path):
        raise PredictInputError(f"{option} {path} exists already; it is not replaced: choose a new file name")
    if not path.parent.is_dir():
        raise PredictInputError(f"{option} {path}: the folder {path.parent} does not exist")


def write_new(path: Path, option: str, write) -> None:
    """``write(file object)`` into a temp file beside ``path``, then link it into place; a file that
    appeared at ``path`` meanwhile is left alone (the link fails) and the error names it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        try:
            os.link(tmp, path)  # fails where something exists: never replaces it
        except FileExistsError:
            raise PredictInputError(f"{option} {path} appeared while predicting; it is not replaced") from None
        except OSError:  # a file system without hard links: checked again, then renamed
            check_new(path, option)
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _table(frame: pd.DataFrame, sep: str) -> bytes:
    return frame.to_csv(index=False, sep=sep, lineterminator="\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # sentences may follow options: --rule head "a sentence"
    if args.debug:
        os.environ[DEBUG_ENV] = "1"
    if bool(args.sentences) == bool(args.csv):
        raise PredictInputError("give sentences on the command line or --csv FILE (one of the two)")
    folder, info = read_info(args.model)  # cheap checks first: the encoder loads in seconds, not instantly
    rule = check_rule(info, args.rule, folder)
    out = Path(args.out) if args.out else None
    emb_path = Path(args.embeddings) if args.embeddings else None
    for path, option in ((out, "--out"), (emb_path, "--embeddings")):
        if path is not None:
            check_new(path, option)
    if out is not None and emb_path is not None and out.absolute() == emb_path.absolute():
        raise PredictInputError("--out and --embeddings name the same file")
    if args.csv:
        source = read_texts(Path(args.csv), args.text_column)
        texts = source[args.text_column].tolist()
        added = label_columns(rule, info["rules"]) + (
            [f"{PROB_PREFIX}{name}" for name in info["class_names"]] if "head" in info["rules"] else [])
        clash = sorted(set(added) & set(source.columns))
        if clash:  # before the model loads
            raise PredictInputError(f"--csv {args.csv} already has column(s) {', '.join(clash)}; rename them")
    else:
        empty = [i + 1 for i, t in enumerate(args.sentences) if not t.strip()]
        if empty:
            raise PredictInputError(f"sentence {empty[0]} is empty")
        source, texts = None, list(args.sentences)

    model = load_model(folder, device=args.device)
    frame, emb = model.predict(texts, rule=rule, with_embeddings=True)
    if source is not None:  # every input column, then the predictions
        frame = pd.concat([source.reset_index(drop=True), frame.drop(columns="text")], axis=1)
    if emb_path is not None:
        write_new(emb_path, "--embeddings", lambda f: np.save(f, emb, allow_pickle=False))
    by = f"rules {', '.join(info['rules'])}" if rule == ALL_RULES else f"rule {rule}"
    probs = " and class probabilities" if any(c.startswith(PROB_PREFIX) for c in frame.columns) else ""
    if model.truncated:
        probs += (f"; {model.truncated} sentence(s) longer than {model.max_length} tokens were truncated, as the "
                  "run truncated its own")
    if out is not None:
        write_new(out, "--out", lambda f: f.write(_table(frame, _separator(out))))
        print(f"{len(frame)} sentence(s) labelled by {by}{probs} -> {out}", file=sys.stderr)
    else:
        data = _table(frame, ",")
        sys.stdout.flush()
        if hasattr(sys.stdout, "buffer"):  # UTF-8 whatever the console's locale (Korean on a legacy code page)
            sys.stdout.buffer.write(data)
        else:  # a text-only stream (a Jupyter kernel's, io.StringIO)
            sys.stdout.write(data.decode("utf-8"))
        sys.stdout.flush()
        print(f"{len(frame)} sentence(s) labelled by {by}{probs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
