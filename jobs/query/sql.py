"""A read-only DuckDB session over a table's backup: the views `items` and `snapshots`."""

from __future__ import annotations

import contextlib
import string
import tempfile
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from backup_lambda.errors import CorruptSnapshotError, NotFoundError
from compaction import catalog
from compaction.columns import Stats, choose_columns, collect
from compaction.fallback import damaged_snapshot
from compaction.filecache import FileCache
from compaction.manifest import Column, Manifest, SkippedVersion
from compaction.snapshot_io import empty_typed_table, read_spill, write_parquet, write_spill
from compaction.state import chosen_snapshot, plan_state, read_state

_SYSTEM = [
    "__key_hash",
    "__event_time",
    "__event_name",
    "__sequence_number",
    "__version_id",
    "__written_at",
]


def quote(name: str) -> str:
    """A SQL identifier for any attribute name (keywords, spaces, quotes)."""
    return '"' + name.replace('"', '""') + '"'


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _fold(name: str) -> str:
    """How DuckDB compares identifiers: ASCII letters without case, all else exactly."""
    return name.translate(_ASCII_LOWER)


def _items_select(data_columns: list[str], columns: list[str]) -> str:
    """The `items` select list. Columns are taken by position (#n): DuckDB binds names
    without case, so by name "status" could read the attribute "Status", and "__item" an
    attribute "__Item". Attributes whose names DuckDB cannot tell apart from another
    column are no typed column (they stay in `__item`, which keeps them apart)."""
    position = {name: i + 1 for i, name in enumerate(data_columns)}
    taken = Counter(_fold(name) for name in [*columns, "__item", *_SYSTEM])
    typed = [c for c in columns if taken[_fold(c)] == 1]
    return ", ".join(
        [
            *(f"#{position[c]} AS {quote(c)}" for c in typed),
            f"CAST(#{position['__item']} AS JSON) AS __item",
            *(f"#{position[c]} AS {c}" for c in _SYSTEM),
        ]
    )


def snapshots_table(manifests: list[Manifest]) -> pa.Table:
    return pa.table(
        {
            "id": [m.id for m in manifests],
            "as_of": pa.array([m.as_of_us for m in manifests], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
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
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._table = table
        self.con = duckdb.connect(":memory:")
        self.source: str = ""
        self.skipped: list[SkippedVersion] = []  # unreadable versions skipped (--skip-corrupt)
        self._cleanup = contextlib.ExitStack()
        if cache is None:
            cache = FileCache()
            self._cleanup.callback(cache.close)
        self._cache = cache
        self._download_concurrency = download_concurrency

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
        """Closes DuckDB, then removes the local files an --as-of session wrote."""
        self.con.close()
        self._cleanup.close()

    def open_latest(self, snapshot: str | None = None) -> None:
        """`items` = the newest committed snapshot (or the one `snapshot` names), its
        Parquet files downloaded at their pinned versions and verified."""
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
            paths = self._cache.get_all(
                self._s3, self._bucket, chosen.files_of("parquet"), self._download_concurrency
            )
        except CorruptSnapshotError as e:
            raise damaged_snapshot(
                self._s3, self._bucket, self._prefix, self._table, chosen, e, "query"
            ) from e
        columns = list(chosen.columns)
        if paths:
            data: Any = ds.dataset([str(p) for p in paths], format="parquet")
        else:
            data = empty_typed_table(columns)
        self._register(data, [c.name for c in columns], manifests)
        self.source = f"snapshot {chosen.id}"

    def open_as_of(
        self,
        as_of_us: int,
        read_concurrency: int = 32,
        *,
        snapshot: str | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        """`items` = exactly the state at the time: a snapshot plus later changes.

        The state is read one unit at a time into local Arrow spills (collecting column
        statistics on the way), then each spill becomes a local Parquet file with the
        common schema: memory holds one unit, not the table. The files are removed by
        close(). `snapshot` names the base (else the newest as of the time)."""
        plan = plan_state(
            self._s3, self._bucket, self._prefix, self._table, as_of_us, base_id=snapshot
        )
        work = Path(self._cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ddb-query-")))
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
        data: Any = (
            ds.dataset([str(f) for f in files], format="parquet")
            if files
            else empty_typed_table(columns)
        )
        self._register(data, [c.name for c in columns], self._manifests())
        self.source = (
            f"snapshot {plan.base.id} + changes" if plan.base else "object versions (no snapshot)"
        )

    def _manifests(self) -> list[Manifest]:
        return catalog.committed_snapshots(self._s3, self._bucket, self._prefix, self._table)

    def _register(self, data: Any, columns: list[str], manifests: list[Manifest]) -> None:
        self.con.register("__items_data", data)
        self.con.register("__snapshots_data", snapshots_table(manifests))
        # every identifier goes through quote()
        select = _items_select(list(data.schema.names), columns)
        self.con.execute(f"CREATE VIEW items AS SELECT {select} FROM __items_data")  # noqa: S608
        self.con.execute("CREATE VIEW snapshots AS SELECT * FROM __snapshots_data")
        # From here on the query can read only the registered data: no files, no URLs,
        # no extensions, no Python variables, and no way to switch that back on.
        self.con.execute("SET python_enable_replacements = false")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
