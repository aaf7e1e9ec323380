"""A progress line on a terminal (stderr), silent otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

_WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._open = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        if total <= 0:  # open-ended: a running count
            self._stream.write(f"\r{phase:<10} {done}")
            self._open = True
            self._stream.flush()
            return
        filled = _WIDTH * done // total
        bar = "#" * filled + "." * (_WIDTH - filled)
        self._stream.write(f"\r{phase:<10} [{bar}] {done}/{total}")
        self._open = done < total
        if not self._open:
            self._stream.write("\n")
        self._stream.flush()

    def close(self) -> None:
        if self._enabled and self._open:
            self._stream.write("\n")
            self._open = False
