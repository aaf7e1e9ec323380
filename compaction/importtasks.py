"""The pieces of an import of DynamoDB exports, as plain functions over picklable
arguments, so the same code runs on local threads or on dask workers (as
compaction/tasks.py does for compaction).

A full export becomes a snapshot in two steps. Per data file (`partition_file`): stream
it, check every line and key, and append each item to its unit's piece (units are key-hash
prefixes, as in compaction); collect column statistics. Per unit (`build_unit`, once the
driver has merged the statistics into one schema): sort the unit's pieces by key hash,
refuse a key seen twice, and write the unit's JSON lines and Parquet files. Memory holds
one unit, never the export.

An incremental export's files are checked in full first (`check_changes_file`), then
written as changes through the ChangeWriter (`write_changes_file`), each file followed by
a marker so that a rerun resumes after the last file written.
"""

from __future__ import annotations

import hashlib
import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, InvalidValueError
from backup_lambda.layout import Change, canonical_key_bytes, key_hash
from backup_lambda.writer import ChangeWriter
from compaction.awsexport import (
    NEW_AND_OLD_IMAGES,
    DataFileReader,
    ExportChange,
    ExportFile,
    ExportFormatError,
    parse_change_line,
    parse_item_line,
)
from compaction.columns import Stats, collect
from compaction.manifest import Column, DataFile, KeyAttribute
from compaction.s3errors import translate
from compaction.snapshot_io import item_json, rows_table, upload, write_export, write_parquet
from compaction.versions import put_json

IMPORT_SEQUENCE = "0"  # below every stream sequence number, as backfill's
# A change's WriteTimestampMicros may sit this far after its export's window.
WINDOW_TOLERANCE_US = 1_000_000
_FLUSH_BYTES = 8 << 20  # pieces buffered in memory per data file before they go to disk
_BATCH = 500  # changes per ChangeWriter call


class ImportWriteError(BackupError):
    """Some imported changes could not be written; rerunning the import resumes."""


def unit_name(unit: str) -> str:
    return unit or "all"


def item_keys(item: Item, schema: tuple[KeyAttribute, ...], where: str) -> Item:
    """The item's key attributes, which must be there with the key schema's types."""
    keys: Item = {}
    for attribute in schema:
        value = item.get(attribute.name)
        if value is None:
            raise ExportFormatError(f"{where}: no key attribute {attribute.name!r}")
        tag = next(iter(value))
        if tag != attribute.attribute_type:
            raise ExportFormatError(
                f"{where}: key attribute {attribute.name!r} is {tag}, the key schema says "
                f"{attribute.attribute_type}"
            )
        keys[attribute.name] = value
    return keys


def _same_key(a: Item, b: Item, where: str) -> bool:
    try:
        return canonical_key_bytes(a) == canonical_key_bytes(b)
    except InvalidValueError as e:
        raise ExportFormatError(f"{where}: {e}") from None


# ---- full exports -> snapshot files ---------------------------------------------------


@dataclass(frozen=True)
class ItemsTask:
    """Everything a worker needs to turn one full export into snapshot files."""

    s3: Callable[[], Any]
    source_bucket: str
    bucket: str
    table: str
    export_id: str
    key_schema: tuple[KeyAttribute, ...]
    shard_digits: int
    run_root: str  # the snapshot run's folder in the backup bucket (ends with "/")
    event_time_us: int  # every item's event time (the export's, to the second)
    written_at_us: int
    file_keys: tuple[str, ...]  # the export's data files, by index
    local_dir: str | None = None  # pieces stay here (one machine); None: on S3


@dataclass
class Partition:
    index: int
    rows: int = 0
    stats: Stats = field(default_factory=dict)
    pieces: dict[str, str] = field(default_factory=dict)  # unit -> local path or S3 key


def partition_file(task: ItemsTask, work: tuple[int, ExportFile]) -> Partition:
    """Stream one data file into per-unit pieces of `<key hash>\\t<item JSON>` lines."""
    index, data_file = work
    s3 = task.s3()
    result = Partition(index)
    buffers: dict[str, list[str]] = {}
    buffered = 0
    with tempfile.TemporaryDirectory(prefix="ddb-backup-import-") as tmp:
        folder = Path(task.local_dir or tmp)
        reader = DataFileReader(s3, task.source_bucket, data_file)
        for number, raw in reader:
            where = f"{reader.where} line {number}"
            item = parse_item_line(raw, where)
            keys = item_keys(item, task.key_schema, where)
            digest = key_hash(keys)
            collect((item,), result.stats)
            # the canonical key text (its SHA-256 is the key hash), the keys, the item
            key_text = canonical_key_bytes(keys).decode()
            text = f"{key_text}\t{item_json(keys)}\t{item_json(item)}\n"
            buffers.setdefault(digest[: task.shard_digits], []).append(text)
            buffered += len(text)
            result.rows += 1
            if buffered > _FLUSH_BYTES:
                _flush(folder, index, buffers, result)
                buffered = 0
        _flush(folder, index, buffers, result)
        if task.local_dir is None:
            result.pieces = {
                unit: _put_piece(s3, task, Path(path)) for unit, path in result.pieces.items()
            }
    return result


def _flush(folder: Path, index: int, buffers: dict[str, list[str]], result: Partition) -> None:
    for unit, lines in buffers.items():
        path = folder / f"piece-{index}-{unit_name(unit)}.tsv"
        with path.open("a", encoding="utf-8") as out:
            out.writelines(lines)
        result.pieces[unit] = str(path)
    buffers.clear()


def _put_piece(s3: Any, task: ItemsTask, path: Path) -> str:
    key = f"{task.run_root}pieces/{path.name}"
    try:
        with path.open("rb") as body:
            response = s3.put_object(Bucket=task.bucket, Key=key, Body=body)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, task.bucket, key) from e
    return f"{key}?versionId={response.get('VersionId') or 'null'}"


def _read_piece(s3: Any, task: ItemsTask, ref: str) -> str:
    if task.local_dir is not None:
        return Path(ref).read_text(encoding="utf-8")
    key, _, version = ref.partition("?versionId=")
    try:
        body: bytes = s3.get_object(Bucket=task.bucket, Key=key, VersionId=version)["Body"].read()
        # by version: a piece leaves nothing behind in a versioned bucket
        s3.delete_object(Bucket=task.bucket, Key=key, VersionId=version)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, task.bucket, key) from e
    return body.decode("utf-8")


@dataclass
class UnitFiles:
    unit: str
    rows: int = 0
    export: DataFile | None = None
    parquet: DataFile | None = None


def build_unit(task: ItemsTask, work: tuple[str, list[str], tuple[Column, ...]]) -> UnitFiles:
    """One unit's snapshot files from its pieces: sorted by key, each key once."""
    unit, refs, columns = work
    s3 = task.s3()
    entries: list[tuple[str, str, str, int]] = []
    for ref in refs:
        source = int(Path(ref.partition("?")[0]).name.split("-")[1])
        # Only "\n" ends a line: item JSON may hold U+2028 and other line breaks of
        # str.splitlines() unescaped.
        for line in _read_piece(s3, task, ref).split("\n"):
            if not line:
                continue
            key_text, keys, text = line.split("\t", 2)
            entries.append((key_text, keys, text, source))
        if task.local_dir is not None:
            Path(ref).unlink()
    entries.sort()
    for before, after in itertools.pairwise(entries):
        if before[0] == after[0]:
            raise ExportFormatError(
                f"export {task.export_id}: one key is in two lines, of "
                f"s3://{task.source_bucket}/{task.file_keys[before[3]]} and "
                f"s3://{task.source_bucket}/{task.file_keys[after[3]]}"
            )
    result = UnitFiles(unit, rows=len(entries))
    if not entries:
        return result
    count = len(entries)
    spill = pa.table(
        {
            "__key": [e[0] for e in entries],
            "__key_hash": [hashlib.sha256(e[0].encode("utf-8")).hexdigest() for e in entries],
            "__keys": [e[1] for e in entries],
            "__item": [e[2] for e in entries],
            "__event_time": [task.event_time_us] * count,
            "__event_name": ["INSERT"] * count,
            "__sequence_number": [IMPORT_SEQUENCE] * count,
            "__version_id": [f"export:{task.export_id}"] * count,
            "__written_at": [task.written_at_us] * count,
            "__parent_live": [None] * count,
        },
        schema=rows_table([]).schema,
    )
    del entries
    name = unit_name(unit)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-import-") as tmp:
        export = Path(tmp) / "export.json.gz"
        rows = write_export(export, spill)
        key = f"{task.run_root}export/data/part-{name}.json.gz"
        result.export = upload(s3, task.bucket, export, key, "json.gz", unit, rows)
        export.unlink()
        parquet = Path(tmp) / "part.parquet"
        rows = write_parquet(parquet, spill, columns)
        key = f"{task.run_root}parquet/part-{name}.parquet"
        result.parquet = upload(s3, task.bucket, parquet, key, "parquet", unit, rows)
    return result


def check_items_file(task: ItemsTask, work: tuple[int, ExportFile]) -> int:
    """A dry run's check of one full export data file: every line, key and checksum."""
    _, data_file = work
    reader = DataFileReader(task.s3(), task.source_bucket, data_file)
    rows = 0
    for number, raw in reader:
        where = f"{reader.where} line {number}"
        item_keys(parse_item_line(raw, where), task.key_schema, where)
        rows += 1
    return rows


# ---- incremental exports -> changes ---------------------------------------------------


@dataclass(frozen=True)
class ChangesTask:
    s3: Callable[[], Any]
    source_bucket: str
    bucket: str
    prefix: str
    table: str
    key_schema: tuple[KeyAttribute, ...]
    writers: int = 16


@dataclass(frozen=True)
class ChangesFile:
    """One data file of an incremental export, and where its done marker goes."""

    export_id: str
    view: str
    from_us: int
    to_us: int
    file: ExportFile
    marker: str
    etag: str | None = None  # pinned by the check, read again only if unchanged


@dataclass
class ChangesCheck:
    etag: str | None = None
    lines: int = 0
    puts: int = 0
    deletes: int = 0


def _checked(task: ChangesTask, work: ChangesFile, raw: bytes, where: str) -> ExportChange:
    line = parse_change_line(raw, where)
    names = {k.name for k in task.key_schema}
    if set(line.keys) != names:
        raise ExportFormatError(
            f"{where}: Keys has attributes {sorted(line.keys)}, the key schema has {sorted(names)}"
        )
    item_keys(line.keys, task.key_schema, where)
    for image, label in ((line.new_image, "NewImage"), (line.old_image, "OldImage")):
        if image is not None and not (
            names <= set(image) and _same_key({n: image[n] for n in names}, line.keys, where)
        ):
            raise ExportFormatError(f"{where}: {label}'s key attributes differ from Keys")
    # A write after the window's end cannot be in it. One before its start can: a delta
    # snapshot's export holds late changes (event times before its parent, written after).
    if line.write_us > work.to_us + WINDOW_TOLERANCE_US:
        raise ExportFormatError(
            f"{where}: WriteTimestampMicros {line.write_us} is after the export's window"
        )
    return line


def check_changes_file(task: ChangesTask, work: ChangesFile) -> ChangesCheck:
    """Every line of the file parses and agrees with the key schema and the window."""
    reader = DataFileReader(task.s3(), task.source_bucket, work.file)
    result = ChangesCheck()
    for number, raw in reader:
        line = _checked(task, work, raw, f"{reader.where} line {number}")
        result.lines += 1
        if line.new_image is None:
            result.deletes += 1
        else:
            result.puts += 1
    result.etag = reader.etag
    return result


def to_change(table: str, export_id: str, view: str, line: ExportChange) -> Change:
    """A line is the item's last write in the window: a put of NewImage at its
    WriteTimestampMicros, or (no NewImage) a removal of Keys."""
    if line.new_image is None:
        name = "REMOVE"
    elif view == NEW_AND_OLD_IMAGES and line.old_image is None:
        name = "INSERT"
    else:
        name = "MODIFY"  # a NEW_IMAGE export cannot tell an insert from an update
    return Change(
        table=table,
        keys=line.keys,
        event_name=name,  # type: ignore[arg-type]
        event_id=f"export:{export_id}",
        sequence_number=IMPORT_SEQUENCE,
        event_time_us=line.write_us,
        new_image=line.new_image,
    )


def write_changes_file(task: ChangesTask, work: ChangesFile) -> int:
    """Write the file's changes (checked before) through the ChangeWriter, then its marker."""
    s3 = task.s3()
    writer = ChangeWriter(
        s3, task.bucket, task.prefix, max_workers=task.writers, writer="import-export"
    )
    reader = DataFileReader(s3, task.source_bucket, work.file, if_match=work.etag)
    written = 0
    failed: list[str] = []
    batch: list[Change] = []

    def flush() -> None:
        nonlocal written
        result = writer.write(batch)
        written += len(result.written)
        failed.extend(f.reason for f in result.failed)
        batch.clear()

    for number, raw in reader:
        line = _checked(task, work, raw, f"{reader.where} line {number}")
        batch.append(to_change(task.table, work.export_id, work.view, line))
        if len(batch) >= _BATCH:
            flush()
    flush()
    if failed:
        raise ImportWriteError(
            f"{len(failed)} changes of {reader.where} were not written ({failed[0]}); "
            "rerun import-export: it resumes"
        )
    put_json(s3, task.bucket, work.marker, {"file": work.file.key, "changes": written})
    return written
