"""Snapshot files: spilling rows, writing Parquet, JSON lines and tombstones, reading rows
back (data layout 2, and layout 1 as release 1 wrote it), uploading with pinned versions."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from pyarrow import ipc

from backup_lambda.ddbjson import Item
from backup_lambda.errors import CorruptSnapshotError
from backup_lambda.layout import Change, canonical_key_bytes
from compaction import rowformat, verified
from compaction.fold import Row
from compaction.manifest import Column, DataFile, Manifest
from compaction.rowformat import TIMESTAMP, arrow_type, item_text
from compaction.s3errors import translate

__all__ = ["arrow_type", "item_json", "item_text"]
item_json = item_text  # the name release 1 used

# A unit's rows between the phases of a run (local disk, or the run's folder on S3), in
# `__key` order: live rows carry `__item`; removals (tombstones) have none. A delta's spill
# also says whether each changed key was live in the parent (`__parent_live`).
_SPILL_SCHEMA = pa.schema(
    [
        ("__key", pa.string()),
        ("__key_hash", pa.string()),
        ("__keys", pa.string()),
        ("__item", pa.string()),
        ("__event_time", pa.int64()),
        ("__event_name", pa.string()),
        ("__sequence_number", pa.string()),
        ("__version_id", pa.string()),
        ("__written_at", pa.int64()),
        ("__parent_live", pa.bool_()),
    ]
)


def key_text(row: Row) -> str:
    if row.key_text is not None:
        return row.key_text
    return canonical_key_bytes(row.change.keys).decode("utf-8")


def rows_table(rows: Iterable[Row], parent_live: Collection[str] | None = None) -> pa.Table:
    """Rows (live and removed) as a spill table in canonical key order."""
    keyed = sorted(((key_text(r), r) for r in rows), key=lambda pair: pair[0])
    return pa.table(
        {
            "__key": [k for k, _ in keyed],
            "__key_hash": [r.key_hash for _, r in keyed],
            "__keys": [item_text(r.change.keys) for _, r in keyed],
            "__item": [
                None if r.change.is_removal else item_text(r.change.new_image or {})
                for _, r in keyed
            ],
            "__event_time": [r.change.event_time_us for _, r in keyed],
            "__event_name": [r.change.event_name for _, r in keyed],
            "__sequence_number": [r.change.sequence_number for _, r in keyed],
            "__version_id": [r.version_id for _, r in keyed],
            "__written_at": [r.written_at_us for _, r in keyed],
            "__parent_live": [
                None if parent_live is None else r.key_hash in parent_live for _, r in keyed
            ],
        },
        schema=_SPILL_SCHEMA,
    )


def write_spill(
    path: Path, rows: Iterable[Row], parent_live: Collection[str] | None = None
) -> None:
    """Rows of one unit, kept on disk between the phases of a run (memory per unit)."""
    table = rows_table(rows, parent_live)
    with ipc.new_file(str(path), _SPILL_SCHEMA) as writer:
        writer.write_table(table)


def read_spill(path: Path) -> pa.Table:
    with ipc.open_file(str(path)) as reader:
        return reader.read_all()


def live_rows(spill: pa.Table) -> pa.Table:
    return spill.filter(pc.is_valid(spill.column("__item")))


def removed_rows(spill: pa.Table) -> pa.Table:
    return spill.filter(pc.is_null(spill.column("__item")))


def typed_table(spill: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """The live rows of a spill as a layout-2 Parquet table (typed columns, then system)."""
    live = live_rows(spill)
    return rowformat.encode(
        live.column("__key").to_pylist(),
        [json.loads(text) for text in live.column("__item").to_pylist()],
        live.column("__event_time").to_pylist(),
        live.column("__event_name").to_pylist(),
        live.column("__sequence_number").to_pylist(),
        columns,
    )


def empty_typed_table(columns: Sequence[Column]) -> pa.Table:
    """A table with no rows and the snapshot's schema (for a table with no items)."""
    return rowformat.encode([], [], [], [], [], columns)


def write_parquet(path: Path, spill: pa.Table, columns: Sequence[Column]) -> int:
    """The unit's Parquet file (data layout 2) from the spill's live rows."""
    return rowformat.write(path, typed_table(spill, columns))


def write_export(path: Path, spill: pa.Table) -> int:
    """A full snapshot's export: DynamoDB's full export (and ImportTable) format, one
    {"Item": {...}} per line, gzip."""
    count = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
        for text in live_rows(spill).column("__item").to_pylist():
            out.write('{"Item":')
            out.write(text)
            out.write("}\n")
            count += 1
    return count


def write_incremental_export(path: Path, spill: pa.Table) -> int:
    """A delta's export: DynamoDB's incremental export format (view type NEW_IMAGE), one
    line per key changed since the parent with its newest image, or only its keys when it
    was removed. A key created and removed since the parent has no line (as in AWS's)."""
    count = 0
    columns = spill.select(["__keys", "__item", "__event_time", "__parent_live"]).to_pylist()
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
        for row in columns:
            if row["__item"] is None and not row["__parent_live"]:
                continue
            out.write('{"Metadata":{"WriteTimestampMicros":{"N":"')
            out.write(str(row["__event_time"]))
            out.write('"}},"Keys":')
            out.write(row["__keys"])
            if row["__item"] is not None:
                out.write(',"NewImage":')
                out.write(row["__item"])
            out.write("}\n")
            count += 1
    return count


_TOMBSTONE_SCHEMA = pa.schema(
    [
        ("__key", pa.string()),
        ("__keys", pa.string()),
        ("__event_time", TIMESTAMP),
        ("__sequence_number", pa.string()),
    ]
)


def write_tombstones(path: Path, spill: pa.Table) -> int:
    """Keys whose winning change is a removal, with that change's order (no image)."""
    removed = removed_rows(spill)
    table = pa.table(
        {
            "__key": removed.column("__key"),
            "__keys": removed.column("__keys"),
            "__event_time": removed.column("__event_time").cast(TIMESTAMP),
            "__sequence_number": removed.column("__sequence_number"),
        },
        schema=_TOMBSTONE_SCHEMA,
    )
    pq.write_table(table, str(path), compression="zstd", compression_level=rowformat.ZSTD_LEVEL)
    return int(table.num_rows)


def file_digests(path: Path) -> tuple[str, str]:
    """(hex SHA-256, base64 MD5) of a file, in one pass."""
    sha = hashlib.sha256()
    md5 = hashlib.md5()  # noqa: S324 - a transfer checksum (S3's Content-MD5), not security
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), base64.b64encode(md5.digest()).decode("ascii")


def sha256_file(path: Path) -> str:
    return file_digests(path)[0]


# One PutObject up to this size (S3 checks Content-MD5 on arrival); larger files go up in
# parallel parts, and their version id is read back (the run's folder is its own).
SINGLE_PUT_BYTES = 256 * 1024 * 1024


def upload(s3: Any, bucket: str, path: Path, key: str, fmt: str, unit: str, rows: int) -> DataFile:
    """Put a snapshot file; the DataFile pins the S3 version written, its size and digests."""
    sha256, md5 = file_digests(path)
    size = path.stat().st_size
    try:
        if size <= SINGLE_PUT_BYTES:
            with path.open("rb") as body:
                response = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=md5)
        else:
            s3.upload_file(str(path), bucket, key)
            response = s3.head_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
    version = response.get("VersionId")
    return DataFile(
        key=key,
        format=fmt,
        unit=unit,
        rows=rows,
        bytes=size,
        sha256=sha256,
        version_id=version if version and version != "null" else None,
        md5=md5,
    )


def files_for(manifest: Manifest, unit: str, fmt: str = "parquet") -> list[DataFile]:
    """The snapshot's files of `fmt` that may hold keys of `unit` (shard sizes may differ)."""
    return [f for f in manifest.files_of(fmt) if f.unit.startswith(unit) or unit.startswith(f.unit)]


base_files_for = files_for  # the name release 1 used


# Reading rows back. `items=False` reads only what a fold needs to order changes (no
# images): such rows must never be written out as items.
V1_ORDER = ["__key_hash", "__event_time", "__event_name", "__sequence_number"]
V1_PROVENANCE = ["__version_id", "__written_at"]


def data_columns(manifest: Manifest, items: bool) -> list[str] | None:
    """The Parquet columns to read (None: all)."""
    if manifest.data_layout >= 2:
        return None if items else rowformat.ORDER_COLUMNS
    return [*V1_ORDER, *V1_PROVENANCE, "__item"] if items else [*V1_ORDER, *V1_PROVENANCE]


def tombstone_columns(manifest: Manifest) -> list[str]:
    if manifest.data_layout >= 2:
        return ["__key", "__keys", "__event_time", "__sequence_number"]
    return ["__key_hash", "__keys", "__event_time", "__sequence_number", *V1_PROVENANCE]


def data_rows(
    table: pa.Table, manifest: Manifest, *, unit: str = "", wanted: Collection[str] | None = None
) -> list[Row]:
    """Live rows of one Parquet data file of `manifest` whose key hash starts with `unit`
    (and, when given, is in `wanted`); with images if the table has them."""
    if manifest.data_layout < 2:
        return _v1_rows(table, manifest, unit, wanted)
    keys = table.column("__key").to_pylist()
    hashes = [rowformat.key_hash_of(k) for k in keys]
    picked = [
        i for i, d in enumerate(hashes) if d.startswith(unit) and (wanted is None or d in wanted)
    ]
    if not picked:
        return []
    if len(picked) < table.num_rows:
        table = table.take(pa.array(picked, pa.int64()))
        keys = [keys[i] for i in picked]
        hashes = [hashes[i] for i in picked]
    with_items = "__rest" in table.column_names
    items: list[Item | None] = (
        list(rowformat.decode_items(table, manifest.columns))
        if with_items
        else [None] * table.num_rows
    )
    key_names = [k.name for k in manifest.key_schema]
    times = rowformat.times(table, "__event_time")
    names = table.column("__event_name").to_pylist()
    sequences = table.column("__sequence_number").to_pylist()
    rows = []
    for i, item in enumerate(items):
        change = Change(
            table=manifest.table,
            keys={n: item[n] for n in key_names if n in item} if item is not None else {},
            event_name=names[i],
            event_id="",
            sequence_number=sequences[i],
            event_time_us=times[i],
            new_image=item,
        )
        rows.append(Row(hashes[i], change, "", 0, from_snapshot=True, key_text=keys[i]))
    return rows


def tombstone_rows(
    table: pa.Table, manifest: Manifest, *, unit: str = "", wanted: Collection[str] | None = None
) -> list[Row]:
    """Removed keys of one tombstone file (rows whose change is a removal)."""
    v2 = manifest.data_layout >= 2
    records = table.to_pylist()
    times = rowformat.times(table, "__event_time")
    written = rowformat.times(table, "__written_at") if not v2 else [0] * len(records)
    rows = []
    for i, record in enumerate(records):
        digest = rowformat.key_hash_of(record["__key"]) if v2 else record["__key_hash"]
        if not digest.startswith(unit) or (wanted is not None and digest not in wanted):
            continue
        change = Change(
            table=manifest.table,
            keys=json.loads(record["__keys"]),
            event_name="REMOVE",
            event_id="",
            sequence_number=record["__sequence_number"],
            event_time_us=times[i],
            new_image=None,
        )
        rows.append(
            Row(
                digest,
                change,
                "" if v2 else record["__version_id"],
                written[i],
                from_snapshot=True,
                key_text=record["__key"] if v2 else None,
            )
        )
    return rows


def _v1_rows(
    table: pa.Table, manifest: Manifest, unit: str, wanted: Collection[str] | None
) -> list[Row]:
    key_names = [k.name for k in manifest.key_schema]
    hashes = table.column("__key_hash").to_pylist()
    times = rowformat.times(table, "__event_time")
    written = rowformat.times(table, "__written_at")
    names = table.column("__event_name").to_pylist()
    sequences = table.column("__sequence_number").to_pylist()
    versions = table.column("__version_id").to_pylist()
    texts = (
        table.column("__item").to_pylist()
        if "__item" in table.column_names
        else [None] * table.num_rows
    )
    rows = []
    for i, digest in enumerate(hashes):
        if not digest.startswith(unit) or (wanted is not None and digest not in wanted):
            continue
        text = texts[i]
        item = json.loads(text) if text is not None else None
        change = Change(
            table=manifest.table,
            keys={n: item[n] for n in key_names if n in item} if item is not None else {},
            event_name=names[i],
            event_id="",
            sequence_number=sequences[i],
            event_time_us=times[i],
            new_image=item,
        )
        rows.append(Row(digest, change, versions[i], written[i], from_snapshot=True))
    return rows


def read_table(s3: Any, bucket: str, data_file: DataFile, columns: list[str] | None) -> pa.Table:
    """The file at its pinned version, verified against the manifest (compaction.verified),
    as a table of `columns` (None: all)."""
    body = verified.fetch(s3, bucket, data_file)
    try:
        return pq.read_table(pa.BufferReader(body), columns=columns)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise CorruptSnapshotError(
            f"{verified.where(bucket, data_file)}: unreadable Parquet ({e})".splitlines()[0]
        ) from e


def read_base_rows(
    s3: Any, bucket: str, manifest: Manifest, unit: str, *, tombstones: bool = False
) -> dict[str, Row]:
    """One snapshot's own live rows whose key hash starts with `unit` (with `tombstones`,
    also its removals), from its files alone: for a delta, only what it changed (a chain
    is read with compaction.chain)."""
    rows: dict[str, Row] = {}
    for data_file in files_for(manifest, unit):
        table = read_table(s3, bucket, data_file, data_columns(manifest, True))
        rows.update((r.key_hash, r) for r in data_rows(table, manifest, unit=unit))
    for data_file in files_for(manifest, unit, "tombstones") if tombstones else []:
        table = read_table(s3, bucket, data_file, tombstone_columns(manifest))
        rows.update((r.key_hash, r) for r in tombstone_rows(table, manifest, unit=unit))
    return rows
