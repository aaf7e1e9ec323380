"""What `query` lets a statement do: exactly one read-only statement, within a time limit
and a memory limit.

The session is already locked down (no files, URLs, extensions or settings: see
jobs/query/sql.py); the statement check says so up front, in one line and before anything
is downloaded, and also refuses what the lock-down would let through (several statements,
writes to the session's own catalog).
"""

from __future__ import annotations

import argparse
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from backup_lambda.errors import BackupError, UserInputError

DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_MEMORY_LIMIT = "2GB"

# EXPLAIN, EXPLAIN ANALYZE and EXPLAIN (options) in front of the statement they explain.
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(ANALYZE\s+|\([^)]*\)\s*)?", re.IGNORECASE)
_READ_ONLY = {duckdb.StatementType.SELECT}


class QueryLimitError(BackupError):
    """The query ran past its time limit or needed more memory than allowed."""


@dataclass(frozen=True)
class QueryLimits:
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    memory_limit: str = DEFAULT_MEMORY_LIMIT


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def one_read_only_statement(sql: str) -> str:
    """The statement, if `sql` is exactly one SELECT (or EXPLAIN of one); otherwise a
    UserInputError (exit 2) saying what was refused."""
    statements = _parse(sql)
    if len(statements) != 1:
        raise UserInputError(
            f"query runs exactly one SQL statement, got {len(statements)}"
            + (" (separate queries need separate runs)" if statements else "")
        )
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:
        explained = _parse(_EXPLAIN.sub("", statement.query, count=1))
        if len(explained) == 1 and explained[0].type in _READ_ONLY:
            return sql
        kind = explained[0].type if len(explained) == 1 else kind
    if kind not in _READ_ONLY:
        raise UserInputError(
            f"query runs read-only statements (SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, "
            f"EXPLAIN), not {kind.name}: {_first_words(statement.query)}"
        )
    return sql


def _parse(sql: str) -> list[duckdb.Statement]:
    try:
        return list(duckdb.connect(":memory:").extract_statements(sql))
    except duckdb.Error as e:
        raise UserInputError((str(e).splitlines() or ["cannot parse the SQL"])[0]) from None


def _first_words(query: str, limit: int = 40) -> str:
    text = " ".join(query.split())
    return text if len(text) <= limit else f"{text[:limit]}..."


def set_memory_limit(con: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
    """DuckDB's memory_limit for the session (before its configuration is locked)."""
    try:
        con.execute("SET memory_limit = ?", [memory_limit])
    except duckdb.Error as e:
        reason = (str(e).splitlines() or ["invalid"])[0]
        raise UserInputError(
            f"--memory-limit {memory_limit!r}: {reason} (e.g. 512MB, 2GB, 50%)"
        ) from None


@contextmanager
def time_limit(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupts what runs on `con` once `seconds` have passed; the interrupted statement
    ends in a QueryLimitError (exit 1)."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException:
        if not fired.is_set():
            raise
        raise QueryLimitError(
            f"query stopped after its time limit of {seconds:g} s (--timeout); narrow it, "
            "or allow more with --timeout"
        ) from None
    finally:
        timer.cancel()


def out_of_memory(memory_limit: str, error: duckdb.OutOfMemoryException) -> QueryLimitError:
    first = (str(error).splitlines() or ["out of memory"])[0]
    return QueryLimitError(
        f"query needs more memory than its limit of {memory_limit} (--memory-limit): {first}"
    )
