"""Out-of-domain test sets: labelled sentences from another corpus whose classes map onto a run's own.

A run trained on one corpus is scored, once, on sentences it never saw from another source. Only
some classes have a counterpart there: the score is the macro-F1 over those *shared* classes, and a
prediction of one of the run's classes without counterpart counts as an error (the row is wrong,
no class gains a false positive).

The named pairs, the only place they are defined:

* ``ko_single_turn7`` for ``ko6``: AI Hub / KETI's Korean single-turn utterances (cp949, 38,594
  rows, no text shared with ko6). 행복 -> happiness (기쁨), 분노 -> anger (분노), 슬픔 -> sadness (슬픔),
  공포 -> anxiety (불안; fear). A fixed sample of 1,000 rows per shared class: each class's rows
  ordered by sha256(f"{seed}:{row}") and the first 1,000 kept, so the same rows are drawn on every
  machine with any library version (pinned by the sha256 of the sample's ids).
* ``goemotions6`` for ``ed6``: GoEmotions comments (train, dev and test pooled) with exactly one
  label among joy, embarrassment, anger, nervousness, grief, sadness -> joyful, embarrassed, angry,
  anxious, devastated, sad (3,718 rows; no GoEmotions text is an EmpatheticDialogues text).

A user's pair is a CSV (the run's text and label columns) and a JSON mapping file
``{"their label": "our class name"}``; rows whose label is not in the mapping are left out (counted).
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lib.data.datasets import FILES, GOEMO_CLASSES, DataInputError, ids_digest
from lib.data.download import DataFileError, ensure_file
from lib.paths import data_dir

# (relative path in the data dir, upstream address pinned to a commit, sha256), as datasets.FILES
KO_SINGLE_TURN7_FILE = (
    "ko_single_turn7/dataset_cp949.csv",
    "https://raw.githubusercontent.com/wisome/data/7ecc7deebd454d31751f77074baa5f0a04b63f7d/"
    + urllib.parse.quote("데이터셋.csv"),
    "0aa07499070a286ed85f858e838d10dfde334ae4f387e9837a3da45905772d65",
)
KO_SINGLE_TURN7_ENCODING = "cp949"
KO_SINGLE_TURN7_SEED = 28  # issue #28; chosen before any score was seen
KO_SINGLE_TURN7_PER_CLASS = 1000
# sha256 of the sample's ids in order (lib.data.datasets.ids_digest): the same 4,000 rows everywhere.
KO_SINGLE_TURN7_SAMPLE_SHA256 = "50d57774c7d42773312dce97e30fbd8e9988e1366de8bafd64299fef00842924"

GOEMO_SPLIT_KEYS = ("goemo_train", "goemo_valid", "goemo_test")  # train.tsv, dev.tsv, test.tsv
# their label -> its id in the GoEmotions files (the index in labels.txt, as lib.data.datasets reads them)
GOEMO_LABEL_IDS = {name: GOEMO_CLASSES.index(name)
                   for name in ("anger", "embarrassment", "grief", "joy", "nervousness", "sadness")}


@dataclass(frozen=True)
class Pair:
    dataset: str              # the named data set whose classes the mapping names
    mapping: dict[str, str]   # their label -> our class name
    description: str


PAIRS = {
    "ko_single_turn7": Pair("ko6", {"행복": "happiness", "분노": "anger", "슬픔": "sadness", "공포": "anxiety"},
                            "AI Hub / KETI Korean single-turn utterances (한국어 단발성 대화), a fixed sample of "
                            f"{KO_SINGLE_TURN7_PER_CLASS} rows per shared class"),
    "goemotions6": Pair("ed6", {"joy": "joyful", "embarrassment": "embarrassed", "anger": "angry",
                                "nervousness": "anxious", "grief": "devastated", "sadness": "sad"},
                        "GoEmotions Reddit comments with exactly one label among the six, train, dev and test pooled"),
}
AUTO = {p.dataset: name for name, p in PAIRS.items()}  # "auto": the data set's own pair

SCORING_NOTE = ("macro-F1 over the shared classes only (the run's classes with a counterpart in the set); "
                "a prediction of a class without counterpart counts as an error")


@dataclass
class OutOfDomainSet:
    """Rows of another corpus, labelled with the run's class indices."""
    name: str
    frame: pd.DataFrame            # id, text, label (index into class_names), source_label (their label)
    class_names: list[str]         # the run's classes
    mapping: dict[str, str]        # their label -> our class name
    description: str
    notes: dict = field(default_factory=dict)

    @property
    def shared(self) -> list[int]:
        """Indices of the run's classes that have a counterpart, in the run's order."""
        return sorted({self.class_names.index(c) for c in self.mapping.values()})

    @property
    def without_counterpart(self) -> list[str]:
        return [c for i, c in enumerate(self.class_names) if i not in self.shared]


# ---- the ``ood`` setting: "auto", pair names, CSV=MAPPING.json, comma-separated ---------------------

@dataclass(frozen=True)
class Request:
    name: str                 # folder name under ood/
    pair: str | None = None   # a named pair, or None for a user's file
    csv: str | None = None
    mapping: str | None = None
    encoding: str = "utf-8"


def _user_request(item: str) -> Request:
    table, _, mapping = item.rpartition("=")
    table, mapping = table.strip(), mapping.strip()
    encoding = "utf-8"
    head, at, tail = table.rpartition("@")
    if at and head and "/" not in tail and "." not in tail:  # x.csv@cp949 (an @ inside a folder name is a path)
        try:
            encoding = codecs.lookup(tail.strip()).name
        except LookupError:
            raise ValueError(f"{item!r}: unknown text encoding {tail.strip()!r} (e.g. utf-8, cp949)") from None
        table = head.strip()
    if not table or not mapping:
        raise ValueError(f"{item!r}: a user's set is CSV=MAPPING.json (CSV@cp949=MAPPING.json for a cp949 file)")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(table).stem) or "csv"
    return Request(name, csv=table, mapping=mapping, encoding=encoding)


def parse_ood_spec(spec: str | None, dataset: str) -> list[Request]:
    """The sets named by ``spec`` for a run on ``dataset``; ValueError naming the bad item."""
    if spec is None or not spec.strip() or spec.strip().lower() == "none":
        return []
    choices = ", ".join(f"{n} (for {p.dataset})" for n, p in PAIRS.items())
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            raise ValueError(f"{spec!r} has an empty item; separate sets with single commas")
        if item == "auto":
            if dataset not in AUTO:
                raise ValueError(f"auto: data set {dataset!r} has no named out-of-domain pair (pairs: {choices}); "
                                 "give CSV=MAPPING.json instead")
            item = AUTO[dataset]
        if item in PAIRS:
            if PAIRS[item].dataset != dataset:
                raise ValueError(f"{item} maps onto the classes of {PAIRS[item].dataset}, not of {dataset!r}")
            out.append(Request(item, pair=item))
        elif "=" in item:
            out.append(_user_request(item))
        else:
            raise ValueError(f"unknown out-of-domain set {item!r}: use auto, {choices}, or CSV=MAPPING.json")
    names = [r.name for r in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two out-of-domain sets named {', '.join(twice)}: each lands in ood/<name>/ of the run "
                         "folder; name each once (rename a CSV file whose name clashes)")
    return out


# ---- reading files --------------------------------------------------------------------------------

def decode_text(path: Path, encoding: str, cp949_hint: str = "declare it as CSV@cp949=MAPPING.json") -> str:
    """The file's text in its declared encoding; a file in another encoding is a DataInputError
    (``cp949_hint``: what to do with a UTF-8-declared file that reads as cp949)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataInputError(f"cannot read {path}: {e.strerror or e}") from None
    name = codecs.lookup(encoding).name
    if name != "utf-8" and not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:  # a cp949 Korean file is never valid UTF-8; a UTF-8 file may still decode, as garbage, in cp949
            raise DataInputError(f"{path} is UTF-8 text, not {encoding} as declared: drop the @{encoding}")
    try:
        return raw.decode("utf-8-sig" if name == "utf-8" else name)
    except UnicodeDecodeError as e:
        hint = ""
        if name == "utf-8":
            try:
                raw.decode("cp949")
                hint = f" (it reads as cp949, Korean Windows text: {cp949_hint})"
            except UnicodeDecodeError:
                pass
        raise DataInputError(f"{path} is not {encoding} text ({e.reason} at byte {e.start}){hint}") from None


def read_table(path: Path, encoding: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Every cell a string; the named columns must be there."""
    if not path.is_file():
        raise DataInputError(f"out-of-domain CSV file not found: {path}")
    text = decode_text(path, encoding)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataInputError(f"{path} has no header line: it needs a header naming its columns") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as e:
        raise DataInputError(f"{path} is not a readable CSV file ({' '.join(str(e).split())})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataInputError(f"{path} has no column {', '.join(map(repr, missing))}; columns are {list(df.columns)}")
    return df.fillna("")


def read_mapping(path: Path, class_names: list[str], aliases: dict[str, str] | None = None) -> dict[str, str]:
    """``{their label: our class name}`` from a JSON file; our names may be given by an alias
    (ko6's Korean names). Empty, unknown names, or not an object of strings: DataInputError."""
    if not path.is_file():
        raise DataInputError(f"out-of-domain mapping file not found: {path}")
    def pairs(items):  # json.loads would keep the last of two equal keys without a word
        seen = {}
        for k, v in items:
            key = k.strip() if isinstance(k, str) else k
            if key in seen:
                raise DataInputError(f"{path}: label {key!r} is mapped twice (to {seen[key]!r} and {v!r}; labels "
                                     "are compared without surrounding spaces); map each label once")
            seen[key] = v
        return dict(items)

    try:
        obj = json.loads(decode_text(path, "utf-8", cp949_hint="save the mapping file as UTF-8, the only "
                                     "encoding a mapping is read in"), object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise DataInputError(f"{path} is not a JSON file ({e.msg} at line {e.lineno}); it must hold an object "
                             '{"their label": "our class name"}') from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise DataInputError(f'{path} must hold one JSON object of strings {{"their label": "our class name"}}')
    if not obj:
        raise DataInputError(f"{path}: the mapping is empty; it needs at least one "
                             '"their label": "our class name" pair')
    if "" in {k.strip() for k in obj}:
        raise DataInputError(f"{path}: an empty label is mapped; name each of their labels")
    known = {c: c for c in class_names} | dict(aliases or {})
    unknown = sorted({v for v in obj.values() if v.strip() not in known})
    if unknown:
        raise DataInputError(f"{path}: unknown class name(s) {', '.join(map(repr, unknown))}; the run's classes "
                             f"are {', '.join(class_names)}")
    return {k.strip(): known[v.strip()] for k, v in obj.items()}


def _frame(ids, texts, labels, source) -> pd.DataFrame:
    return pd.DataFrame({"id": list(map(str, ids)), "text": list(texts),
                         "label": np.asarray(labels, dtype=np.int64), "source_label": list(source)})


def _hash_order(seed: int, rows) -> list[int]:
    return sorted(rows, key=lambda r: hashlib.sha256(f"{seed}:{r}".encode()).hexdigest())


def load_ko_single_turn7(root: Path, download: bool, class_names: list[str]) -> OutOfDomainSet:
    path = ensure_file(root, *KO_SINGLE_TURN7_FILE, download=download)
    df = read_table(path, KO_SINGLE_TURN7_ENCODING, ("Sentence", "Emotion"))
    pair = PAIRS["ko_single_turn7"]
    labels = df["Emotion"].str.strip().to_numpy()
    keep = []
    for their in sorted(pair.mapping):
        rows = np.flatnonzero(labels == their).tolist()
        keep += _hash_order(KO_SINGLE_TURN7_SEED, rows)[:KO_SINGLE_TURN7_PER_CLASS]
    keep = sorted(keep)  # file order
    sub = df.iloc[keep]
    ids = [f"kst7-{r:05d}" for r in keep]  # the data row, 0-based; zero-padded so ids sort in file order
    digest = ids_digest(ids)
    if digest != KO_SINGLE_TURN7_SAMPLE_SHA256:
        raise DataFileError(f"the ko_single_turn7 sample drawn from {path} has ids sha256 {digest}, expected "
                            f"{KO_SINGLE_TURN7_SAMPLE_SHA256}: the sampling code, or how the CSV file is parsed, "
                            "changed")
    y = [class_names.index(pair.mapping[t]) for t in sub["Emotion"].str.strip()]
    frame = _frame(ids, sub["Sentence"].str.strip(), y, sub["Emotion"].str.strip())
    notes = {"file": KO_SINGLE_TURN7_FILE[0], "file_sha256": KO_SINGLE_TURN7_FILE[2], "encoding": "cp949",
             "file_rows": len(df), "sample_seed": KO_SINGLE_TURN7_SEED, "sample_per_class": KO_SINGLE_TURN7_PER_CLASS,
             "sample": "each shared class's rows ordered by sha256(f'{seed}:{row}'), the first ones kept"}
    return OutOfDomainSet("ko_single_turn7", frame, class_names, dict(pair.mapping), pair.description, notes)


def load_goemotions6(root: Path, download: bool, class_names: list[str]) -> OutOfDomainSet:
    pair = PAIRS["goemotions6"]
    by_id = {str(i): name for name, i in GOEMO_LABEL_IDS.items()}
    parts = []
    for key in GOEMO_SPLIT_KEYS:
        df = pd.read_csv(ensure_file(root, *FILES[key], download=download), sep="\t", header=None,
                         quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, names=["text", "labels", "id"],
                         encoding="utf-8")
        parts.append(df[df["labels"].isin(by_id)])  # one label id, no comma: exactly one label
    df = pd.concat(parts, ignore_index=True)
    source = df["labels"].map(by_id)
    y = [class_names.index(pair.mapping[s]) for s in source]
    notes = {"files": [FILES[k][0] for k in GOEMO_SPLIT_KEYS], "label_ids": GOEMO_LABEL_IDS,
             "selection": "rows with exactly one label, that label among the mapped six"}
    return OutOfDomainSet("goemotions6", _frame(df["id"], df["text"].str.strip(), y, source), class_names,
                          dict(pair.mapping), pair.description, notes)


def load_user_set(req: Request, class_names: list[str], aliases: dict[str, str] | None = None,
                  text_column: str = "text", label_column: str = "label") -> OutOfDomainSet:
    path, mapping_path = Path(req.csv), Path(req.mapping)
    mapping = read_mapping(mapping_path, class_names, aliases)  # small, and names the classes: checked first
    df = read_table(path, req.encoding, (text_column, label_column))
    labels = df[label_column].str.strip()
    absent = sorted(set(mapping) - set(labels))
    if absent:
        raise DataInputError(f"{mapping_path}: label(s) {', '.join(map(repr, absent))} do not occur in column "
                             f"{label_column!r} of {path}")
    texts = df[text_column].str.strip()
    kept = labels.isin(mapping) & texts.ne("")
    empty = sorted(set(mapping) - set(labels[kept]))
    if empty:  # a shared class without rows would score F1 0 for every method and lower every macro-F1
        raise DataInputError(f"{path}: every row of label(s) {', '.join(map(repr, empty))} (mapped in {mapping_path}) "
                             f"has an empty {text_column!r}; give them texts or leave them out of the mapping")
    unmapped = labels[~labels.isin(mapping)].value_counts()
    # the contents' digests: runs compared on this set must have scored the same file and mapping
    # (lib.study.run_files), whatever their paths
    notes = {"file": str(path), "mapping_file": str(mapping_path), "encoding": req.encoding, "file_rows": len(df),
             "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
             "mapping_sha256": hashlib.sha256(mapping_path.read_bytes()).hexdigest(),
             "left_out_unmapped": {str(k): int(v) for k, v in sorted(unmapped.items())},
             "left_out_empty_texts": int((labels.isin(mapping) & texts.eq("")).sum())}
    idx = np.flatnonzero(kept.to_numpy())
    y = [class_names.index(mapping[t]) for t in labels.iloc[idx]]
    frame = _frame([f"row-{i}" for i in idx], texts.iloc[idx], y, labels.iloc[idx])
    return OutOfDomainSet(req.name, frame, class_names, mapping, f"{path} with the mapping {mapping_path}", notes)


NAMED_LOADERS = {"ko_single_turn7": load_ko_single_turn7, "goemotions6": load_goemotions6}


def load_out_of_domain(spec: str | None, bundle, text_column: str = "text", label_column: str = "label",
                       root: str | Path | None = None, download: bool = True) -> list[OutOfDomainSet]:
    """The sets ``spec`` names, labelled with ``bundle``'s classes (``bundle``: the run's DataBundle).

    Each set notes the sha256 of its ids, how many of its texts are also texts of the run's training,
    validation and test splits, and how many of its texts repeat (with conflicting labels or not).
    """
    try:
        requests = parse_ood_spec(spec, bundle.name)
    except ValueError as e:
        raise DataInputError(f"ood: {e}") from None
    aliases = dict(zip(bundle.notes.get("korean_names", []), bundle.class_names))
    splits = {"training": set(bundle.train["text"]), "validation": set(bundle.valid["text"]),
              "test": set(bundle.test["text"])}
    out = []
    for req in requests:
        if req.pair:
            s = NAMED_LOADERS[req.pair](Path(root) if root else data_dir(), download, list(bundle.class_names))
        else:
            s = load_user_set(req, list(bundle.class_names), aliases, text_column, label_column)
        s.notes["ids_sha256"] = ids_digest(s.frame["id"])
        for split, texts in splits.items():  # an out-of-domain claim needs these to be 0 (the named pairs' are)
            s.notes[f"texts_in_{split}_split"] = int(s.frame["text"].isin(texts).sum())
        # a text that stands in the set more than once, and one labelled differently where it does (at most
        # one of its rows can be scored right): counted, not dropped (the named pairs' samples are fixed)
        counts = s.frame.groupby("text")["label"].agg(["size", "nunique"])
        s.notes["repeated_texts"] = int((counts["size"] > 1).sum())
        s.notes["texts_with_conflicting_labels"] = int((counts["nunique"] > 1).sum())
        out.append(s)
    return out


__all__ = ["PAIRS", "AUTO", "SCORING_NOTE", "OutOfDomainSet", "Request", "parse_ood_spec", "load_out_of_domain",
           "read_mapping", "decode_text"]
