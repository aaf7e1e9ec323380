"""A Python API for notebooks: a table's state as of a time (or a snapshot) as a DuckDB
relation, a pyarrow Table or a pyarrow Dataset.

    from jobs.api import open_table

    with open_table("acme-ddb-backups", "orders", as_of="2026-11-28T14:00:00Z") as orders:
        orders.relation().filter("status = 'paid'").aggregate("sum(total)").show()
        rows = orders.sql("SELECT customer, total FROM items").fetchall()
        table = orders.to_arrow()          # pyarrow.Table
        dataset = orders.dataset()         # pyarrow.dataset.Dataset

It is `ddb-backup query`'s machinery (jobs.query.sql.SqlSession): the same view `items`,
with the same exactness (`as_of`: exactly the state at that time, a snapshot plus the
changes after it; without it, the newest snapshot as it is), read from files verified
against their manifests. The connection is read-only and reads only those files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from backup_lambda.errors import UserInputError
from backup_lambda.layout import format_time_us
from compaction.filecache import FileCache, default_cache_dir
from jobs.cli.args import parse_time
from jobs.cli.clients import AwsSettings, make_client
from jobs.query.sql import SqlSession

__all__ = ["TableState", "open_table"]

Time = str | int | float | dt.datetime


class TableState:
    """One table's state, open until close() (or the end of a `with` block): relations and
    results made from it are read before then."""

    def __init__(self, session: SqlSession, table: str) -> None:
        self._session = session
        self.table = table

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection holding the views `items` and `snapshots`."""
        return self._session.con

    @property
    def as_of(self) -> dt.datetime:
        """The time the state is at (a snapshot's as-of, or the time asked for)."""
        micros = self._session.as_of_us or 0
        return dt.datetime.fromtimestamp(micros // 1_000_000, dt.UTC).replace(
            microsecond=micros % 1_000_000
        )

    @property
    def source(self) -> str:
        """Which snapshot (and change source) the state was read from."""
        return self._session.source

    def relation(self) -> duckdb.DuckDBPyRelation:
        """The view `items`: one row per live item, typed columns and the lossless `__item`."""
        return self._session.con.table("items")

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """A relation of SQL over the views `items` and `snapshots`."""
        return self._session.con.sql(query)

    def to_arrow(self) -> pa.Table:
        """The items as a pyarrow Table (read into memory)."""
        return self.relation().to_arrow_table()

    def dataset(self) -> ds.Dataset:
        """The items as a pyarrow Dataset (of the Table: read into memory)."""
        return ds.dataset(self.to_arrow())

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> TableState:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        when = format_time_us(self._session.as_of_us or 0)
        return f"<TableState {self.table} as of {when}: {self.source}>"


def _micros(when: Time) -> int:
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise UserInputError(f"as_of {when!r} has no time zone: use an aware datetime")
        return parse_time(when.isoformat(), "as_of")
    if isinstance(when, bool):
        raise UserInputError(f"as_of {when!r} is not a time")
    return parse_time(str(when), "as_of")


def open_table(
    bucket: str,
    table: str,
    *,
    prefix: str = "",
    as_of: Time | None = None,
    snapshot: str | None = None,
    s3: Any | None = None,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    cache_dir: str | Path | None = None,
    skip_corrupt: bool = False,
    memory_limit: str | None = None,
) -> TableState:
    """The state of `table` backed up in `bucket`: exactly as of `as_of` (ISO-8601 with an
    offset, epoch seconds, or an aware datetime), starting from `snapshot` when given; or,
    without `as_of`, the snapshot `snapshot` (default: the newest) as it is. `s3` is a
    boto3 S3 client (default: one from `profile`, `region`, `endpoint_url` and the usual
    boto3 settings). Snapshot files are cached in `cache_dir` (default: the CLI's cache)."""
    micros = None if as_of is None else _micros(as_of)
    client = s3 or make_client(
        "s3", AwsSettings(endpoint_url=endpoint_url, profile=profile, region=region)
    )
    cache = FileCache(Path(cache_dir).expanduser() if cache_dir else default_cache_dir())
    session = SqlSession(client, bucket, prefix, table, cache=cache, memory_limit=memory_limit)
    try:
        if micros is None:
            session.open_latest(snapshot)
        else:
            session.open_as_of(micros, snapshot=snapshot, skip_corrupt=skip_corrupt)
    except BaseException:
        session.close()
        raise
    return TableState(session, table)
