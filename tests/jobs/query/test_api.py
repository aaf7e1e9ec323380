"""jobs.api.open_table (issue 17): a table's state as a DuckDB relation, a pyarrow Table
and Dataset, equal to what `ddb-backup query` answers for the same time or snapshot."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from backup_lambda.errors import UserInputError
from backup_lambda.layout import key_hash
from jobs.api import open_table
from tests.jobs.restore.restore_fixtures import (
    SECOND,
    TABLE,
    Backup,
    Server,
    key_of,
    now_us,
    run_cli,
    server,  # noqa: F401 - fixture
    standin_server,  # noqa: F401 - fixture
)

BUCKET = "query-api"


class Data:
    def __init__(self, backup: Backup, first: int, between: int, last: int) -> None:
        self.backup = backup
        self.first = first  # the snapshot's as-of
        self.between = between  # after some changes the snapshot does not hold
        self.last = last


@pytest.fixture(scope="module")
def data(standin_server: Server) -> Data:  # noqa: F811
    b = standin_server.backup(BUCKET)
    base = now_us() - 1800 * SECOND
    for sk in range(6):
        image = {**key_of("a", sk), "total": {"N": f"{sk}.25"}, "tags": {"SS": ["x", str(sk)]}}
        b.put(key_of("a", sk), base + sk * SECOND, image)
    first = base + 10 * SECOND
    b.compact(first)
    b.remove("a", 0, base + 20 * SECOND)
    b.item("b", 1, base + 21 * SECOND, status="new")
    b.item("a", 2, base + 22 * SECOND, status="changed")
    b.item("c", 3, base + 40 * SECOND, status="later")
    return Data(b, first, base + 30 * SECOND, base + 50 * SECOND)


def cli_items(capsys: pytest.CaptureFixture[str], server: Server, *args: str) -> dict[str, Any]:  # noqa: F811
    code, out, err = run_cli(
        capsys, server, BUCKET, "query", *args, "--format", "jsonl", "SELECT __item FROM items"
    )
    assert code == 0, err
    return by_key(json.loads(line)["__item"] for line in out.splitlines())


def by_key(items: Any) -> dict[str, Any]:
    parsed = [json.loads(i) if isinstance(i, str) else i for i in items]
    return {key_hash({"pk": i["pk"], "sk": i["sk"]}): i for i in parsed}


def api_items(state: Any) -> dict[str, Any]:
    return by_key(row[0] for row in state.sql("SELECT __item FROM items").fetchall())


@pytest.mark.parametrize("when", ["between", "last"])
def test_as_of_equals_query_as_of(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    when: str,
) -> None:
    # GIVEN a time after the snapshot WHEN the API opens the state at it
    at = getattr(data, when)
    with open_table(BUCKET, TABLE, as_of=str(at / SECOND), s3=server.s3) as state:
        mine = api_items(state)
        # THEN it is query --as-of's answer, and the definition's
        assert mine == cli_items(capsys, server, "--as-of", str(at / SECOND))
        assert mine == by_key(data.backup.oracle(at).values())
        assert state.as_of == dt.datetime.fromtimestamp(at / SECOND, dt.UTC)
        assert state.source.startswith("snapshot ")
        # and the Arrow forms hold the same rows and columns as the relation
        relation = state.relation()
        table = state.to_arrow()
        assert table.column_names == relation.columns
        assert table.num_rows == len(mine) == relation.count("*").fetchall()[0][0]
        assert state.dataset().to_table().equals(table)
        assert by_key(table.column("__item").to_pylist()) == mine


def test_newest_snapshot_equals_query(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    with open_table(BUCKET, TABLE, s3=server.s3) as state:
        assert api_items(state) == cli_items(capsys, server)
        assert api_items(state) == by_key(data.backup.oracle(data.first).values())
        totals = state.sql("SELECT sum(total) FROM items").fetchall()[0][0]
        assert str(totals) == "16.50"  # exact DECIMAL, as query's
        assert state.as_of == dt.datetime.fromtimestamp(data.first / SECOND, dt.UTC)


def test_an_aware_datetime_and_a_snapshot_id(
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    at = dt.datetime.fromtimestamp(data.between / SECOND, dt.UTC)
    with open_table(BUCKET, TABLE, s3=server.s3) as newest:
        snapshot = newest.sql("SELECT id FROM snapshots").fetchall()[0][0]
    with open_table(BUCKET, TABLE, as_of=at, snapshot=snapshot, s3=server.s3) as state:
        assert api_items(state) == by_key(data.backup.oracle(data.between).values())


@pytest.mark.parametrize(
    ("as_of", "text"),
    [
        (dt.datetime(2026, 11, 28, 14, 0), "no time zone"),
        ("1796404591000", "looks like epoch milliseconds"),
        (True, "not a time"),
    ],
)
def test_bad_times_are_refused(
    server: Server,  # noqa: F811
    data: Data,
    as_of: Any,
    text: str,
) -> None:
    with pytest.raises(UserInputError, match=text):
        open_table(BUCKET, TABLE, as_of=as_of, s3=server.s3)
