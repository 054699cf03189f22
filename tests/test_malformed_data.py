"""Malformed data files as a class: whatever the bytes, the CSV/TSV loader either returns a valid
split or raises the project's own data error naming the file; never another exception.

Hypothesis generates the files (arbitrary bytes, and small tables written with random encodings,
delimiters, quoting, missing cells, NaN spellings, huge fields, few rows, one class). The number
of examples is bounded so the suite stays fast; ``--hypothesis-seed`` reproduces a failure.
"""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.data.datasets import SPLITS, DataFileError, DataInputError, load_csv

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_or_refuse(content: bytes, suffix: str):
    """load_csv on a file holding ``content``: the bundle, or None when refused with a good message."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(content)
        try:
            bundle = load_csv(path)
        except (DataInputError, DataFileError) as e:
            message = str(e)
            assert str(path) in message, f"the message does not name the file: {message}"
            assert "\n" not in message.strip(), f"not one line: {message!r}"
            return None
    check_valid_split(bundle)
    return bundle


def check_valid_split(bundle) -> None:
    n = bundle.num_classes
    assert n >= 1 and len(set(bundle.class_names)) == n
    ids = []
    for split in SPLITS:
        frame = bundle.split(split)
        assert list(frame.columns) == ["id", "text", "label"]
        assert len(frame) > 0, f"{split} is empty"
        assert frame["label"].dtype == np.int64
        assert frame["label"].between(0, n - 1).all()
        assert frame["text"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
        ids += frame["id"].tolist()
    assert len(ids) == len(set(ids)), "a row is in two splits"
    assert set(bundle.train["label"]) == set(range(n)), "a class is missing from train"


@FAST
@given(content=st.binary(max_size=3000), suffix=st.sampled_from([".csv", ".tsv"]))
def test_arbitrary_bytes_load_or_are_refused_with_the_file_named(content, suffix):
    load_or_refuse(content, suffix)


MISSING = object()  # a cell cut off the end of its row
CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "nan", "NaN", "NA", "null", "None", "#N/A", "-1", "0", "1", "\u00e9t\u00e9", "\ufeff",
                     "a,b", '"q"', "line\nbreak", "tab\there", "\r", "\x00"]),
    st.just(MISSING),
)
# Mostly a few classes (so that many tables load and their splits are checked), sometimes anything.
LABEL = st.one_of(st.sampled_from(["joy", "anger", "sad", "joy", "anger", " joy "]),
                  st.sampled_from(["0", "1", "2", "-3", "", "nan", "\u0663"]), CELL)


@st.composite
def tables(draw):
    """(bytes, suffix) of a small table in a random dialect; sometimes loadable, mostly not."""
    header = draw(st.lists(st.sampled_from(["text", "label", "id", "Text", "text", "label ", "", "x"]),
                           min_size=0, max_size=4))
    if draw(st.integers(0, 3)):
        header = ["text", "label"] + header[:1]  # often the right columns, so that some files load
    n_rows = draw(st.integers(0, 40))
    one_class = draw(st.booleans())
    rows = []
    for _ in range(n_rows):
        row = []
        for col in header:
            if col.strip() == "label":
                row.append("joy" if one_class else draw(LABEL))
            elif col == "text" and draw(st.integers(0, 40)) == 0:
                row.append("x" * draw(st.sampled_from([10_000, 200_000])))  # a huge field
            else:
                row.append(draw(CELL))
        while row and row[-1] is MISSING:
            row.pop()
        rows.append(["" if c is MISSING else c for c in row])
    delimiter = draw(st.sampled_from([",", ",", "\t", ";", "|"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE, csv.QUOTE_NONNUMERIC]))
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=terminator, escapechar="\\")
    try:
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    except csv.Error:
        pass  # what was written so far is a file too
    text = buffer.getvalue()
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    content = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        content = content[: draw(st.integers(0, len(content)))]  # cut off mid-row (or mid-character)
    return content, ".tsv" if delimiter == "\t" and draw(st.booleans()) else ".csv"


@FAST
@given(table=tables())
def test_arbitrary_small_tables_load_or_are_refused_with_the_file_named(table):
    load_or_refuse(*table)


def test_zero_byte_file_is_refused_in_one_line(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataInputError, match=r"empty\.csv is empty \(0 bytes\): a CSV file needs a header line"):
        load_csv(empty)


def test_well_formed_table_still_loads_whatever_the_dialect_around_it(tmp_path):
    """A control: the property tests above must not pass by refusing everything."""
    labels = ["joy", "anger", "sad"] * 10
    text = "text,label\r\n" + "".join(f'"row {i}, ""quoted""",{lab}\r\n' for i, lab in enumerate(labels))
    path = tmp_path / "good.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    bundle = load_or_refuse(path.read_bytes(), ".csv")
    assert bundle is not None and bundle.class_names == ["anger", "joy", "sad"] and sum(bundle.sizes().values()) == 30


@pytest.mark.parametrize("text, suffix, message", [
    ("\n\n\n", ".csv", "has no header line (only blank lines): a CSV file needs a header line naming its text "
                       "and label columns"),
    ("text,label\nx,joy\na,b,c\n", ".csv", "is not a readable CSV file (Error tokenizing data. C error: Expected 2 "
                                           "fields in line 3, saw 3); check its quoting and that every row has as "
                                           "many commas as the header"),
    ('text\tlabel\n"open\tjoy\n', ".tsv", "is not a readable TSV file ("),
])
def test_unreadable_tables_are_refused_with_what_to_fix(tmp_path, text, suffix, message):
    path = tmp_path / f"mine{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataInputError) as caught:
        load_csv(path)
    assert str(caught.value).startswith(f"{path} {message}")
