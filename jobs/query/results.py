"""Query results as an aligned table, CSV or JSON lines; values made JSON-friendly."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

_TABLE_WIDTH = 60  # widest cell shown in the table format


def plain(value: Any) -> Any:
    """A result value as JSON-friendly data: exact decimals as strings, bytes as base64."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta | uuid.UUID):  # INTERVAL (comparing times), UUID
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN/Infinity
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def write_result(
    out: TextIO,
    fmt: str,
    names: Sequence[str],
    batches: Iterator[list[tuple[Any, ...]]],
    json_columns: frozenset[int] | set[int] = frozenset(),
) -> int:
    """Rows as an aligned table, CSV with a header, or JSON lines; returns the row count."""
    count = 0
    if fmt == "jsonl":
        for rows in batches:
            for row in rows:
                # JSON columns go out as their own JSON text, so nested numbers stay exact.
                fields = [
                    json.dumps(name, ensure_ascii=False)
                    + ":"
                    + (
                        v
                        if i in json_columns and v is not None
                        else json.dumps(plain(v), ensure_ascii=False, default=str)
                    )
                    for i, (name, v) in enumerate(zip(names, row, strict=True))
                ]
                out.write("{" + ",".join(fields) + "}\n")
                count += 1
        return count
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(names)
        for rows in batches:
            writer.writerows([_text(v) for v in row] for row in rows)
            count += len(rows)
        return count
    table = [[_text(v) for v in record] for rows in batches for record in rows]
    widths = [
        min(_TABLE_WIDTH, max([len(n), *(len(r[i]) for r in table)])) for i, n in enumerate(names)
    ]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out.write(line(names) + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for cells in table:
        out.write(line(cells) + "\n")
    out.write(f"({len(table)} row{'s' if len(table) != 1 else ''})\n")
    return len(table)
