"""Progress bars on a terminal (stderr, with rate and ETA, by tqdm); silent otherwise.

Every long job takes a `progress(phase, done, total)` callback: `total` 0 means an
open-ended count. `progress_for(args)` gives the bar a command should use: off with
--json, --quiet, or when stderr is not a terminal.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, TextIO

from tqdm import tqdm

# What a phase counts (the unit shown beside the rate).
_UNITS = {"backfill": "item", "expire": "file", "import": "item"}


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._bar: tqdm[Any] | None = None
        self._phase: str | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        with self._lock:
            bar = self._bar
            if phase != self._phase or bar is None:
                self._close_bar()
                self._phase = phase
                bar = tqdm(
                    total=total or None,
                    desc=phase,
                    unit=_UNITS.get(phase, "unit"),
                    file=self._stream,
                    dynamic_ncols=True,
                    leave=True,
                    smoothing=0.1,
                )
                self._bar = bar
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            if total and done >= total:
                self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._phase = None

    def close(self) -> None:
        with self._lock:
            self._close_bar()


def progress_for(args: argparse.Namespace, stream: TextIO | None = None) -> ProgressBar:
    """The bar for a command: none with --json or --quiet, else only on a terminal."""
    quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False))
    return ProgressBar(stream=stream, enabled=False if quiet else None)
