"""Training progress: a bar on a terminal, plain lines in a log file.

tqdm redraws its bar with carriage returns; in a file (``run_all.sh > log``, ``nohup``) every
redraw stays, and one epoch becomes tens of kilobytes of a single line. Off a terminal we print
one line per tenth of an epoch instead (and the epoch's own summary line follows it as before).
"""
from __future__ import annotations

import sys
import time


class LineProgress:
    """Iterate ``iterable``, printing ``desc: unit i/n (p%), elapsed, postfix`` every tenth of it."""

    def __init__(self, iterable, desc: str, unit: str = "batch", stream=None, parts: int = 10):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.total = len(iterable)
        except TypeError:
            self.total = None
        self.parts = parts
        self.postfix: dict = {}

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def _marks(self) -> set[int]:
        if not self.total:
            return set()
        return {max(1, round(self.total * k / self.parts)) for k in range(1, self.parts + 1)}

    def __iter__(self):
        marks, t0 = self._marks(), time.perf_counter()
        for i, item in enumerate(self.iterable, 1):
            yield item
            if i in marks:
                extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {self.unit} {i}/{self.total} ({100 * i / self.total:.0f}%), "
                      f"{time.perf_counter() - t0:.0f}s{extra}", file=self.stream, flush=True)


class _Silent:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **values) -> None:
        pass


def progress(iterable, desc: str, disable: bool = False, unit: str = "batch", stream=None):
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a LineProgress; nothing if disabled."""
    if disable:
        return _Silent(iterable)
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, leave=False, unit=unit, file=stream)
    return LineProgress(iterable, desc, unit=unit, stream=stream)
