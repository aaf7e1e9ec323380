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

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptVersionError, NotFoundError
from backup_lambda.layout import decode_change, items_prefix, key_hash
from compaction import catalog
from compaction.columns import Stats, choose_columns, collect, merge_stats
from compaction.fold import LAST_MODIFIED_RESOLUTION_US, KeyPlan, Row, Version, candidates_for
from compaction.keyschema import resolve_key_schema
from compaction.manifest import Column, Counts, DataFile, Manifest, SkippedVersion, snapshot_id
from compaction.s3errors import translate
from compaction.snapshot_io import (
    read_base_rows,
    read_spill,
    upload,
    write_export,
    write_parquet,
    write_spill,
)
from compaction.versions import iter_versions

_HASH_HEX = 64


@dataclass(frozen=True)
class CompactionConfig:
    full: bool = False
    workers: int = 4  # shard units processed at once
    read_concurrency: int = 32  # GETs in flight across all units
    shard_digits: int | None = None  # 0 -> 1 unit, 1 -> 16, 2 -> 256, 3 -> 4096; None: by size
    clock_skew_us: int = 1_000_000  # allowed skew between DynamoDB's, S3's and our clocks
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
    skipped: list[SkippedVersion] = field(default_factory=list)
    sample_keys: dict[str, Any] | None = None


@dataclass(frozen=True)
class CompactionResult:
    manifest: Manifest
    created: bool  # False: a snapshot for this as-of was already committed (no-op)
    seconds: float


Progress = Callable[[str, int, int], None]  # (phase, done, total)


# Units hold about this many items at most (memory per unit), and no more files than needed.
_UNIT_TARGET_ITEMS = 125_000
_PROBE_SHARD = "00"  # 1/256 of the key space


def auto_shard_digits(estimated_items: int) -> int:
    """Hex digits per unit: 0 -> one unit, 1 -> 16, 2 -> 256, 3 -> 4096."""
    digits = 0
    while digits < 3 and estimated_items > _UNIT_TARGET_ITEMS * 16**digits:
        digits += 1
    return digits


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
        if not self._has_items():
            raise NotFoundError(
                f"no backup of table {self._table!r} in s3://{self._bucket}/{self._prefix}"
            )
        base = None
        if not self._config.full:
            base = catalog.newest_at_or_before(
                self._s3, self._bucket, self._prefix, self._table, as_of_us
            )
        digits = self._config.shard_digits
        if digits is None:
            digits = auto_shard_digits(base.item_count if base else self._estimate_items())
        units = [f"{i:0{digits}x}" for i in range(16**digits)] if digits else [""]
        run_id = uuid.uuid4().hex[:12]
        watermark_us = int(self._clock() * 1_000_000) - self._config.clock_skew_us
        since_us = None
        if base is not None:
            since_us = (
                min(base.listing_watermark_us, base.as_of_us)
                - LAST_MODIFIED_RESOLUTION_US
                - self._config.clock_skew_us
            )
        with (
            tempfile.TemporaryDirectory(prefix="ddb-backup-compact-") as tmp,
            ThreadPoolExecutor(
                max_workers=self._config.read_concurrency, thread_name_prefix="s3-get"
            ) as reads,
        ):
            job = _UnitJob(self, base, as_of_us, since_us, Path(tmp), reads, snapshot, run_id)
            results = self._map(job.phase_one, units, "list+fold")
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
        files = tuple(f for f in [*(r.export for r in results), *parquet] if f is not None)
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
            shard_digits=digits,
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
            ),
            newest_event_time_us=max(newest) if newest else None,
            run_id=run_id,
            skipped=tuple(s for r in results for s in r.skipped),
        )
        catalog.commit(self._s3, self._bucket, self._prefix, manifest)
        return CompactionResult(manifest, created=True, seconds=time.perf_counter() - started)

    def _estimate_items(self) -> int:
        """Keys in one 1/256 slice (one LIST call, up to 1,000 keys) times 256."""
        root = items_prefix(self._prefix, self._table) + _PROBE_SHARD
        try:
            response = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=root, MaxKeys=1000)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, self._bucket, root) from e
        return int(response.get("KeyCount", 0)) * 256

    def _has_items(self) -> bool:
        root = items_prefix(self._prefix, self._table)
        try:
            response = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=root, MaxKeys=1)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, self._bucket, root) from e
        return bool(response.get("KeyCount", 0))

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
    """Per-unit work of one run: phase one lists, reads and folds; phase two writes Parquet."""

    def __init__(
        self,
        owner: Compactor,
        base: Manifest | None,
        as_of_us: int,
        since_us: int | None,
        tmp: Path,
        reads: ThreadPoolExecutor,
        snapshot: str,
        run_id: str,
    ) -> None:
        self.o = owner
        self.base = base
        self.as_of_us = as_of_us
        self.since_us = since_us
        self.tmp = tmp
        self.reads = reads
        self.run_root = catalog.run_prefix(owner._prefix, owner._table, snapshot, run_id)

    def phase_one(self, unit: str) -> UnitResult:
        o = self.o
        result = UnitResult(unit)
        versions: dict[str, list[Version]] = {}
        root = items_prefix(o._prefix, o._table)
        for ref in iter_versions(o._s3, o._bucket, root + unit):
            name = ref.key[len(root) :]
            digest = name[3:-5]  # "<hh>/<hash>.json"
            if ref.is_delete_marker or len(digest) != _HASH_HEX or not name.endswith(".json"):
                continue
            result.listed += 1
            stamp = int(ref.last_modified.timestamp() * 1_000_000)
            versions.setdefault(digest, []).append(Version(ref.key, ref.version_id, stamp))
        base_rows = read_base_rows(o._s3, o._bucket, self.base, unit) if self.base else {}
        plans = []
        for digest, listed in versions.items():
            base_row = base_rows.get(digest)
            candidates = candidates_for(listed, base_row, self.since_us)
            if candidates:
                plans.append(
                    KeyPlan(
                        digest, candidates, self.as_of_us, o._config.clock_skew_us, best=base_row
                    )
                )
        result.changed_keys = len(plans)
        self._read_all(plans, result)
        rows = dict(base_rows)
        for plan in plans:
            chosen = plan.result(base_rows.get(plan.key_hash))
            if chosen is None:
                rows.pop(plan.key_hash, None)
            else:
                rows[plan.key_hash] = chosen
            for row in plan.read:
                if row.change.event_time_us <= self.as_of_us:
                    result.newest_event_us = max(
                        result.newest_event_us or 0, row.change.event_time_us
                    )
        changed = {p.key_hash for p in plans}
        result.carried = sum(1 for d in rows if d not in changed)
        ordered = [rows[d] for d in sorted(rows)]
        result.rows = len(ordered)
        if not ordered:
            return result
        result.sample_keys = ordered[0].change.keys
        collect((r.change.new_image or {} for r in ordered), result.stats)
        result.spill = self.tmp / f"{unit or 'all'}.arrow"
        write_spill(result.spill, ordered)
        del ordered, rows, base_rows
        export_path = self.tmp / f"{unit or 'all'}.json.gz"
        spill = read_spill(result.spill)
        count = write_export(export_path, spill)
        result.export = upload(
            o._s3,
            o._bucket,
            export_path,
            f"{self.run_root}export/data/part-{unit or 'all'}.json.gz",
            "json.gz",
            unit,
            count,
        )
        export_path.unlink()
        return result

    def _read_all(self, plans: list[KeyPlan], result: UnitResult) -> None:
        """Round by round: each plan names its next reads until no version can win."""
        active = plans
        while active:
            batch = [(plan, version) for plan in active for version in plan.next_batch()]
            rows = self.reads.map(lambda pv: self._read(pv[1], pv[0], result), batch)
            for (plan, _), row in zip(batch, rows, strict=True):
                result.read += 1
                if row is not None:
                    plan.accept(row)
            active = list({id(plan): plan for plan, _ in batch}.values())

    def _read(self, version: Version, plan: KeyPlan, result: UnitResult) -> Row | None:
        o = self.o
        where = f"s3://{o._bucket}/{version.key} (version {version.version_id})"
        try:
            response = o._s3.get_object(
                Bucket=o._bucket, Key=version.key, VersionId=version.version_id
            )
            body = response["Body"].read()
        except (ClientError, BotoCoreError) as e:
            raise translate(e, o._bucket, f"{version.key} (version {version.version_id})") from e
        try:
            change = decode_change(body, where)
            if key_hash(change.keys) != plan.key_hash:
                raise CorruptVersionError(f"{where}: its keys do not hash to its object key")
        except CorruptVersionError as e:
            if not o._config.skip_corrupt:
                raise
            result.skipped.append(SkippedVersion(version.key, version.version_id, str(e)))
            return None
        return Row(plan.key_hash, change, version.version_id, version.last_modified_us)

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
