"""Output helpers shared by the commands: the JSON result line, tables, notes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


def emit_json(payload: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object, the last line of output."""
    print(json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":")))


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    stream: TextIO | None = None,
    right: Sequence[int] = (),
    aligned: bool | None = None,
) -> None:
    """Rows as an aligned table on a terminal; tab-separated (header first) when piped, so
    `cut -f2` and `awk -F'\\t'` work. `right`: columns to right-align (numbers)."""
    out = stream or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    if aligned is None:
        aligned = out.isatty()
    if not aligned:
        for values in [list(headers), *cells]:
            out.write("\t".join(c.replace("\t", " ") for c in values) + "\n")
        return
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out.write(line(headers) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value)


def note(args: argparse.Namespace, text: str) -> None:
    """A human note on stderr (which snapshot answered, what was skipped); --quiet drops it."""
    if not getattr(args, "quiet", False):
        print(f"ddb-backup: {text}", file=sys.stderr)


def warn(text: str) -> None:
    """A warning on stderr, always shown."""
    print(f"ddb-backup: warning: {text}", file=sys.stderr)
