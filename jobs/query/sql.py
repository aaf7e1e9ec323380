"""A read-only DuckDB session over a table's backup: the views `items` and `snapshots`.

`items` reads local copies of the snapshot files, each downloaded at the version its
manifest pins and verified (compaction.filecache); over a delta's chain it is a merge on
read (jobs/query/views.py).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from backup_lambda.errors import CorruptSnapshotError, NotFoundError
from compaction import catalog
from compaction.chain import Chain, load_chain
from compaction.columns import Stats, choose_columns, collect, is_system_name
from compaction.fallback import damaged_snapshot
from compaction.filecache import FileCache
from compaction.manifest import Column, KeyAttribute, Manifest, SkippedVersion
from compaction.rowformat import DATA_LAYOUT
from compaction.snapshot_io import empty_typed_table, read_spill, write_parquet, write_spill
from compaction.state import chosen_snapshot, plan_state, read_state
from jobs.query.limits import set_memory_limit
from jobs.query.views import Level, items_sql, literal, quote

__all__ = ["SqlSession", "quote", "snapshots_table"]


def snapshots_table(manifests: list[Manifest]) -> pa.Table:
    return pa.table(
        {
            "id": [m.id for m in manifests],
            "as_of": pa.array([m.as_of_us for m in manifests], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "kind": [m.kind for m in manifests],
            "parent": [m.parent for m in manifests],
            "depth": [m.depth for m in manifests],
            "items": [m.counts.items for m in manifests],
            "bytes": [m.total_bytes for m in manifests],
            "base": [m.base for m in manifests],
            "built_at": pa.array([m.built_at_us for m in manifests], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
        }
    )


class SqlSession:
    """Views over one table's backup, then external access is locked off for the query.

    Snapshot files are read at the versions their manifest pins and verified
    (compaction.verified), into `cache` (a FileCache: by default a private folder removed
    by close(); the CLI's lives in the user's cache folder, so repeated queries of one
    snapshot download nothing)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str,
        table: str,
        cache: FileCache | None = None,
        download_concurrency: int = 8,
        memory_limit: str | None = None,
    ) -> None:
        """`memory_limit` (DuckDB's, e.g. "2GB"; None: DuckDB's default) bounds the query;
        what can spill goes to the session's own temporary folder."""
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._table = table
        self.con = duckdb.connect(":memory:")
        self.source: str = ""
        self.change_source: str | None = None  # --as-of: how changes after the base were found
        self.as_of_us: int | None = None  # the time the view `items` is the state at
        self.skipped: list[SkippedVersion] = []  # unreadable versions skipped (--skip-corrupt)
        self._cleanup = contextlib.ExitStack()
        if cache is None:
            cache = FileCache()
            self._cleanup.callback(cache.close)
        self._cache = cache
        self._download_concurrency = download_concurrency
        self._paths: list[str] = []  # the only files the query may read
        if memory_limit is not None:
            set_memory_limit(self.con, memory_limit)
            spill = self._workdir()
            self.con.execute(f"SET temp_directory = {literal(str(spill))}")

    def __enter__(self) -> SqlSession:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes DuckDB, then removes the local files the session wrote."""
        self.con.close()
        self._cleanup.close()

    def _workdir(self) -> Path:
        return Path(self._cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ddb-query-")))

    def open_latest(self, snapshot: str | None = None) -> None:
        """`items` = the newest committed snapshot (or the one `snapshot` names), a delta's
        chain merged on read, from its files downloaded at their pinned versions and
        verified."""
        manifests = self._manifests()
        if snapshot is not None:
            chosen = chosen_snapshot(
                self._s3, self._bucket, self._prefix, self._table, snapshot, None
            )
        elif manifests:
            chosen = manifests[-1]
        else:
            raise NotFoundError(
                f"no committed snapshot of table {self._table!r} (run `ddb-backup compact`, "
                "or pass --as-of to query the object versions)"
            )
        try:
            chain = load_chain(self._s3, self._bucket, self._prefix, self._table, chosen)
            levels = self._levels(chain)
        except CorruptSnapshotError as e:
            raise damaged_snapshot(
                self._s3, self._bucket, self._prefix, self._table, chosen, e, "query"
            ) from e
        self._register(levels, list(chosen.columns), manifests, chosen.key_schema)
        self.as_of_us = chosen.as_of_us
        self.source = (
            f"snapshot {chosen.id}"
            if len(chain) == 1
            else f"snapshot {chosen.id} (a delta: chain of {len(chain)} from {chain.ids[0]})"
        )

    def open_as_of(
        self,
        as_of_us: int,
        read_concurrency: int = 32,
        *,
        snapshot: str | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        """`items` = exactly the state at the time: a snapshot (chain) plus later changes.

        The state is read one unit at a time into local Arrow spills (collecting column
        statistics on the way), then each spill becomes a local Parquet file with the
        common schema: memory holds one unit, not the table. The files are removed by
        close(). `snapshot` names the base (else the newest as of the time)."""
        plan = plan_state(
            self._s3, self._bucket, self._prefix, self._table, as_of_us, base_id=snapshot
        )
        work = self._workdir()
        stats: Stats = {}
        spills: list[Path] = []
        first_keys: list[str] = []
        try:
            for state in read_state(self._s3, plan, read_concurrency, skip_corrupt=skip_corrupt):
                self.skipped += state.skipped
                if not state.rows:
                    continue
                collect((r.change.new_image or {} for r in state.rows), stats)
                first_keys = first_keys or sorted(state.rows[0].change.keys)
                spills.append(work / f"{len(spills):05d}.arrow")
                write_spill(spills[-1], state.rows)
        except CorruptSnapshotError as e:
            if plan.base is None:
                raise
            raise damaged_snapshot(
                self._s3, self._bucket, self._prefix, self._table, plan.base, e, "query"
            ) from e
        keys = [k.name for k in plan.base.key_schema] if plan.base else []
        columns = [Column(n, t) for n, t in choose_columns(stats, keys or first_keys)]
        files = [spill.with_suffix(".parquet") for spill in spills]
        for spill, file in zip(spills, files, strict=True):
            write_parquet(file, read_spill(spill), columns)
            spill.unlink()
        level = self._level("asof", [str(f) for f in files], [], columns, DATA_LAYOUT)
        key_schema = plan.base.key_schema if plan.base else ()
        self._register([level], columns, self._manifests(), key_schema)
        self.change_source = plan.source.kind
        self.as_of_us = as_of_us
        self.source = (
            f"snapshot {plan.base.id} + changes by {plan.source.kind}"
            if plan.base
            else f"every change by {plan.source.kind} (no snapshot)"
        )

    def _manifests(self) -> list[Manifest]:
        return catalog.committed_snapshots(self._s3, self._bucket, self._prefix, self._table)

    def _levels(self, chain: Chain) -> list[Level]:
        """Every level's files, downloaded (in parallel, verified) into the cache."""
        wanted = [
            f
            for level in chain.levels
            for f in level.files
            if f.format in {"parquet", "tombstones"}
        ]
        paths = self._cache.get_all(self._s3, self._bucket, wanted, self._download_concurrency)
        local = {f.key: str(p) for f, p in zip(wanted, paths, strict=True)}
        return [
            self._level(
                f"l{i}",
                [local[f.key] for f in level.files_of("parquet")],
                [local[f.key] for f in level.files_of("tombstones")],
                list(level.columns),
                level.data_layout,
            )
            for i, level in enumerate(chain.levels)
        ]

    def _level(
        self, name: str, data: list[str], tombstones: list[str], columns: list[Column], layout: int
    ) -> Level:
        self._paths += [*data, *tombstones]
        relation = f"read_parquet([{', '.join(literal(p) for p in data)}])" if data else None
        names = pq.read_schema(data[0]).names if data else []
        keys = None
        if layout >= 2 and (data or tombstones):
            view = f"__keys_{name}"
            parts = [
                f"SELECT __key FROM read_parquet([{literal(p)}])"  # noqa: S608 - quoted paths
                for p in [*data, *tombstones]
            ]
            self.con.execute(f"CREATE VIEW {view} AS {' UNION ALL '.join(parts)}")
            keys = view
        return Level(relation, names, columns, layout, keys)

    def _empty(self, columns: list[Column]) -> Level:
        """A level of no rows with the view's schema (a table with no items)."""
        path = self._workdir() / "empty.parquet"
        pq.write_table(empty_typed_table(columns), str(path))
        self._paths.append(str(path))
        return Level(
            f"read_parquet([{literal(str(path))}])",
            pq.read_schema(str(path)).names,
            columns,
            DATA_LAYOUT,
        )

    def _register(
        self,
        levels: list[Level],
        columns: list[Column],
        manifests: list[Manifest],
        key_schema: Sequence[KeyAttribute] = (),
    ) -> None:
        self.con.register("__snapshots_data", snapshots_table(manifests))
        if all(level.data is None for level in levels):
            # No items: the key attributes are columns all the same (a full snapshot of an
            # emptied table has no rows to type them by), so that a query naming them
            # answers no rows, as it does over a chain.
            columns = _with_keys(columns, key_schema)
            levels = [*levels, self._empty(columns)]
        self.con.execute(f"CREATE VIEW items AS {items_sql(levels, columns)}")
        self.con.execute("CREATE VIEW snapshots AS SELECT * FROM __snapshots_data")
        # From here on the query can read only the registered data and the session's own
        # verified local copies: no other files, no URLs, no extensions, no Python
        # variables, and no way to switch that back on.
        self.con.execute("SET python_enable_replacements = false")
        self.con.execute(f"SET allowed_paths = [{', '.join(literal(p) for p in self._paths)}]")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")


_KEY_COLUMN_TYPES = {"S": "varchar", "N": "decimal(38,0)", "B": "blob"}


def _with_keys(columns: list[Column], key_schema: Sequence[KeyAttribute]) -> list[Column]:
    """`columns` with the key attributes they lack first, typed by the key schema."""
    names = {c.name for c in columns}
    missing = [
        Column(k.name, _KEY_COLUMN_TYPES[k.attribute_type])
        for k in key_schema
        if k.name not in names
        and k.attribute_type in _KEY_COLUMN_TYPES
        and not is_system_name(k.name)
    ]
    return [*missing, *columns]
