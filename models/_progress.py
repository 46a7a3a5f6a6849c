"""Progress of multi-fit work (rank scans, restarts, stability, network compression).

``progress=True`` shows a bar labelled per fit: tqdm's when tqdm is installed, else a
one-line text bar rewritten in place on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["FitTracker", "ProgressBar", "fit_heading", "progress_bar"]

_WIDTH = 24


class ProgressBar:
    """A bar over ``total`` fits, each announced by :meth:`step` with its label.

    Parameters
    ----------
    total : int
        Fits expected; :meth:`grow` adds to it when more turn out to be needed.
    description : str
        The work's name (the function the user called).
    file : text stream, optional
        Where the bar is written (default ``sys.stderr``).
    use_tqdm : bool, optional
        Draw with tqdm (default: when it is installed).
    """

    def __init__(self, total: int, description: str, *, file: TextIO | None = None,
                 use_tqdm: bool | None = None) -> None:
        self.total = int(total)
        self.description = description
        self.done = 0
        self.file = file if file is not None else sys.stderr
        self.start = time.perf_counter()
        self._width = 0
        self._tqdm: Any = None
        if use_tqdm is None or use_tqdm:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if use_tqdm:
                    raise
            else:
                self._tqdm = tqdm(total=self.total, desc=description, file=self.file,
                                  unit="fit", leave=True)

    def grow(self, extra: int) -> None:
        """Expect ``extra`` more fits."""
        self.total += int(extra)
        if self._tqdm is not None:
            self._tqdm.total = self.total
            self._tqdm.refresh()

    def step(self, label: str) -> None:
        """One fit, named ``label``, is done."""
        self.done += 1
        self.total = max(self.total, self.done)
        if self._tqdm is not None:
            self._tqdm.total = self.total
            self._tqdm.set_postfix_str(label, refresh=False)
            self._tqdm.update(1)
            return
        filled = _WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (_WIDTH - filled)
        seconds = time.perf_counter() - self.start
        line = (f"{self.description} [{bar}] {self.done}/{self.total} {label} "
                f"({seconds:.1f} s)")
        self.file.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.file.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.done:
            self.file.write("\n")
            self.file.flush()


class FitTracker:
    """Labels the fits of multi-fit work: a heading above each fit's iteration table
    (when ``display``) and a bar step after it (when ``bar``)."""

    def __init__(self, where: str, bar: ProgressBar | None = None, display: object = 0
                 ) -> None:
        self.where = where
        self.bar = bar
        self.display = display

    def before(self, label: str) -> None:
        fit_heading(self.display, f"{self.where}: {label}")

    def after(self, label: str) -> None:
        if self.bar is not None:
            self.bar.step(label)


@contextmanager
def progress_bar(show: bool, total: int, description: str) -> Iterator[ProgressBar | None]:
    """A :class:`ProgressBar` when ``show``, else None; closed on exit."""
    if not show:
        yield None
        return
    bar = ProgressBar(total, description)
    try:
        yield bar
    finally:
        bar.close()


def fit_heading(display: object, text: str) -> None:
    """Print ``text`` as the heading of the iteration table that follows (display > 0)."""
    if display:
        print(f"-- {text} --")
