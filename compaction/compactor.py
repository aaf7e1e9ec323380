"""The compaction job: fold a table's object versions up to T into one committed snapshot."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compaction import catalog
from compaction.columns import Stats, choose_columns, collect, merge_stats
from compaction.keyschema import resolve_key_schema
from compaction.manifest import Column, Counts, DataFile, Manifest, SkippedVersion, snapshot_id
from compaction.snapshot_io import (
    read_spill,
    upload,
    write_export,
    write_parquet,
    write_spill,
    write_tombstones,
)
from compaction.state import DEFAULT_CLOCK_SKEW_US, StatePlan, StateReader, plan_state


@dataclass(frozen=True)
class CompactionConfig:
    full: bool = False
    workers: int = 4  # shard units processed at once
    read_concurrency: int = 32  # GETs in flight across all units
    shard_digits: int | None = None  # 0 -> 1 unit, 1 -> 16, 2 -> 256, 3 -> 4096; None: by size
    clock_skew_us: int = DEFAULT_CLOCK_SKEW_US  # between DynamoDB's, S3's and our clocks
    skip_corrupt: bool = False


@dataclass
class UnitResult:
    unit: str
    rows: int = 0
    listed: int = 0
    read: int = 0
    changed_keys: int = 0
    carried: int = 0
    newest_event_us: int | None = None
    stats: Stats = field(default_factory=dict)
    spill: Path | None = None
    export: DataFile | None = None
    tombstones: DataFile | None = None
    removed: int = 0
    skipped: list[SkippedVersion] = field(default_factory=list)
    sample_keys: dict[str, Any] | None = None


@dataclass(frozen=True)
class CompactionResult:
    manifest: Manifest
    created: bool  # False: a snapshot for this as-of was already committed (no-op)
    seconds: float


Progress = Callable[[str, int, int], None]  # (phase, done, total)


class Compactor:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        table: str,
        prefix: str = "",
        config: CompactionConfig | None = None,
        dynamodb: Any | None = None,
        clock: Callable[[], float] = time.time,
        progress: Progress | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._table = table
        self._prefix = prefix
        self._config = config or CompactionConfig()
        self._dynamodb = dynamodb
        self._clock = clock
        self._progress = progress or (lambda phase, done, total: None)

    def run(self, as_of_us: int) -> CompactionResult:
        started = time.perf_counter()
        snapshot = snapshot_id(as_of_us)
        existing = catalog.load_manifest(
            self._s3, self._bucket, self._prefix, self._table, snapshot
        )
        if existing is not None:
            return CompactionResult(existing, created=False, seconds=time.perf_counter() - started)
        plan = plan_state(
            self._s3,
            self._bucket,
            self._prefix,
            self._table,
            as_of_us,
            full=self._config.full,
            shard_digits=self._config.shard_digits,
            skew_us=self._config.clock_skew_us,
        )
        base = plan.base
        run_id = uuid.uuid4().hex[:12]
        watermark_us = int(self._clock() * 1_000_000)  # listing starts after this
        with (
            tempfile.TemporaryDirectory(prefix="ddb-backup-compact-") as tmp,
            ThreadPoolExecutor(
                max_workers=self._config.read_concurrency, thread_name_prefix="s3-get"
            ) as reads,
        ):
            job = _UnitJob(self, plan, Path(tmp), reads, snapshot, run_id)
            results = self._map(job.phase_one, plan.units, "list+fold")
            stats = merge_stats(r.stats for r in results)
            key_schema, source = resolve_key_schema(
                self._dynamodb,
                self._table,
                base,
                next((r.sample_keys for r in results if r.sample_keys), None),
            )
            columns = tuple(
                Column(name, kind)
                for name, kind in choose_columns(stats, [k.name for k in key_schema])
            )
            parquet = self._map(lambda r: job.phase_two(r, columns), results, "parquet")
        files = tuple(
            f
            for f in [*(r.export for r in results), *(r.tombstones for r in results), *parquet]
            if f is not None
        )
        newest = [r.newest_event_us for r in results if r.newest_event_us is not None]
        if base is not None and base.newest_event_time_us is not None:
            newest.append(base.newest_event_time_us)
        manifest = Manifest(
            id=snapshot,
            table=self._table,
            as_of_us=as_of_us,
            built_at_us=int(self._clock() * 1_000_000),
            listing_watermark_us=watermark_us,
            base=base.id if base else None,
            shard_digits=plan.shard_digits,
            key_schema=key_schema,
            key_schema_source=source,
            columns=columns,
            files=tuple(sorted(files, key=lambda f: (f.format, f.unit))),
            counts=Counts(
                items=sum(r.rows for r in results),
                versions_listed=sum(r.listed for r in results),
                objects_read=sum(r.read for r in results),
                changed_keys=sum(r.changed_keys for r in results),
                carried_rows=sum(r.carried for r in results),
                removed=sum(r.removed for r in results),
            ),
            newest_event_time_us=max(newest) if newest else None,
            run_id=run_id,
            skipped=tuple(s for r in results for s in r.skipped),
        )
        catalog.commit(self._s3, self._bucket, self._prefix, manifest)
        return CompactionResult(manifest, created=True, seconds=time.perf_counter() - started)

    def _map(self, work: Callable[[Any], Any], items: list[Any], phase: str) -> list[Any]:
        done = 0
        results = []
        with ThreadPoolExecutor(
            max_workers=self._config.workers, thread_name_prefix="unit"
        ) as pool:
            for result in pool.map(work, items):
                results.append(result)
                done += 1
                self._progress(phase, done, len(items))
        return results


class _UnitJob:
    """Per-unit work of one run: phase one folds and spills; phase two writes Parquet."""

    def __init__(
        self,
        owner: Compactor,
        plan: StatePlan,
        tmp: Path,
        reads: ThreadPoolExecutor,
        snapshot: str,
        run_id: str,
    ) -> None:
        self.o = owner
        self.tmp = tmp
        self.state = StateReader(owner._s3, plan, reads, skip_corrupt=owner._config.skip_corrupt)
        self.run_root = catalog.run_prefix(owner._prefix, owner._table, snapshot, run_id)

    def phase_one(self, unit: str) -> UnitResult:
        o = self.o
        state = self.state.unit(unit)
        result = UnitResult(
            unit,
            rows=len(state.rows),
            listed=state.listed,
            read=state.read,
            changed_keys=state.changed_keys,
            carried=state.carried,
            newest_event_us=state.newest_event_us,
            skipped=state.skipped,
            removed=len(state.removed),
        )
        name = unit or "all"
        if state.removed:
            path = self.tmp / f"{name}.tombstones.parquet"
            count = write_tombstones(path, state.removed)
            result.tombstones = upload(
                o._s3,
                o._bucket,
                path,
                f"{self.run_root}tombstones/part-{name}.parquet",
                "tombstones",
                unit,
                count,
            )
            path.unlink()
        if not state.rows:
            return result
        result.sample_keys = state.rows[0].change.keys
        collect((r.change.new_image or {} for r in state.rows), result.stats)
        result.spill = self.tmp / f"{name}.arrow"
        write_spill(result.spill, state.rows)
        del state
        export_path = self.tmp / f"{name}.json.gz"
        count = write_export(export_path, read_spill(result.spill))
        result.export = upload(
            o._s3,
            o._bucket,
            export_path,
            f"{self.run_root}export/data/part-{name}.json.gz",
            "json.gz",
            unit,
            count,
        )
        export_path.unlink()
        return result

    def phase_two(self, result: UnitResult, columns: tuple[Column, ...]) -> DataFile | None:
        if result.spill is None:
            return None
        path = self.tmp / f"{result.unit or 'all'}.parquet"
        rows = write_parquet(path, read_spill(result.spill), columns)
        result.spill.unlink()
        data = upload(
            self.o._s3,
            self.o._bucket,
            path,
            f"{self.run_root}parquet/part-{result.unit or 'all'}.parquet",
            "parquet",
            result.unit,
            rows,
        )
        path.unlink()
        return data
