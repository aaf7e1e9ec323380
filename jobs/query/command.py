"""`ddb-backup query`: SQL over a table's backup with DuckDB."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import duckdb

from backup_lambda.errors import BackupError, UserInputError
from backup_lambda.layout import format_time_us
from compaction.filecache import CACHE_ENV, FileCache, default_cache_dir
from compaction.manifest import SkippedVersion
from jobs.cli.args import parse_time
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import note
from jobs.query.limits import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIMEOUT_SECONDS,
    one_read_only_statement,
    out_of_memory,
    positive_seconds,
    time_limit,
)
from jobs.query.results import write_result
from jobs.query.sql import SqlSession

FETCH_ROWS = 10_000
SHOW_SKIPPED = 10


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
    parser.add_argument(
        "--as-of",
        help="query exactly the state at TIME: snapshot + changes (default: the newest "
        "snapshot as it is)",
    )
    parser.add_argument(
        "--format", choices=["table", "csv", "jsonl"], default="table", help="output format"
    )
    parser.add_argument(
        "--output", metavar="FILE", help="write the result to FILE (default: stdout)"
    )
    parser.add_argument(
        "--snapshot",
        metavar="ID",
        help="query this snapshot (with --as-of: start from it), e.g. an older one when "
        "the newest fails verification (default: the newest)",
    )
    parser.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="with --as-of: skip unreadable item versions (reported), never snapshot files",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"keep verified snapshot files here for later queries (default: ${CACHE_ENV}, "
        "else ~/.cache/ddb-backup)",
    )
    cache.add_argument(
        "--no-cache", action="store_true", help="download into a temporary folder, removed after"
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="stop the SQL (running and fetching, not the download) after this long",
    )
    parser.add_argument(
        "--memory-limit",
        default=DEFAULT_MEMORY_LIMIT,
        metavar="SIZE",
        help="DuckDB's memory limit for the query, e.g. 512MB, 8GB, 50%% (of RAM); what "
        "can spill to a temporary folder does",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sql = one_read_only_statement(args.sql)
    as_of = parse_time(args.as_of, "--as-of") if args.as_of else None
    settings = settings_from(args)
    session = SqlSession(
        make_client("s3", settings),
        args.bucket,
        args.prefix,
        args.table,
        cache=None if args.no_cache else FileCache(_cache_dir(args.cache_dir)),
        memory_limit=args.memory_limit,
    )
    with session:
        if as_of is None:
            session.open_latest(args.snapshot)
        else:
            session.open_as_of(as_of, snapshot=args.snapshot, skip_corrupt=args.skip_corrupt)
        _report_skipped(session.skipped)
        with time_limit(session.con, args.timeout):
            try:
                cursor = session.con.execute(sql)
            except duckdb.Error as e:
                raise _query_error(e, args.memory_limit) from None
            description = cursor.description or []
            names = [d[0] for d in description]
            json_columns = {i for i, d in enumerate(description) if str(d[1]) == "JSON"}
            with _destination(args.output) as out:
                count = write_result(
                    out, args.format, names, _batches(cursor, args.memory_limit), json_columns
                )
    # which state answered, and as of when (the view `snapshots` says more)
    answered = f"{session.source}, as of {format_time_us(session.as_of_us or 0)}"
    if args.output:
        print(f"{count} rows from {answered} written to {args.output}", file=sys.stderr)
    else:
        note(args, f"answered from {answered}")
    return 0


def _batches(
    cursor: duckdb.DuckDBPyConnection, memory_limit: str
) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        try:
            rows = cursor.fetchmany(FETCH_ROWS)
        except duckdb.Error as e:
            raise _query_error(e, memory_limit) from None
        if not rows:
            return
        yield rows


def _query_error(error: duckdb.Error, memory_limit: str) -> BaseException:
    """The one-line error for a failed statement; an interrupt goes to the time limit."""
    if isinstance(error, duckdb.InterruptException):
        return error
    if isinstance(error, duckdb.OutOfMemoryException):
        return out_of_memory(memory_limit, error)
    return QueryError(str(error).splitlines()[0])


def _cache_dir(option: str | None) -> Path:
    return Path(option).expanduser() if option else default_cache_dir()


def _report_skipped(skipped: list[SkippedVersion]) -> None:
    """Versions --skip-corrupt left out: counted and named on stderr, the result intact."""
    if not skipped:
        return
    print(f"skipped {len(skipped)} unreadable item versions:", file=sys.stderr)
    for entry in skipped[:SHOW_SKIPPED]:
        print(f"  {entry.reason}", file=sys.stderr)
    if len(skipped) > SHOW_SKIPPED:
        print(f"  ... and {len(skipped) - SHOW_SKIPPED} more", file=sys.stderr)


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
