"""One unit's share of a compaction, as plain functions over picklable arguments, so that
the same code runs on a local thread pool or on the workers of a distributed engine.

Phase one (`phase_changes`, per unit): list, read and fold what changed against the base's
chain (reading the chain only for the changed keys, without images); keep the changed rows
as a spill. The driver then decides delta or full (compaction.policy). A delta is written
from those spills alone (`phase_delta`). A full snapshot needs every row: `phase_full`
overlays the spill on the chain's rows and writes tombstones and JSON lines; `phase_parquet`
writes the Parquet once the driver has merged every unit's column statistics into one
schema. The driver commits the manifest; workers never commit.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import Change
from compaction.chain import chain_rows
from compaction.columns import Stats, collect
from compaction.fold import Row
from compaction.manifest import Column, DataFile, SkippedVersion
from compaction.s3errors import translate
from compaction.snapshot_io import (
    live_rows,
    read_spill,
    removed_rows,
    upload,
    write_export,
    write_incremental_export,
    write_parquet,
    write_spill,
    write_tombstones,
)
from compaction.state import StatePlan, StateReader, UnitWork


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs for one run; `s3` returns a client on the worker."""

    plan: StatePlan
    run_root: str
    s3: Callable[[], Any]
    read_concurrency: int = 8
    skip_corrupt: bool = False
    local_dir: str | None = None  # spills stay here (same machine); None: on S3


@dataclass
class UnitChangeResult:
    """Phase one of a unit: what changed against the chain."""

    unit: str
    listed: int = 0
    read: int = 0
    changed_keys: int = 0  # keys with versions after the base (folded)
    changed: int = 0  # keys whose row changes (the rows and tombstones a delta holds)
    items_delta: int = 0  # live items after minus before
    newest_event_us: int | None = None
    newer_changes: int = 0  # changes read with event time after the as-of
    stats: Stats = field(default_factory=dict)  # of the changed live items
    skipped: list[SkippedVersion] = field(default_factory=list)
    sample_keys: dict[str, Any] | None = None
    spill: str | None = None  # local path, or S3 key and version id ("key?versionId=...")


@dataclass
class UnitResult:
    """A unit of a full snapshot, once its rows are materialized."""

    unit: str
    rows: int = 0
    carried: int = 0
    removed: int = 0
    stats: Stats = field(default_factory=dict)
    spill: str | None = None
    export: DataFile | None = None
    tombstones: DataFile | None = None


def _name(unit: str) -> str:
    return unit or "all"


def phase_changes(task: UnitTask, work: UnitWork | str) -> UnitChangeResult:
    """`work`: the unit with its share of the journal window (a bare unit reads the share
    from the task's plan)."""
    s3 = task.s3()
    unit, journal = (work, None) if isinstance(work, str) else (work.unit, work.journal)
    with ThreadPoolExecutor(task.read_concurrency, thread_name_prefix="s3-get") as reads:
        reader = StateReader(s3, task.plan, reads, skip_corrupt=task.skip_corrupt)
        changes = reader.changes(unit, journal)
    state = changes.state
    result = UnitChangeResult(
        unit,
        listed=state.listed,
        read=state.read,
        changed_keys=state.changed_keys,
        changed=len(changes.rows),
        items_delta=changes.items_delta,
        newest_event_us=state.newest_event_us,
        newer_changes=state.newer_changes,
        skipped=state.skipped,
    )
    if not changes.rows:
        return result
    live = [r.change.new_image or {} for r in changes.rows if not r.change.is_removal]
    collect(live, result.stats)
    result.sample_keys = changes.rows[0].change.keys
    name = _name(unit)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-unit-") as tmp:
        spill = (
            Path(task.local_dir) / f"{name}.changes.arrow"
            if task.local_dir
            else Path(tmp) / "changes.arrow"
        )
        write_spill(spill, changes.rows, changes.parent_live)
        result.spill = str(spill) if task.local_dir else _put_spill(s3, task, name, spill)
    return result


def phase_delta(
    task: UnitTask, columns: tuple[Column, ...], result: UnitChangeResult
) -> list[DataFile]:
    """A delta's files for the unit: its changed rows, tombstones and incremental export."""
    if result.spill is None:
        return []
    s3 = task.s3()
    bucket = task.plan.bucket
    name = _name(result.unit)
    files = []
    with tempfile.TemporaryDirectory(prefix="ddb-backup-unit-") as tmp_dir:
        tmp = Path(tmp_dir)
        spill = _open_spill(s3, task, result.spill, tmp)
        if live_rows(spill).num_rows:
            path = tmp / "part.parquet"
            rows = write_parquet(path, spill, columns)
            key = f"{task.run_root}parquet/part-{name}.parquet"
            files.append(upload(s3, bucket, path, key, "parquet", result.unit, rows))
        if removed_rows(spill).num_rows:
            path = tmp / "tombstones.parquet"
            rows = write_tombstones(path, spill)
            key = f"{task.run_root}tombstones/part-{name}.parquet"
            files.append(upload(s3, bucket, path, key, "tombstones", result.unit, rows))
        path = tmp / "export.json.gz"
        rows = write_incremental_export(path, spill)
        if rows:
            key = f"{task.run_root}export/data/part-{name}.json.gz"
            files.append(upload(s3, bucket, path, key, "json.gz", result.unit, rows))
    _drop_spill(s3, task, result.spill)
    return files


def phase_full(task: UnitTask, result: UnitChangeResult) -> UnitResult:
    """A full snapshot's unit: the chain's rows overlaid with the changes; its tombstones
    and JSON lines are written, its rows kept as a spill for `phase_parquet`."""
    s3 = task.s3()
    plan = task.plan
    name = _name(result.unit)
    out = UnitResult(result.unit)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-unit-") as tmp_dir:
        tmp = Path(tmp_dir)
        changed = _open_spill(s3, task, result.spill, tmp) if result.spill else None
        if plan.chain:
            rows = chain_rows(s3, plan.bucket, plan.chain, result.unit)
            overlay = spill_rows(changed, plan.table) if changed is not None else []
            out.carried = sum(1 for r in rows.values() if not r.change.is_removal)
            for row in overlay:
                previous = rows.get(row.key_hash)
                if previous is not None and not previous.change.is_removal:
                    out.carried -= 1
                rows[row.key_hash] = row
            if not rows:
                _drop_spill(s3, task, result.spill)
                return out
            spill_path = (
                Path(task.local_dir) / f"{name}.arrow" if task.local_dir else tmp / "spill.arrow"
            )
            write_spill(spill_path, rows.values())
            _drop_spill(s3, task, result.spill)
            spill = read_spill(spill_path)
            spill_ref = (
                str(spill_path) if task.local_dir else _put_spill(s3, task, name, spill_path)
            )
        elif changed is not None and result.spill is not None:  # no base: all is new
            spill, spill_ref = changed, result.spill
        else:
            return out
        live = live_rows(spill)
        out.rows = live.num_rows
        out.removed = spill.num_rows - live.num_rows
        collect((json.loads(t) for t in live.column("__item").to_pylist()), out.stats)
        if out.removed:
            path = tmp / "tombstones.parquet"
            count = write_tombstones(path, spill)
            key = f"{task.run_root}tombstones/part-{name}.parquet"
            out.tombstones = upload(s3, plan.bucket, path, key, "tombstones", result.unit, count)
        if out.rows:
            path = tmp / "export.json.gz"
            count = write_export(path, spill)
            key = f"{task.run_root}export/data/part-{name}.json.gz"
            out.export = upload(s3, plan.bucket, path, key, "json.gz", result.unit, count)
            out.spill = spill_ref
        else:
            _drop_spill(s3, task, spill_ref)
    return out


def phase_parquet(
    task: UnitTask, result: UnitResult, columns: tuple[Column, ...]
) -> DataFile | None:
    if result.spill is None:
        return None
    s3 = task.s3()
    bucket = task.plan.bucket
    name = _name(result.unit)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-unit-") as tmp_dir:
        tmp = Path(tmp_dir)
        spill = _open_spill(s3, task, result.spill, tmp)
        path = tmp / "part.parquet"
        rows = write_parquet(path, spill, columns)
        key = f"{task.run_root}parquet/part-{name}.parquet"
        data = upload(s3, bucket, path, key, "parquet", result.unit, rows)
    _drop_spill(s3, task, result.spill)
    return data


def spill_rows(spill: pa.Table, table_name: str) -> list[Row]:
    """A spill's rows back as fold rows (images included)."""
    rows = []
    for record in spill.to_pylist():
        item = json.loads(record["__item"]) if record["__item"] is not None else None
        change = Change(
            table=table_name,
            keys=json.loads(record["__keys"]),
            event_name=record["__event_name"],
            event_id="",
            sequence_number=record["__sequence_number"],
            event_time_us=record["__event_time"],
            new_image=item,
        )
        rows.append(
            Row(
                record["__key_hash"],
                change,
                record["__version_id"],
                record["__written_at"],
                key_text=record["__key"],
            )
        )
    return rows


def _open_spill(s3: Any, task: UnitTask, ref: str, tmp: Path) -> pa.Table:
    if task.local_dir:
        return read_spill(Path(ref))
    return read_spill(_get_spill(s3, task.plan.bucket, ref, tmp))


def _drop_spill(s3: Any, task: UnitTask, ref: str | None) -> None:
    if ref is None:
        return
    if task.local_dir:
        Path(ref).unlink(missing_ok=True)
    else:
        _delete_spill(s3, task.plan.bucket, ref)


def _put_spill(s3: Any, task: UnitTask, name: str, path: Path) -> str:
    """Spills of a distributed run go to the run's folder (no manifest lists them)."""
    key = f"{task.run_root}spill/{name}-{path.stem}.arrow"
    try:
        with path.open("rb") as body:
            response = s3.put_object(Bucket=task.plan.bucket, Key=key, Body=body)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, task.plan.bucket, key) from e
    return f"{key}?versionId={response.get('VersionId') or 'null'}"


def _split(ref: str) -> tuple[str, str]:
    key, _, version = ref.partition("?versionId=")
    return key, version


def _get_spill(s3: Any, bucket: str, ref: str, tmp: Path) -> Path:
    key, version = _split(ref)
    path = tmp / f"spill-{abs(hash(ref))}.arrow"
    try:
        s3.download_file(bucket, key, str(path), ExtraArgs={"VersionId": version})
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
    return path


def _delete_spill(s3: Any, bucket: str, ref: str) -> None:
    key, version = _split(ref)
    try:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
