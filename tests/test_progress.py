"""Progress in a log file is plain lines (one per tenth of an epoch); a bar only on a terminal."""
from __future__ import annotations

import io

from lib.training.progress import LineProgress, progress


def test_a_log_gets_one_line_per_tenth_and_no_carriage_return():
    log = io.StringIO()
    bar = progress(range(95), desc="epoch 1/2", stream=log)
    assert isinstance(bar, LineProgress)
    for step in bar:
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("epoch 1/2: batch 95/95 (100%)")
    assert lines[0].startswith("epoch 1/2: batch 10/95 (11%)") and "loss 0.1000" in lines[0]


def test_a_short_epoch_prints_each_batch_once_and_disabled_prints_nothing():
    log = io.StringIO()
    assert list(progress([1, 2, 3], desc="e", stream=log)) == [1, 2, 3]
    assert log.getvalue().count("\n") == 3
    quiet = io.StringIO()
    bar = progress([1, 2], desc="e", disable=True, stream=quiet)
    bar.set_postfix(loss=1)
    assert list(bar) == [1, 2] and quiet.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    term = _Terminal()
    bar = progress(range(5), desc="e", stream=term)
    assert isinstance(bar, tqdm)
    list(bar)
    assert "\r" in term.getvalue()
