"""Restore planning and execution: the state as of a time, written unit by unit into a table."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, CorruptSnapshotError, NotFoundError
from backup_lambda.layout import decode_change, format_time_us, items_prefix, key_hash
from compaction.executor import ThreadUnitExecutor, UnitExecutor
from compaction.fallback import damaged_snapshot, files_present
from compaction.fold import Row
from compaction.keyschema import describe_key_schema, recorded_key_schema
from compaction.manifest import KeyAttribute, Manifest, SkippedVersion
from compaction.s3errors import translate
from compaction.s3read import get_bytes
from compaction.state import StatePlan, StateReader, plan_state
from jobs.restore.batchwrite import BatchWriter, WriteRequest, WriteStats
from jobs.restore.ddbitems import item_digest, item_size, to_client_item
from jobs.restore.keys import KeyFilter
from jobs.restore.target import is_empty, require_target, scan


class VerifyError(BackupError):
    """The target does not hold the restored state after the restore."""


@dataclass
class RestoreReport:
    source: str
    target: str
    as_of_us: int
    snapshot: str | None
    mode: str = "bulk"  # bulk (empty target) | diff
    state_items: int = 0
    puts: int = 0
    deletes: int = 0
    unchanged: int = 0
    dry_run: bool = False
    writes: WriteStats = field(default_factory=WriteStats)
    verified: bool | None = None
    seconds: float = 0.0
    newest_event_us: int | None = None  # newest change folded in: the recovery point
    skipped: list[SkippedVersion] = field(default_factory=list)  # with --skip-corrupt

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "as_of": format_time_us(self.as_of_us),
            "snapshot": self.snapshot,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "items": self.state_items,
            "puts": self.puts,
            "deletes": self.deletes,
            "unchanged": self.unchanged,
            "batch_write_calls": self.writes.requests,
            "retried_items": self.writes.retried_items,
            "verified": self.verified,
            "newest_event_time": (
                format_time_us(self.newest_event_us) if self.newest_event_us else None
            ),
            "seconds": round(self.seconds, 3),
            "skipped_versions": [asdict(s) for s in self.skipped],
        }


@dataclass(frozen=True)
class RestoreOptions:
    as_of_us: int
    create_table: bool = False
    dry_run: bool = False
    key_filter: KeyFilter = field(default_factory=KeyFilter)
    max_wcu: float | None = None
    verify: bool = False
    workers: int = 8  # BatchWriteItem calls in flight per unit task
    read_concurrency: int = 32
    shard_digits: int | None = None  # units of the key space (None: sized to the table)
    units_at_once: int = 2  # unit tasks running together on local threads
    snapshot: str | None = None  # the base to start from (default: newest as of the time)
    skip_corrupt: bool = False  # skip unreadable item versions (never snapshot files)


# The target's items in a restore's scope: key hash -> (item digest, key attributes).
Existing = dict[str, tuple[str, Item]]


@dataclass(frozen=True)
class RestoreTask:
    """Everything a unit task needs, picklable: on a distributed worker `s3` and
    `dynamodb` build that worker's own clients."""

    plan: StatePlan
    target: str
    s3: Callable[[], Any]
    dynamodb: Callable[[], Any]
    key_filter: KeyFilter = field(default_factory=KeyFilter)
    dry_run: bool = False
    keep_digests: bool = False  # return every item's digest (for --verify)
    writers: int = 8
    max_wcu: float | None = None  # this task's share of the cap
    read_concurrency: int = 32
    skip_corrupt: bool = False


@dataclass
class UnitRestore:
    """What one unit's task did."""

    unit: str
    state_items: int = 0
    puts: int = 0
    deletes: int = 0
    unchanged: int = 0
    newest_event_us: int | None = None
    writes: WriteStats = field(default_factory=WriteStats)
    digests: dict[str, str] = field(default_factory=dict)
    skipped: list[SkippedVersion] = field(default_factory=list)


def restore_unit(task: RestoreTask, work: tuple[str, Existing]) -> UnitRestore:
    """Read one unit's state as of the plan's time, then put what the target lacks and
    delete the unit's target items that the state does not have. `work` is the unit and
    the target's items in it (empty for an empty target)."""
    unit, existing = work
    with ThreadPoolExecutor(task.read_concurrency, thread_name_prefix="s3-get") as reads:
        state = StateReader(task.s3(), task.plan, reads, skip_corrupt=task.skip_corrupt).unit(unit)
    result = UnitRestore(unit, newest_event_us=state.newest_event_us, skipped=state.skipped)
    requests = _unit_requests(task, state.rows, dict(existing), result)
    if task.dry_run:
        for _ in requests:  # a dry run only counts
            pass
        return result
    writer = BatchWriter(task.dynamodb(), task.target, workers=task.writers, max_wcu=task.max_wcu)
    try:
        writer.submit(requests)
    finally:
        result.writes = writer.close()
    return result


def _unit_requests(
    task: RestoreTask, rows: list[Row], existing: Existing, result: UnitRestore
) -> Iterator[WriteRequest]:
    for row in rows:
        item = row.change.new_image or {}
        if not task.key_filter.matches(row.key_hash, item):
            continue
        result.state_items += 1
        digest = item_digest(item)
        if task.keep_digests:
            result.digests[row.key_hash] = digest
        current = existing.pop(row.key_hash, None)
        if current is not None and current[0] == digest:
            result.unchanged += 1
            continue
        result.puts += 1
        yield WriteRequest({"PutRequest": {"Item": to_client_item(item)}}, item_size(item))
    for _item_digest, keys in existing.values():
        result.deletes += 1
        yield WriteRequest({"DeleteRequest": {"Key": to_client_item(keys)}}, item_size(keys))


def backup_key_schema(s3: Any, dynamodb: Any, plan: StatePlan) -> tuple[KeyAttribute, ...]:
    """From the base snapshot, else the live source table, else one stored version."""
    if plan.base is not None and plan.base.key_schema:
        schema = plan.base.key_schema
        if all(k.key_type for k in schema):
            return schema
    described = describe_key_schema(dynamodb, plan.table)
    recorded = _recorded(s3, plan)
    if described is not None and {k.name for k in described} == {k.name for k in recorded}:
        return described
    return recorded


def _recorded(s3: Any, plan: StatePlan) -> tuple[KeyAttribute, ...]:
    root = items_prefix(plan.prefix, plan.table)
    try:
        listing = s3.list_objects_v2(Bucket=plan.bucket, Prefix=root, MaxKeys=1)
        contents = listing.get("Contents", [])
        if not contents:
            raise NotFoundError(f"no backup of table {plan.table!r} in s3://{plan.bucket}")
        key = contents[0]["Key"]
        body = get_bytes(s3, plan.bucket, key)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, plan.bucket, root) from e
    return recorded_key_schema(decode_change(body, f"s3://{plan.bucket}/{key}").keys)


class Restorer:
    """Plans a restore, reads the target once (a diff restore), runs one task per unit of
    the key space on the executor (local threads by default, or a distributed engine),
    then adds up the units' reports."""

    def __init__(
        self,
        s3: Any,
        dynamodb: Any,
        bucket: str,
        source: str,
        target: str,
        prefix: str = "",
        options: RestoreOptions | None = None,
        announce: Callable[[str], None] = print,
        progress: Callable[[str, int, int], None] | None = None,
        executor: UnitExecutor | None = None,
        client_factories: tuple[Callable[[], Any], Callable[[], Any]] | None = None,
    ) -> None:
        """A distributed `executor` needs `client_factories` (S3, DynamoDB): picklable
        recipes the workers build their clients from."""
        self._s3 = s3
        self._dynamodb = dynamodb
        self._bucket = bucket
        self._source = source
        self._target = target
        self._prefix = prefix
        self._options = options or RestoreOptions(as_of_us=int(time.time() * 1_000_000))
        self._announce = announce
        self._progress = progress or (lambda phase, done, total: None)
        self._executor = executor
        if executor is not None and executor.distributed and client_factories is None:
            raise ValueError("a distributed executor needs client_factories for its workers")
        self._factories = client_factories or ((lambda: s3), (lambda: dynamodb))

    def run(self) -> RestoreReport:
        started = time.perf_counter()
        opts = self._options
        plan = plan_state(
            self._s3,
            self._bucket,
            self._prefix,
            self._source,
            opts.as_of_us,
            shard_digits=opts.shard_digits,
            base_id=opts.snapshot,
        )
        if plan.base is not None:
            # Before anything is written: every file of the base is there, at its pinned
            # version and size (checksums are checked as each is read).
            try:
                files_present(self._s3, self._bucket, plan.base)
            except CorruptSnapshotError as e:
                raise self._damaged(plan.base, e) from e
        schema = backup_key_schema(self._s3, self._dynamodb, plan)
        report = RestoreReport(
            self._source,
            self._target,
            opts.as_of_us,
            plan.base.id if plan.base else None,
            dry_run=opts.dry_run,
            newest_event_us=plan.base.newest_event_time_us if plan.base else None,
        )
        exists = require_target(
            self._dynamodb, self._target, schema, opts.create_table, opts.dry_run, self._announce
        )
        key_names = [k.name for k in schema]
        existing: dict[str, Existing] = {unit: {} for unit in plan.units}
        if exists and not is_empty(self._dynamodb, self._target):
            report.mode = "diff"
            for digest, entry in self._read_target(key_names).items():
                existing[digest[: plan.shard_digits]][digest] = entry
        units = plan.units
        executor = self._executor or ThreadUnitExecutor(min(opts.units_at_once, len(units)))
        at_once = min(len(units), executor.concurrency)
        task = RestoreTask(
            plan=plan,
            target=self._target,
            s3=self._factories[0],
            dynamodb=self._factories[1],
            key_filter=opts.key_filter,
            dry_run=opts.dry_run,
            keep_digests=opts.verify,
            writers=opts.workers,
            # the units running together share the cap
            max_wcu=opts.max_wcu / at_once if opts.max_wcu else None,
            read_concurrency=opts.read_concurrency,
            skip_corrupt=opts.skip_corrupt,
        )
        expected: dict[str, str] = {}
        results = executor.map(functools.partial(restore_unit, task), list(existing.items()))
        try:
            for done, unit in enumerate(results, start=1):
                report.state_items += unit.state_items
                report.puts += unit.puts
                report.deletes += unit.deletes
                report.unchanged += unit.unchanged
                report.writes.add(unit.writes)
                if unit.newest_event_us is not None:
                    report.newest_event_us = max(report.newest_event_us or 0, unit.newest_event_us)
                expected.update(unit.digests)
                report.skipped += unit.skipped
                self._progress("restore", done, len(units))
        except CorruptSnapshotError as e:
            if plan.base is None:
                raise
            raise self._damaged(plan.base, e) from e
        if opts.verify and not opts.dry_run:
            self._verify(key_names, expected)
            report.verified = True
        report.seconds = time.perf_counter() - started
        return report

    def _damaged(self, base: Manifest, error: CorruptSnapshotError) -> CorruptSnapshotError:
        """The base failed verification: say which older snapshot to use (--snapshot)."""
        return damaged_snapshot(
            self._s3, self._bucket, self._prefix, self._source, base, error, "restore"
        )

    def _read_target(self, key_names: list[str]) -> Existing:
        """key hash -> (item digest, key) for the target's items in the restore's scope."""
        existing: Existing = {}
        for item in scan(self._dynamodb, self._target):
            keys = {name: item[name] for name in key_names}
            digest = key_hash(keys)
            if self._options.key_filter.matches(digest, item):
                existing[digest] = (item_digest(item), keys)
        return existing

    def _verify(self, key_names: list[str], expected: dict[str, str]) -> None:
        actual = self._read_target(key_names)
        missing = [d for d in expected if d not in actual]
        extra = [d for d in actual if d not in expected]
        different = [d for d, v in expected.items() if d in actual and actual[d][0] != v]
        if missing or extra or different:
            raise VerifyError(
                f"verify failed on {self._target!r}: {len(missing)} missing, {len(extra)} "
                f"unexpected, {len(different)} different of {len(expected)} items"
            )
