"""Named emotion data sets with fixed splits, and the user's own CSV.

Every loader returns a :class:`DataBundle`: three pandas frames (``id``, ``text``, ``label``)
and the class names, label ``i`` being ``class_names[i]``.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedShuffleSplit, train_test_split

from lib.data.download import DataFileError, ensure_file
from lib.paths import data_dir

SPLITS = ("train", "valid", "test")
RAW = "https://raw.githubusercontent.com"

# (relative path in the data dir, upstream address pinned to a commit, sha256)
FILES = {
    "ko6": ("ko_emotion6/data_class_6_all.csv",
            f"{RAW}/Hyen4110/contrastive_fine-grained_emotion_detection/b37d3958f0d4bf9c7d7054d6b1d1317324c0f6fc/data/data_class_6%28all%29.csv",
            "bba1770771bbc6442f13615de63f9f52aa04194958797cc69713bd3aa544a5ee"),
    "ed_train": ("empathetic_dialogues/train.csv",
                 f"{RAW}/dinobby/HypEmo/97ec6af6b19b831f69cb35a82dc65ea1395fa157/data/ED/train.csv",
                 "3802033124c7f00b7aaa03f0d963752c8bd01175e2876ea39ed80b37b9e2ea4d"),
    "ed_valid": ("empathetic_dialogues/valid.csv",
                 f"{RAW}/dinobby/HypEmo/97ec6af6b19b831f69cb35a82dc65ea1395fa157/data/ED/valid.csv",
                 "1cc46f314fbd67ee4bc1a6eacd3a21122bba52d8e8986abb938d71323d6e66bb"),
    "ed_test": ("empathetic_dialogues/test.csv",
                f"{RAW}/dinobby/HypEmo/97ec6af6b19b831f69cb35a82dc65ea1395fa157/data/ED/test.csv",
                "d04847887b873dd2101b2c340caf19073ff7718caa16a160ea62bf7782ebfa21"),
    "goemo_train": ("goemotions/train.tsv",
                    f"{RAW}/monologg/GoEmotions-pytorch/b75f9d3a8b76bc1060687925b04ca98a1b8ea66b/data/original/train.tsv",
                    "1c254a142be5c00e80d819b9ae1bbd36d94b2eeb8f4b1271846508d57e57d9c5"),
    "goemo_valid": ("goemotions/dev.tsv",
                    f"{RAW}/monologg/GoEmotions-pytorch/b75f9d3a8b76bc1060687925b04ca98a1b8ea66b/data/original/dev.tsv",
                    "575489c079c9de1097062a01738f998590d6b7ead66dd1c9fd1d2ba01fd8bc62"),
    "goemo_test": ("goemotions/test.tsv",
                   f"{RAW}/monologg/GoEmotions-pytorch/b75f9d3a8b76bc1060687925b04ca98a1b8ea66b/data/original/test.tsv",
                   "0587b2dd8b27b97352adbfc3fb083d46005c8946657fdc2b1ca8b1cc7f1f8be4"),
}

# Korean labels 0..5 of the seed study, shown with English names.
KO6_CLASSES = ["happiness", "embarrassment", "anger", "anxiety", "heartbroken", "sadness"]
KO6_KOREAN = ["기쁨", "당황", "분노", "불안", "상처", "슬픔"]
ED32_CLASSES = [
    "sad", "trusting", "terrified", "caring", "disappointed", "faithful", "joyful", "jealous",
    "disgusted", "surprised", "ashamed", "afraid", "impressed", "sentimental", "devastated",
    "excited", "anticipating", "annoyed", "anxious", "furious", "content", "lonely", "angry",
    "confident", "apprehensive", "guilty", "embarrassed", "grateful", "hopeful", "proud",
    "prepared", "nostalgic",
]
# The six EmpatheticDialogues classes that mirror the Korean ones, in the Korean order.
ED6_CLASSES = ["joyful", "embarrassed", "angry", "anxious", "devastated", "sad"]
GOEMO_CLASSES = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise",
]  # id 27 = neutral, dropped

NAMED = ("ko6", "ed6", "ed32", "goemo27")
LANGUAGE = {"ko6": "ko", "ed6": "en", "ed32": "en", "goemo27": "en"}
# Named sets whose terms forbid redistribution (the data folder's README: AI Hub corpora, research use only).
# A published file or executed notebook is redistribution: what the program writes names their rows by id,
# and notebook 00 shows their sentences only when asked (examples_per_class).
NOT_REDISTRIBUTABLE = frozenset({"ko6"})


def texts_shareable(name: str) -> bool:
    """Whether the sentences of data set ``name`` may appear in what is published (a user's CSV: yes, its
    owner decides)."""
    return name not in NOT_REDISTRIBUTABLE


@dataclass
class DataBundle:
    name: str
    class_names: list[str]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    language: str = "en"
    notes: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}

    def class_counts(self) -> pd.DataFrame:
        """Rows = class names, columns = splits."""
        out = {s: np.bincount(self.split(s)["label"], minlength=self.num_classes) for s in SPLITS}
        return pd.DataFrame(out, index=self.class_names)


def ids_digest(ids) -> str:
    """sha256 of the ids in split order: pins a split exactly."""
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()


def _frame(ids, texts, labels) -> pd.DataFrame:
    return pd.DataFrame({"id": list(map(str, ids)), "text": list(texts), "label": np.asarray(labels, dtype=np.int64)})


def _file(key: str, root: Path, download: bool) -> Path:
    rel, url, sha = FILES[key]
    return ensure_file(root, rel, url, sha, download=download)


def load_ko6(root: Path, download: bool = True) -> DataBundle:
    """The seed study's Korean set, split exactly as it did (7000/2100/900).

    ``StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=0)`` on all rows, then
    the same call on the 30% rest: its 70% is validation, its 30% test.
    """
    df = pd.read_csv(_file("ko6", root, download), encoding="utf-8")
    y = df["labels"].to_numpy()
    sss = StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=0)
    train_idx, rest_idx = next(sss.split(np.zeros(len(y)), y))
    rest = df.iloc[rest_idx].reset_index(drop=True)
    valid_idx, test_idx = next(sss.split(np.zeros(len(rest)), rest["labels"].to_numpy()))

    def part(frame, idx):
        sub = frame.iloc[idx]
        return _frame(sub["filenm"], sub["text"].str.strip(), sub["labels"])

    return DataBundle("ko6", KO6_CLASSES, part(df, train_idx), part(rest, valid_idx), part(rest, test_idx),
                      language="ko", notes={"korean_names": KO6_KOREAN})


def _load_ed(root: Path, download: bool, keep: list[str] | None, name: str) -> DataBundle:
    frames = {}
    for split in SPLITS:
        df = pd.read_csv(_file(f"ed_{split}", root, download), encoding="utf-8", keep_default_na=False)
        ids = [f"ed-{split}-{i}" for i in range(len(df))]
        df = _frame(ids, df["text"].str.strip(), df["label"])
        if keep is not None:
            remap = {ED32_CLASSES.index(c): j for j, c in enumerate(keep)}
            df = df[df["label"].isin(remap)].copy()
            df["label"] = df["label"].map(remap).astype(np.int64)
            df = df.reset_index(drop=True)
        frames[split] = df
    return DataBundle(name, list(keep or ED32_CLASSES), frames["train"], frames["valid"], frames["test"])


def load_ed6(root: Path, download: bool = True) -> DataBundle:
    return _load_ed(root, download, ED6_CLASSES, "ed6")


def load_ed32(root: Path, download: bool = True) -> DataBundle:
    return _load_ed(root, download, None, "ed32")


def load_goemo27(root: Path, download: bool = True) -> DataBundle:
    """GoEmotions rows with exactly one label, neutral (27) dropped; official split."""
    frames = {}
    for split in SPLITS:
        df = pd.read_csv(_file(f"goemo_{split}", root, download), sep="\t", header=None, quoting=csv.QUOTE_NONE,
                         dtype=str, keep_default_na=False, names=["text", "labels", "id"], encoding="utf-8")
        single = ~df["labels"].str.contains(",") & (df["labels"] != "27")
        df = df[single]
        frames[split] = _frame(df["id"], df["text"].str.strip(), df["labels"].astype(int)).reset_index(drop=True)
    return DataBundle("goemo27", list(GOEMO_CLASSES), frames["train"], frames["valid"], frames["test"])


class DataInputError(ValueError):
    """The user's data file cannot be used as it is."""
    exit_status = 2  # bad input: see lib.entrypoint


def _read_table(path: Path) -> pd.DataFrame:
    """Every cell as a string ('' when missing); a file pandas cannot parse is a DataInputError."""
    kind, sep = ("TSV", "\t") if path.suffix.lower() == ".tsv" else ("CSV", ",")
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataInputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        what = "is empty (0 bytes)" if path.stat().st_size == 0 else "has no header line (only blank lines)"
        raise DataInputError(f"{path} {what}: a {kind} file needs a header line naming its text and label "
                             "columns, then one row per example") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as e:  # ragged rows, an unclosed quote, ...
        reason = " ".join(str(e).split())
        raise DataInputError(f"{path} is not a readable {kind} file ({reason}); check its quoting and that every "
                             f"row has as many {'tabs' if sep == chr(9) else 'commas'} as the header") from None
    except OSError as e:
        raise DataInputError(f"cannot read {path}: {e.strerror or e}") from None
    return df.fillna("")  # short rows leave NaN even with keep_default_na=False


def load_csv(path: str | Path, text_column: str = "text", label_column: str = "label", seed: int = 0,
             valid_size: float = 0.15, test_size: float = 0.15, empty_texts: str = "drop") -> DataBundle:
    """A user's CSV with a text and a label column, split stratified with ``random_state=seed`` (the
    training code passes 0 for every run seed, so seeds share one split: lib/training/train.py).

    Labels may be names or integers; class ``i`` is the i-th sorted distinct label.
    """
    path = Path(path)
    if not path.is_file():
        raise DataInputError(f"CSV file not found: {path}")
    df = _read_table(path)
    for col, what in ((text_column, "text_column"), (label_column, "label_column")):
        if col not in df.columns:
            raise DataInputError(f"{path} has no column {col!r} (set --{what.replace('_', '-')}); columns are {list(df.columns)}")
    notes = {}
    labels = df[label_column].str.strip()
    missing = np.flatnonzero(labels.eq("").to_numpy())
    if len(missing):
        rows = ", ".join(str(r + 2) for r in missing[:5])  # +2: header line and 1-based lines
        raise DataInputError(f"{path}: {len(missing)} rows have no label in column {label_column!r} (lines {rows}...)")
    texts = df[text_column].str.strip()
    empty = texts.eq("").to_numpy()
    if empty.any():
        if empty_texts == "error":
            rows = ", ".join(str(r + 2) for r in np.flatnonzero(empty)[:5])
            raise DataInputError(f"{path}: {int(empty.sum())} rows have an empty text (lines {rows}...)")
        notes["dropped_empty_texts"] = int(empty.sum())
        df, texts, labels = df[~empty], texts[~empty], labels[~empty]
    numeric = labels.str.fullmatch(r"-?\d+").all()
    names = sorted(labels.unique(), key=int if numeric else str)
    counts = labels.value_counts()
    too_few = [f"{c!r} ({counts[c]})" for c in names if counts[c] < 3]
    if too_few:
        raise DataInputError(
            f"{path}: classes with fewer than 3 examples cannot be split into train/valid/test: {', '.join(too_few)}")
    y = labels.map({n: i for i, n in enumerate(names)}).to_numpy()
    ids = [f"row-{i}" for i in df.index]
    all_idx = np.arange(len(y))
    try:
        train_idx, rest_idx = train_test_split(all_idx, test_size=valid_size + test_size, stratify=y,
                                               random_state=seed)
        valid_idx, test_idx = train_test_split(rest_idx, test_size=test_size / (valid_size + test_size),
                                               stratify=y[rest_idx], random_state=seed)
    except ValueError as e:  # sklearn: a class too small for one of the stratified parts
        smallest = ", ".join(f"{n!r} ({counts[n]})" for n in sorted(names, key=lambda n: counts[n])[:3])
        raise DataInputError(f"{path}: cannot split stratified into train/valid/test ({e}); the smallest classes "
                             f"are {smallest}: add examples or merge them (about 7 per class are needed)") from None
    t = texts.to_numpy()

    def part(idx):
        idx = np.sort(idx)
        return _frame(np.asarray(ids)[idx], t[idx], y[idx])

    return DataBundle(path.stem, [str(n) for n in names], part(train_idx), part(valid_idx), part(test_idx), notes=notes)


LOADERS = {"ko6": load_ko6, "ed6": load_ed6, "ed32": load_ed32, "goemo27": load_goemo27}


def load_dataset(name: str, root: str | Path | None = None, download: bool = True, **csv_options) -> DataBundle:
    """A named data set (``ko6``, ``ed6``, ``ed32``, ``goemo27``) or a path to a CSV file."""
    if name in LOADERS:
        return LOADERS[name](Path(root) if root else data_dir(), download=download)
    if name.lower().endswith((".csv", ".tsv")) or Path(name).exists():
        return load_csv(name, **csv_options)  # a user's file, comma- or (.tsv) tab-separated
    raise DataInputError(f"unknown data set {name!r}: use one of {', '.join(NAMED)} or a path to a CSV file")


def subsample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, stratified so every class keeps examples (for quick runs)."""
    if n is None or n >= len(frame):
        return frame
    labels = frame["label"].to_numpy()
    strat = labels if np.bincount(labels).min() >= 2 and n >= len(np.unique(labels)) else None
    keep, _ = train_test_split(np.arange(len(frame)), train_size=n, stratify=strat, random_state=seed)
    return frame.iloc[np.sort(keep)].reset_index(drop=True)


__all__ = ["DataBundle", "DataFileError", "DataInputError", "load_dataset", "load_csv", "subsample", "ids_digest",
           "NAMED", "LANGUAGE", "SPLITS"]
