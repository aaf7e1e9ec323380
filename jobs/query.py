"""`ddb-backup query`: SQL over a table's backup with DuckDB."""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import decimal
import json
import math
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import duckdb

from backup_lambda.errors import BackupError, UserInputError
from jobs.args import parse_time
from jobs.arrowfs import s3_filesystem
from jobs.clients import make_client, settings_from
from jobs.sql import SqlSession

FETCH_ROWS = 10_000
_TABLE_WIDTH = 60  # widest cell shown in the table format


class QueryError(BackupError):
    """DuckDB rejected the SQL or failed running it."""


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "query",
        parents=[common],
        help="run SQL over a snapshot (view `items`) with DuckDB",
        description="Runs one read-only SQL statement. The view `items` has one row per live "
        "item: key and top-level attributes as typed columns, the lossless item as JSON in "
        "`__item`, and __event_time, __sequence_number, __version_id. The view `snapshots` "
        "lists the committed snapshots. Without --as-of the newest snapshot is queried.",
    )
    parser.add_argument("sql", metavar="SQL", help='the query, e.g. "SELECT count(*) FROM items"')
    parser.add_argument("--as-of", help="query exactly the state at TIME (snapshot + changes)")
    parser.add_argument(
        "--format", choices=["table", "csv", "jsonl"], default="table", help="output format"
    )
    parser.add_argument("--output", metavar="FILE", help="write the result here, not stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    as_of = parse_time(args.as_of) if args.as_of else None
    settings = settings_from(args)
    session = SqlSession(
        make_client("s3", settings), s3_filesystem(settings), args.bucket, args.prefix, args.table
    )
    with session:
        if as_of is None:
            session.open_latest()
        else:
            session.open_as_of(as_of)
        try:
            cursor = session.con.execute(args.sql)
        except duckdb.Error as e:
            raise QueryError(str(e).splitlines()[0]) from None
        description = cursor.description or []
        names = [d[0] for d in description]
        json_columns = {i for i, d in enumerate(description) if str(d[1]) == "JSON"}
        with _destination(args.output) as out:
            count = write_result(out, args.format, names, _batches(cursor), json_columns)
    if args.output:
        print(f"{count} rows from {session.source} written to {args.output}", file=sys.stderr)
    return 0


def _batches(cursor: duckdb.DuckDBPyConnection) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        try:
            rows = cursor.fetchmany(FETCH_ROWS)
        except duckdb.Error as e:
            raise QueryError(str(e).splitlines()[0]) from None
        if not rows:
            return
        yield rows


@contextmanager
def _destination(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        handle = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as e:
        raise UserInputError(f"--output {path}: {e.strerror}") from None
    with handle:
        yield handle


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
