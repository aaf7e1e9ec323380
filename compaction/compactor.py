"""The compaction job: fold a table's changes up to T into one committed snapshot,
a full one or a delta on the newest earlier snapshot (compaction.policy decides)."""

from __future__ import annotations

import functools
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.errors import CorruptSnapshotError
from compaction import catalog, commitcheck, exportmanifests
from compaction.clock import BucketClock
from compaction.columns import AttributeStats, Stats, choose_columns, merge_stats
from compaction.executor import ThreadUnitExecutor, UnitExecutor
from compaction.fallback import damaged_snapshot
from compaction.journal import JOURNAL
from compaction.journalcheck import JournalCheck, check_journal, mismatch_error
from compaction.keyschema import resolve_key_schema
from compaction.lease import RENEW_SECONDS, RunLease
from compaction.manifest import Column, ColumnStats, Counts, DataFile, Manifest, snapshot_id
from compaction.policy import SnapshotPolicy, column_change, decide, delta_columns
from compaction.rowformat import DATA_LAYOUT
from compaction.settingsstore import upload_settings
from compaction.state import DEFAULT_CLOCK_SKEW_US, StatePlan, plan_state
from compaction.tablesettings import DEFAULT_CAPTURE_SECONDS, BackgroundCapture, capture_settings
from compaction.tasks import (
    UnitChangeResult,
    UnitResult,
    UnitTask,
    phase_changes,
    phase_delta,
    phase_full,
    phase_parquet,
)


@dataclass(frozen=True)
class CompactionConfig:
    full: bool = False
    workers: int = 4  # shard units processed at once
    read_concurrency: int = 32  # GETs in flight across all units
    shard_digits: int | None = None  # 0 -> 1 unit, 1 -> 16, 2 -> 256, 3 -> 4096; None: by size
    clock_skew_us: int = DEFAULT_CLOCK_SKEW_US  # between DynamoDB's, S3's and our clocks
    skip_corrupt: bool = False
    rebuild: bool = False  # read no snapshot at all: fold every object version (a full build)
    base_snapshot: str | None = None  # build on this snapshot, not the newest (--snapshot)
    listing: bool = False  # find the changes after the base by listing, even with a journal
    verify_journal: bool = False  # compare the journal window with the item versions
    policy: SnapshotPolicy = field(default_factory=SnapshotPolicy)  # delta or full
    # Record the source table's settings (DescribeTable, TTL, PITR, tags, ...) in the
    # snapshot; the capture runs beside the run and gets at most this long.
    capture_settings: bool = True
    settings_budget_seconds: float = DEFAULT_CAPTURE_SECONDS
    # The run's lease (compaction.lease) is written again this often while it runs.
    lease_seconds: float = RENEW_SECONDS


@dataclass(frozen=True)
class CompactionResult:
    manifest: Manifest
    created: bool  # False: a snapshot for this as-of was already committed (no-op)
    seconds: float
    journal_check: JournalCheck | None = None  # with verify_journal
    # changes stored with event time after the as-of (not in the snapshot): a later as-of,
    # or waiting for the default one to pass them, would take them in
    newer_changes: int = 0


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
        clock: Callable[[], float] | None = None,
        progress: Progress | None = None,
        executor: UnitExecutor | None = None,
        s3_factory: Callable[[], Any] | None = None,
        autoscaling: Any | None = None,
        bucket_clock: BucketClock | None = None,
    ) -> None:
        """`executor` runs the unit tasks (default: `config.workers` threads); a distributed
        one needs `s3_factory`, a picklable callable that builds an S3 client on a worker.
        With `dynamodb`, the table's settings are captured into the snapshot (`autoscaling`,
        an Application Auto Scaling client, adds its scaling targets and policies).
        `bucket_clock` is S3's clock (read once per run; default: from this bucket, with
        `clock` as the host's): the watermark and build time are S3's now."""
        self._s3 = s3
        self._bucket = bucket
        self._table = table
        self._prefix = prefix
        self._config = config or CompactionConfig()
        self._executor = executor or ThreadUnitExecutor(self._config.workers)
        if self._executor.distributed and s3_factory is None:
            raise ValueError("a distributed executor needs an s3_factory for its workers")
        self._s3_factory = s3_factory or (lambda: s3)
        self._dynamodb = dynamodb
        self._autoscaling = autoscaling
        self._clock = clock or time.time  # the host's (read when built: tests replace it)
        self._now = bucket_clock or BucketClock(s3, bucket, host=clock)
        self._progress = progress or (lambda phase, done, total: None)

    def run(self, as_of_us: int) -> CompactionResult:
        started = time.perf_counter()
        snapshot = snapshot_id(as_of_us)
        if (
            existing := catalog.load_manifest(
                self._s3, self._bucket, self._prefix, self._table, snapshot
            )
        ) is not None:
            return CompactionResult(existing, created=False, seconds=time.perf_counter() - started)
        plan, check, watermark_us = self._planned(as_of_us)
        capture = self._start_capture()
        run_id = uuid.uuid4().hex[:12]
        run_root = catalog.run_prefix(self._prefix, self._table, snapshot, run_id)
        with RunLease(self._s3, self._bucket, run_root, run_id, self._config.lease_seconds):
            manifest, newer = self._build(as_of_us, plan, watermark_us, capture, run_id, run_root)
            # Every file it lists is still there (an expire may have run meanwhile).
            commitcheck.confirm_files(self._s3, self._bucket, manifest)
            catalog.commit(self._s3, self._bucket, self._prefix, manifest)
        if check is not None and check.missing:
            raise mismatch_error(check, manifest.id, self._table)
        return CompactionResult(
            manifest,
            created=True,
            seconds=time.perf_counter() - started,
            journal_check=check,
            newer_changes=newer,
        )

    def _build(
        self,
        as_of_us: int,
        plan: StatePlan,
        watermark_us: int,
        capture: BackgroundCapture | None,
        run_id: str,
        run_root: str,
    ) -> tuple[Manifest, int]:
        """Write the snapshot's files under `run_root`: (the manifest to commit, the
        changes seen that are newer than the as-of)."""
        base = plan.base
        snapshot = snapshot_id(as_of_us)
        # The GETs in flight are shared by the units that run at once: a table of one
        # unit reads with all of them.
        at_once = min(len(plan.units), self._executor.concurrency)
        with tempfile.TemporaryDirectory(prefix="ddb-backup-compact-") as tmp:
            task = UnitTask(
                plan=plan.shared(),  # each unit's journal changes go with its UnitWork
                run_root=run_root,
                s3=self._s3_factory,
                read_concurrency=max(4, self._config.read_concurrency // at_once),
                skip_corrupt=self._config.skip_corrupt,
                local_dir=None if self._executor.distributed else tmp,
            )
            changes: list[UnitChangeResult] = self._checked(
                base, functools.partial(phase_changes, task), plan.work(), "list+fold"
            )
            key_schema, source = resolve_key_schema(
                self._dynamodb,
                self._table,
                base,
                next((r.sample_keys for r in changes if r.sample_keys), None),
            )
            key_names = [k.name for k in key_schema]
            changed_stats = merge_stats(r.stats for r in changes)
            merged = changed_stats
            wanted: tuple[Column, ...] = ()
            problem = None
            if base is not None:
                merged = merge_stats([stats_of(base.column_stats), changed_stats])
                wanted = _columns(merged, key_names)
                problem = column_change(base.columns, wanted)
            decision = decide(
                self._config.policy,
                base,
                sum(r.changed for r in changes),
                problem,
                rebuilt=self._rebuilt,
            )
            if decision.kind == "delta" and base is not None:
                columns = delta_columns(base.columns, wanted)
                written = self._map(
                    functools.partial(_phase_delta, task, columns), changes, "write delta"
                )
                files = [f for unit_files in written for f in unit_files]
                stats = merged
                items = base.item_count + sum(r.items_delta for r in changes)
                live = sum(f.rows for f in files if f.format == "parquet")
                removed = sum(f.rows for f in files if f.format == "tombstones")
                counts_extra = (items - live, removed)
            else:
                fulls: list[UnitResult] = self._checked(
                    base, functools.partial(phase_full, task), changes, "rows"
                )
                stats = merge_stats(r.stats for r in fulls)
                columns = _columns(stats, key_names)
                parquet = self._map(
                    functools.partial(_phase_parquet, task, columns), fulls, "parquet"
                )
                files = [
                    f
                    for f in [*(r.export for r in fulls), *(r.tombstones for r in fulls), *parquet]
                    if f is not None
                ]
                items = sum(r.rows for r in fulls)
                counts_extra = (sum(r.carried for r in fulls), sum(r.removed for r in fulls))
        files = [*files, *self._settings_files(capture, run_root)]
        newest = [r.newest_event_us for r in changes if r.newest_event_us is not None]
        if base is not None and base.newest_event_time_us is not None:
            newest.append(base.newest_event_time_us)
        delta = decision.kind == "delta" and base is not None
        manifest = Manifest(
            id=snapshot,
            table=self._table,
            as_of_us=as_of_us,
            built_at_us=self._now.now_us(),
            listing_watermark_us=watermark_us,
            base=base.id if base else None,
            shard_digits=plan.shard_digits,
            key_schema=key_schema,
            key_schema_source=source,
            columns=columns,
            files=tuple(sorted(files, key=lambda f: (f.format, f.unit))),
            counts=Counts(
                items=items,
                versions_listed=sum(r.listed for r in changes),
                objects_read=sum(r.read for r in changes),
                changed_keys=sum(r.changed_keys for r in changes),
                carried_rows=counts_extra[0],
                removed=counts_extra[1],
                journal_objects=plan.journal.objects if plan.journal else 0,
                journal_changes=plan.journal.changes if plan.journal else 0,
            ),
            newest_event_time_us=max(newest) if newest else None,
            run_id=run_id,
            skipped=(
                *(plan.journal.skipped if plan.journal else ()),
                *(s for r in changes for s in r.skipped),
            ),
            kind="delta" if delta else "full",
            parent=base.id if delta and base else None,
            depth=base.depth + 1 if delta and base else 0,
            column_stats=tuple(
                ColumnStats(name, tuple(sorted(s.tags)), s.max_integer_digits, s.max_scale, s.count)
                for name, s in sorted(stats.items())
            ),
            data_layout=DATA_LAYOUT,
            policy_reason=decision.reason,
            change_source=plan.source.kind,
            clock=self._now.reading,
        )
        # DynamoDB-style export manifests beside the export files, before the commit.
        manifest = exportmanifests.add_export_manifests(
            self._s3,
            self._bucket,
            self._prefix,
            manifest,
            parent_as_of_us=base.as_of_us if base and manifest.kind == "delta" else None,
        )
        return manifest, sum(r.newer_changes for r in changes)

    def _planned(self, as_of_us: int) -> tuple[StatePlan, JournalCheck | None, int]:
        """(the plan; with verify_journal, the check of its journal window, which, when
        the journal does not hold it completely, makes the plan list instead; the
        watermark). Every listing (the journal window's, while planning; the item
        versions') starts after the watermark: what was written before is in reach."""
        watermark_us = self._now.now_us()  # S3's: LastModified is S3's (compaction.clock)
        plan = self._plan(as_of_us, listing=self._config.listing)
        if not self._config.verify_journal:
            return plan, None, watermark_us
        check = self._check_journal(plan, watermark_us)
        if check.missing:
            plan = self._plan(as_of_us, listing=True)
        return plan, check, watermark_us

    def _check_journal(self, plan: StatePlan, watermark_us: int) -> JournalCheck:
        """Compare the journal window with the item versions it covers (only a plan that
        reads the journal alone has anything to compare)."""
        if plan.source.kind != JOURNAL or plan.journal is None:
            return JournalCheck(checked=False)
        return check_journal(
            self._s3,
            self._bucket,
            self._prefix,
            self._table,
            plan.journal,
            plan.since_us,
            watermark_us,
            skew_us=plan.skew_us,
            concurrency=self._config.read_concurrency,
        )

    def _plan(self, as_of_us: int, *, listing: bool) -> StatePlan:
        return plan_state(
            self._s3,
            self._bucket,
            self._prefix,
            self._table,
            as_of_us,
            full=self._rebuilt,
            shard_digits=self._config.shard_digits,
            skew_us=self._config.clock_skew_us,
            base_id=self._config.base_snapshot,
            listing=listing,
            skip_corrupt=self._config.skip_corrupt,
            read_concurrency=self._config.read_concurrency,
        )

    @property
    def _rebuilt(self) -> bool:
        return self._config.full or self._config.rebuild

    def _checked(
        self, base: Manifest | None, work: Callable[[Any], Any], items: list[Any], phase: str
    ) -> list[Any]:
        """_map, where a base (chain) file that fails verification names what to run instead."""
        try:
            return self._map(work, items, phase)
        except CorruptSnapshotError as e:
            if base is None:
                raise
            raise damaged_snapshot(
                self._s3, self._bucket, self._prefix, self._table, base, e, "compact"
            ) from e

    def _start_capture(self) -> BackgroundCapture | None:
        if self._dynamodb is None or not self._config.capture_settings:
            return None
        dynamodb, autoscaling, table = self._dynamodb, self._autoscaling, self._table
        return BackgroundCapture(
            lambda: capture_settings(dynamodb, table, autoscaling=autoscaling, clock=self._clock),
            table,
            self._config.settings_budget_seconds,
            clock=self._clock,
        )

    def _settings_files(self, capture: BackgroundCapture | None, run_root: str) -> list[DataFile]:
        if capture is None:
            return []
        return [upload_settings(self._s3, self._bucket, run_root, capture.result())]

    def _map(self, work: Callable[[Any], Any], items: list[Any], phase: str) -> list[Any]:
        results = []
        for done, result in enumerate(self._executor.map(work, items), start=1):
            results.append(result)
            self._progress(phase, done, len(items))
        return results


def _phase_parquet(task: UnitTask, columns: tuple[Column, ...], result: UnitResult) -> Any:
    return phase_parquet(task, result, columns)


def _phase_delta(
    task: UnitTask, columns: tuple[Column, ...], result: UnitChangeResult
) -> list[DataFile]:
    return phase_delta(task, columns, result)


def _columns(stats: Stats, key_names: list[str]) -> tuple[Column, ...]:
    return tuple(Column(name, kind) for name, kind in choose_columns(stats, key_names))


def stats_of(recorded: tuple[ColumnStats, ...]) -> Stats:
    """A manifest's column statistics as mergeable statistics."""
    return {
        s.name: AttributeStats(set(s.tags), s.max_integer_digits, s.max_scale, s.count)
        for s in recorded
    }
