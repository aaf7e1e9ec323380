"""One unit's share of a compaction, as plain functions over picklable arguments, so that
the same code runs on a local thread pool or on the workers of a distributed engine.

Phase one (per unit): list, read and fold the unit; write its tombstones and its JSON
lines export; keep its rows as a spill. Phase two (per unit, once the driver has merged
every unit's column statistics into one schema): turn the spill into the unit's Parquet.
The driver then commits the manifest; workers never commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from compaction.columns import Stats, collect
from compaction.manifest import Column, DataFile, SkippedVersion
from compaction.s3errors import translate
from compaction.snapshot_io import (
    read_spill,
    upload,
    write_export,
    write_parquet,
    write_spill,
    write_tombstones,
)
from compaction.state import StatePlan, StateReader


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
class UnitResult:
    unit: str
    rows: int = 0
    listed: int = 0
    read: int = 0
    changed_keys: int = 0
    carried: int = 0
    removed: int = 0
    newest_event_us: int | None = None
    stats: Stats = field(default_factory=dict)
    spill: str | None = None  # local path, or S3 key and version id ("key?versionId=...")
    export: DataFile | None = None
    tombstones: DataFile | None = None
    skipped: list[SkippedVersion] = field(default_factory=list)
    sample_keys: dict[str, Any] | None = None


def _name(unit: str) -> str:
    return unit or "all"


def phase_one(task: UnitTask, unit: str) -> UnitResult:
    s3 = task.s3()
    bucket = task.plan.bucket
    with ThreadPoolExecutor(task.read_concurrency, thread_name_prefix="s3-get") as reads:
        state = StateReader(s3, task.plan, reads, skip_corrupt=task.skip_corrupt).unit(unit)
    result = UnitResult(
        unit,
        rows=len(state.rows),
        listed=state.listed,
        read=state.read,
        changed_keys=state.changed_keys,
        carried=state.carried,
        removed=len(state.removed),
        newest_event_us=state.newest_event_us,
        skipped=state.skipped,
    )
    name = _name(unit)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-unit-") as tmp_dir:
        tmp = Path(tmp_dir)
        if state.removed:
            path = tmp / "tombstones.parquet"
            count = write_tombstones(path, state.removed)
            key = f"{task.run_root}tombstones/part-{name}.parquet"
            result.tombstones = upload(s3, bucket, path, key, "tombstones", unit, count)
        if not state.rows:
            return result
        result.sample_keys = state.rows[0].change.keys
        collect((r.change.new_image or {} for r in state.rows), result.stats)
        spill = Path(task.local_dir) / f"{name}.arrow" if task.local_dir else tmp / "spill.arrow"
        write_spill(spill, state.rows)
        del state
        export = tmp / "export.json.gz"
        count = write_export(export, read_spill(spill))
        key = f"{task.run_root}export/data/part-{name}.json.gz"
        result.export = upload(s3, bucket, export, key, "json.gz", unit, count)
        result.spill = str(spill) if task.local_dir else _put_spill(s3, task, name, spill)
    return result


def phase_two(task: UnitTask, result: UnitResult, columns: tuple[Column, ...]) -> DataFile | None:
    if result.spill is None:
        return None
    s3 = task.s3()
    bucket = task.plan.bucket
    name = _name(result.unit)
    with tempfile.TemporaryDirectory(prefix="ddb-backup-unit-") as tmp_dir:
        tmp = Path(tmp_dir)
        spill = Path(result.spill) if task.local_dir else _get_spill(s3, bucket, result.spill, tmp)
        path = tmp / "part.parquet"
        rows = write_parquet(path, read_spill(spill), columns)
        key = f"{task.run_root}parquet/part-{name}.parquet"
        data = upload(s3, bucket, path, key, "parquet", result.unit, rows)
    if task.local_dir:
        Path(result.spill).unlink()
    else:
        _delete_spill(s3, bucket, result.spill)
    return data


def _put_spill(s3: Any, task: UnitTask, name: str, path: Path) -> str:
    """Spills of a distributed run go to the run's folder (no manifest lists them)."""
    key = f"{task.run_root}spill/{name}.arrow"
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
    path = tmp / "spill.arrow"
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
