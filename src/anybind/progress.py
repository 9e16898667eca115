"""Progress display: a tqdm bar on a terminal, one summary line per stage anywhere else.

Under a pipe, in CI or in a log file, a tqdm bar writes a carriage-return update many times a
second (tens of kB per run); there `progress_bar` returns a `StageSummary` instead, which
counts silently and prints ``"<desc>: <n>/<total> <unit> in <s> s (<rate>/s)"`` once, when the
stage ends. Every progress display in anybind goes through `progress_bar`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm.auto import tqdm


def is_terminal(stream: IO[str]) -> bool:
    """True when `stream` is an interactive terminal (not a pipe, file or captured stream)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or exotic streams
        return False


class StageSummary:
    """A stand-in for a tqdm bar off a terminal: counts with `update` (or iteration) and prints
    one summary line to `file` on `close` (also as a context manager)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, file: IO[str] | None = None) -> None:
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.desc, self.unit, self.file = desc, unit, file
        self.initial = self.n = initial
        self.postfix: dict[str, Any] = {}
        self.start = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.n += 1
        self.close()

    def __enter__(self) -> StageSummary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count `n` more units done."""
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        """Remember values (e.g. the last loss) for the summary line."""
        self.postfix = values

    def close(self) -> None:
        """Print the summary line once."""
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.start
        done = self.n - self.initial
        count = f"{_number(self.n)}/{_number(self.total)}" if self.total is not None else _number(self.n)
        rate = f", {done / seconds:.1f} {self.unit}/s" if seconds > 0 and done else ""
        extra = "".join(f", {key} {value}" for key, value in self.postfix.items())
        print(f"{self.desc}: {count} {self.unit} in {seconds:.1f} s{rate}{extra}", file=self.file or sys.stderr,
              flush=True)


def progress_bar(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, disable: bool = False,
                 file: IO[str] | None = None) -> Any:
    """A tqdm bar when `file` (default stderr) is a terminal, else a `StageSummary`; nothing at all
    (a disabled tqdm) when `disable`. Use like tqdm: iterate, or `update` / `set_postfix` / `close`."""
    stream = file if file is not None else sys.stderr
    if disable or is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=stream)
    return StageSummary(iterable, total=total, desc=desc, unit=unit, initial=initial, file=stream)


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value}"
