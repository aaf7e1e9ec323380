"""What `query` lets a statement do: exactly one read-only statement, a time limit and a
memory limit (the CLI side is in test_query_cli.py)."""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from backup_lambda.errors import UserInputError
from jobs.query.limits import (
    QueryLimitError,
    one_read_only_statement,
    out_of_memory,
    set_memory_limit,
    time_limit,
)

READ_ONLY = [
    "SELECT count(*) FROM items",
    "select 1;",
    "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
    "FROM items",
    "VALUES (1), (2)",
    "DESCRIBE items",
    "SHOW TABLES",
    "SUMMARIZE items",
    "EXPLAIN SELECT * FROM items",
    "EXPLAIN ANALYZE SELECT * FROM items",
    "SELECT ';' AS semicolon -- a comment; with a semicolon",
]


@pytest.mark.parametrize("sql", READ_ONLY)
def test_one_read_only_statement_passes(sql: str) -> None:
    assert one_read_only_statement(sql) == sql


REFUSED = [
    ("SELECT 1; SELECT 2", "exactly one SQL statement, got 2"),
    ("SELECT 1; DROP VIEW items", "exactly one SQL statement, got 2"),
    ("", "exactly one SQL statement, got 0"),
    ("-- only a comment", "exactly one SQL statement, got 0"),
    ("CREATE TABLE t AS SELECT * FROM items", "not CREATE"),
    ("CREATE VIEW v AS SELECT 1", "not CREATE"),
    ("INSERT INTO t VALUES (1)", "not INSERT"),
    ("UPDATE t SET a = 1", "not UPDATE"),
    ("DELETE FROM t", "not DELETE"),
    ("DROP VIEW items", "not DROP"),
    ("ATTACH 'x.db' AS other", "not ATTACH"),
    ("DETACH other", "not DETACH"),
    ("COPY items TO 'out.csv'", "not COPY"),
    ("EXPORT DATABASE 'dir'", "not EXPORT"),
    ("INSTALL httpfs", "not LOAD"),
    ("LOAD httpfs", "not LOAD"),
    ("SET memory_limit = '100GB'", "not SET"),
    ("RESET memory_limit", "not SET"),
    ("PRAGMA version", "not PRAGMA"),
    ("CALL pragma_version()", "not CALL"),
    ("CHECKPOINT", "not CALL"),
    ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "not INSERT"),
    ("EXPLAIN CREATE TABLE t (a INT)", "not CREATE"),
    ("SELEC 1", "Parser Error"),
]


@pytest.mark.parametrize(("sql", "message"), REFUSED)
def test_other_statements_are_refused_in_one_line(sql: str, message: str) -> None:
    with pytest.raises(UserInputError) as refused:
        one_read_only_statement(sql)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_time_limit_interrupts_a_running_statement() -> None:
    con = duckdb.connect()
    started = time.monotonic()
    limit = pytest.raises(QueryLimitError, match=r"time limit of 0\.3 s \(--timeout\)")
    with limit, time_limit(con, 0.3):
        con.execute("SELECT count(*) FROM range(1000000000000) a").fetchall()
    assert time.monotonic() - started < 10


def test_time_limit_leaves_a_quick_statement_and_other_interrupts_alone() -> None:
    con = duckdb.connect()
    with time_limit(con, 30):
        assert con.execute("SELECT 42").fetchall() == [(42,)]
    # An interrupt the timer did not cause (Ctrl-C) is not reported as the time limit.
    ctrl_c = threading.Timer(0.2, con.interrupt)
    ctrl_c.start()
    with pytest.raises(duckdb.InterruptException), time_limit(con, 30):
        con.execute("SELECT count(*) FROM range(1000000000000) a").fetchall()


def test_memory_limit_is_duckdbs_and_a_bad_one_is_input_error() -> None:
    con = duckdb.connect()
    set_memory_limit(con, "20MB")
    with pytest.raises(duckdb.OutOfMemoryException) as oom:
        con.execute("SELECT string_agg(i::VARCHAR, ',') FROM range(20000000) t(i)").fetchall()
    error = out_of_memory("20MB", oom.value)
    assert str(error).startswith("query needs more memory than its limit of 20MB")
    assert "\n" not in str(error)
    with pytest.raises(UserInputError, match="--memory-limit 'lots'"):
        set_memory_limit(con, "lots")
