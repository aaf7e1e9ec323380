"""Snapshot files: reading a base snapshot's rows, spilling rows, writing Parquet and JSON."""

from __future__ import annotations

import base64
import decimal
import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from pyarrow import ipc

from backup_lambda.ddbjson import Item
from backup_lambda.errors import CorruptSnapshotError
from backup_lambda.layout import Change
from compaction import verified
from compaction.columns import SYSTEM_COLUMNS, typed_value
from compaction.fold import Row
from compaction.manifest import Column, DataFile, Manifest
from compaction.s3errors import translate

_SPILL_SCHEMA = pa.schema(
    [
        ("__key_hash", pa.string()),
        ("__item", pa.string()),
        ("__event_time", pa.int64()),
        ("__event_name", pa.string()),
        ("__sequence_number", pa.string()),
        ("__version_id", pa.string()),
        ("__written_at", pa.int64()),
    ]
)
_TIMESTAMP = pa.timestamp("us", tz="UTC")
BASE_COLUMNS = list(SYSTEM_COLUMNS)


def arrow_type(column_type: str) -> pa.DataType:
    if column_type == "varchar":
        return pa.string()
    if column_type == "boolean":
        return pa.bool_()
    if column_type == "blob":
        return pa.binary()
    if column_type == "double":
        return pa.float64()
    if column_type == "json":
        return pa.json_(pa.string())
    if column_type.startswith("decimal("):
        precision, scale = column_type[len("decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    raise ValueError(f"unknown column type {column_type!r}")


def item_json(item: Item) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def rows_table(rows: Sequence[Row]) -> pa.Table:
    """Rows as an untyped Arrow table: the lossless item and the system columns."""
    return pa.table(
        {
            "__key_hash": [r.key_hash for r in rows],
            "__item": [item_json(r.change.new_image or {}) for r in rows],
            "__event_time": [r.change.event_time_us for r in rows],
            "__event_name": [r.change.event_name for r in rows],
            "__sequence_number": [r.change.sequence_number for r in rows],
            "__version_id": [r.version_id for r in rows],
            "__written_at": [r.written_at_us for r in rows],
        },
        schema=_SPILL_SCHEMA,
    )


def write_spill(path: Path, rows: Sequence[Row]) -> None:
    """Rows of one unit, kept on local disk between the two phases (memory per unit)."""
    table = rows_table(rows)
    with ipc.new_file(str(path), _SPILL_SCHEMA) as writer:
        writer.write_table(table)


def read_spill(path: Path) -> pa.Table:
    with ipc.open_file(str(path)) as reader:
        return reader.read_all()


def typed_table(spill: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """Typed attribute columns, then the lossless item and metadata (the Parquet schema)."""
    items = [json.loads(text) for text in spill.column("__item").to_pylist()]
    arrays: dict[str, pa.Array] = {}
    with decimal.localcontext() as context:
        context.prec = 100
        for column in columns:
            values = [typed_value(item.get(column.name), column.type) for item in items]
            arrays[column.name] = pa.array(values, arrow_type(column.type))
    arrays["__key_hash"] = spill.column("__key_hash").combine_chunks()
    arrays["__item"] = spill.column("__item").combine_chunks()
    arrays["__event_time"] = spill.column("__event_time").combine_chunks().cast(_TIMESTAMP)
    arrays["__event_name"] = spill.column("__event_name").combine_chunks()
    arrays["__sequence_number"] = spill.column("__sequence_number").combine_chunks()
    arrays["__version_id"] = spill.column("__version_id").combine_chunks()
    arrays["__written_at"] = spill.column("__written_at").combine_chunks().cast(_TIMESTAMP)
    return pa.table(arrays)


def empty_typed_table(columns: Sequence[Column]) -> pa.Table:
    """A table with no rows and the snapshot's schema (for a table with no items)."""
    return typed_table(rows_table([]), columns)


def write_parquet(path: Path, spill: pa.Table, columns: Sequence[Column]) -> int:
    """The unit's Parquet file."""
    table = typed_table(spill, columns)
    pq.write_table(table, str(path), compression="zstd", row_group_size=100_000)
    return int(table.num_rows)


def write_export(path: Path, spill: pa.Table) -> int:
    """DynamoDB export shape: one {"Item": {...}} per line, gzip (ImportTable can load it)."""
    count = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
        for text in spill.column("__item").to_pylist():
            out.write('{"Item":')
            out.write(text)
            out.write("}\n")
            count += 1
    return count


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


TOMBSTONE_COLUMNS = [
    "__key_hash",
    "__keys",
    "__event_time",
    "__sequence_number",
    "__version_id",
    "__written_at",
]
_TOMBSTONE_SCHEMA = pa.schema(
    [
        ("__key_hash", pa.string()),
        ("__keys", pa.string()),
        ("__event_time", _TIMESTAMP),
        ("__sequence_number", pa.string()),
        ("__version_id", pa.string()),
        ("__written_at", _TIMESTAMP),
    ]
)


def write_tombstones(path: Path, rows: Sequence[Row]) -> int:
    """Keys whose winning change is a removal, with that change's order (no image)."""
    table = pa.table(
        {
            "__key_hash": [r.key_hash for r in rows],
            "__keys": [item_json(r.change.keys) for r in rows],
            "__event_time": pa.array([r.change.event_time_us for r in rows], pa.int64()).cast(
                _TIMESTAMP
            ),
            "__sequence_number": [r.change.sequence_number for r in rows],
            "__version_id": [r.version_id for r in rows],
            "__written_at": pa.array([r.written_at_us for r in rows], pa.int64()).cast(_TIMESTAMP),
        },
        schema=_TOMBSTONE_SCHEMA,
    )
    pq.write_table(table, str(path), compression="zstd")
    return int(table.num_rows)


def base_files_for(manifest: Manifest, unit: str, fmt: str = "parquet") -> list[DataFile]:
    """The base's files of `fmt` that may hold keys of `unit` (shard sizes may differ)."""
    return [f for f in manifest.files_of(fmt) if f.unit.startswith(unit) or unit.startswith(f.unit)]


def _read_verified(s3: Any, bucket: str, data_file: DataFile, columns: list[str]) -> pa.Table:
    """The file at its pinned version, checked against the manifest, as a table."""
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
    """The snapshot's live rows whose key hash starts with `unit`; with `tombstones`, also
    its tombstones (rows whose change is a removal), as a base for folding needs. Every
    file is read at its pinned version and verified (compaction.verified)."""
    key_names = [k.name for k in manifest.key_schema]
    rows: dict[str, Row] = {}
    for data_file in base_files_for(manifest, unit):
        table = _read_verified(s3, bucket, data_file, BASE_COLUMNS)
        for record in _records(table):
            if record["__key_hash"].startswith(unit):
                row = _row(record, manifest.table, key_names)
                rows[row.key_hash] = row
    for data_file in base_files_for(manifest, unit, "tombstones") if tombstones else []:
        table = _read_verified(s3, bucket, data_file, TOMBSTONE_COLUMNS)
        for record in _records(table):
            if record["__key_hash"].startswith(unit):
                row = _tombstone(record, manifest.table)
                rows[row.key_hash] = row
    return rows


def _records(table: pa.Table) -> Iterable[dict[str, Any]]:
    table = table.set_column(
        table.schema.get_field_index("__event_time"),
        "__event_time",
        table.column("__event_time").cast(pa.int64()),
    )
    table = table.set_column(
        table.schema.get_field_index("__written_at"),
        "__written_at",
        table.column("__written_at").cast(pa.int64()),
    )
    records: list[dict[str, Any]] = table.to_pylist()
    return records


def _tombstone(record: dict[str, Any], table_name: str) -> Row:
    change = Change(
        table=table_name,
        keys=json.loads(record["__keys"]),
        event_name="REMOVE",
        event_id="",
        sequence_number=record["__sequence_number"],
        event_time_us=record["__event_time"],
        new_image=None,
    )
    return Row(record["__key_hash"], change, record["__version_id"], record["__written_at"])


def _row(record: dict[str, Any], table_name: str, key_names: list[str]) -> Row:
    item = json.loads(record["__item"])
    change = Change(
        table=table_name,
        keys={name: item[name] for name in key_names if name in item},
        event_name=record["__event_name"],
        event_id="",
        sequence_number=record["__sequence_number"],
        event_time_us=record["__event_time"],
        new_image=item,
    )
    return Row(record["__key_hash"], change, record["__version_id"], record["__written_at"])
