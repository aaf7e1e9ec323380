"""Restore planning and execution: the state as of a time, written unit by unit into a table."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, CorruptSnapshotError, NotFoundError
from backup_lambda.layout import format_time_us, key_hash
from compaction.executor import ThreadUnitExecutor, UnitExecutor
from compaction.fallback import damaged_snapshot, files_present
from compaction.fold import Row
from compaction.keyschema import describe_key_schema
from compaction.manifest import KeyAttribute, Manifest, SkippedVersion
from compaction.settingsstore import settings_at
from compaction.state import StatePlan, StateReader, UnitWork, plan_state, read_state
from compaction.storedschema import recorded_schema
from jobs.restore.batchwrite import (
    BatchWriter,
    RestoreWriteError,
    UnwrittenItem,
    WriteRequest,
    WriteStats,
)
from jobs.restore.ddbitems import item_digest, item_size, to_client_item
from jobs.restore.guards import (
    DEFAULT_MAX_DELETE_PERCENT,
    Plan,
    big_delete_reasons,
    refuse_before_history,
    refuse_big_delete,
    refuse_source_as_target,
)
from jobs.restore.keys import KeyFilter
from jobs.restore.tablesettings import (
    SKIP_FLAG,
    RecreatePlan,
    SettingsOverrides,
    UnapplicableSettingsError,
    apply_after,
    compare_existing,
    create_from_plan,
    plan_recreate,
)
from jobs.restore.target import check_schema, describe_target, scan


class VerifyError(BackupError):
    """The target does not hold the restored state after the restore."""


@dataclass
class RestoreReport:
    """What a restore did (or, with dry_run, would do). Kept up to date while it runs, so a
    restore that fails still says what landed (`Restorer.report`)."""

    source: str
    target: str
    as_of_us: int
    snapshot: str | None
    mode: str = "bulk"  # bulk (empty target) | diff
    state_items: int = 0
    puts: int = 0  # written (with dry_run: would be written)
    deletes: int = 0
    unchanged: int = 0
    dry_run: bool = False
    writes: WriteStats = field(default_factory=WriteStats)
    verified: bool | None = None
    seconds: float = 0.0
    newest_event_us: int | None = None  # newest change folded in: the recovery point
    skipped: list[SkippedVersion] = field(default_factory=list)  # with --skip-corrupt
    target_items: int = 0  # items the target held before
    in_place: bool = False  # the target is the source table
    plan: Plan | None = None  # the dry pass's counts, when one ran
    needs_yes: list[str] = field(default_factory=list)  # a dry run's big-delete warnings
    stopped: bool = False  # ended before every item was written
    error: str | None = None  # why it stopped, when it did
    # Table settings: how the target was created (requests, what was not recreated or could
    # not be applied), or how an existing target's settings differ from the backup's.
    settings: dict[str, Any] = field(default_factory=dict)
    change_source: str = "listing"  # how the changes after the snapshot were found
    change_source_reason: str = ""

    @property
    def failures(self) -> list[UnwrittenItem]:
        return self.writes.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "as_of": format_time_us(self.as_of_us),
            "snapshot": self.snapshot,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "in_place": self.in_place,
            "target_items": self.target_items,
            "items": self.state_items,
            "puts": self.puts,
            "deletes": self.deletes,
            "unchanged": self.unchanged,
            "failed": len(self.failures),
            "failures": [f.as_json() for f in self.failures],
            "plan": (
                {
                    "puts": self.plan.puts,
                    "deletes": self.plan.deletes,
                    "unchanged": self.plan.unchanged,
                    "items_after": self.plan.items_after,
                }
                if self.plan
                else None
            ),
            "needs_yes": self.needs_yes,
            "stopped": self.stopped,
            "error": self.error,
            "change_source": self.change_source,
            "change_source_reason": self.change_source_reason,
            "batch_write_calls": self.writes.requests,
            "retried_items": self.writes.retried_items,
            "settings": self.settings,
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
    # Guards (docs/RESTORE.md): what needs the user's say-so.
    allow_empty: bool = False  # an as-of before the first backed-up change
    in_place: bool = False  # the target is the source table itself
    yes: bool = False  # deletes above max_delete_percent, or emptying the target
    max_delete_percent: float = DEFAULT_MAX_DELETE_PERCENT
    skip_unwritable: bool = False  # write the rest when an item cannot be written
    settings: SettingsOverrides = field(default_factory=SettingsOverrides)
    target_account: str | None = None  # for checking a recorded KMS key (None: unknown)


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
    skip_unwritable: bool = False


@dataclass
class UnitRestore:
    """What one unit's task did (puts and deletes: planned; `writes`: what landed)."""

    unit: str
    state_items: int = 0
    puts: int = 0
    deletes: int = 0
    unchanged: int = 0
    added: int = 0  # of the puts, keys the target did not hold
    newest_event_us: int | None = None
    writes: WriteStats = field(default_factory=WriteStats)
    digests: dict[str, str] = field(default_factory=dict)
    skipped: list[SkippedVersion] = field(default_factory=list)
    stopped: bool = False  # an item could not be written and the unit stopped writing
    error: BackupError | None = None  # the unit failed (returned, so its counts survive)


Work = tuple[UnitWork | str, Existing]


def restore_unit(task: RestoreTask, work: Work) -> UnitRestore:
    """Read one unit's state as of the plan's time, then put what the target lacks and
    delete the unit's target items that the state does not have. `work` is the unit (with
    its share of the journal window; a bare unit takes it from the task's plan) and the
    target's items in it (empty for an empty target). Failures are returned in the
    result, not raised, so that what the unit wrote before is still counted."""
    unit_work, existing = work
    unit, journal = (
        (unit_work, None) if isinstance(unit_work, str) else (unit_work.unit, unit_work.journal)
    )
    result = UnitRestore(unit)
    try:
        with ThreadPoolExecutor(task.read_concurrency, thread_name_prefix="s3-get") as reads:
            reader = StateReader(task.s3(), task.plan, reads, skip_corrupt=task.skip_corrupt)
            state = reader.unit(unit, journal)
    except BackupError as e:
        result.error = e
        return result
    result.newest_event_us = state.newest_event_us
    result.skipped = state.skipped
    requests = _unit_requests(task, state.rows, dict(existing), result)
    if task.dry_run:
        for _ in requests:  # a dry run only counts
            pass
        return result
    writer = BatchWriter(
        task.dynamodb(),
        task.target,
        workers=task.writers,
        max_wcu=task.max_wcu,
        skip_unwritable=task.skip_unwritable,
    )
    try:
        writer.submit(requests)
    except BackupError as e:
        result.error = e
    finally:
        try:
            writer.close()
        except BackupError as e:
            result.error = result.error or e
        result.writes = writer.stats
        result.stopped = writer.stopped
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
        result.added += current is None
        yield WriteRequest(
            {"PutRequest": {"Item": to_client_item(item)}}, item_size(item), row.change.keys
        )
    for _item_digest, keys in existing.values():
        result.deletes += 1
        yield WriteRequest({"DeleteRequest": {"Key": to_client_item(keys)}}, item_size(keys), keys)


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
    recorded = recorded_schema(s3, plan.bucket, plan.prefix, plan.table)
    if not recorded:
        raise NotFoundError(f"no backup of table {plan.table!r} in s3://{plan.bucket}")
    return recorded


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
        autoscaling: Any | None = None,
    ) -> None:
        """A distributed `executor` needs `client_factories` (S3, DynamoDB): picklable
        recipes the workers build their clients from. `autoscaling` (Application Auto
        Scaling) recreates the scaling targets and policies of a created table."""
        self._autoscaling = autoscaling
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
        self.report: RestoreReport | None = None  # what the last run did, also when it failed
        self.writing = False  # the last run got past its checks and began to write

    def run(self) -> RestoreReport:
        """Plan, decide the guards on a dry pass (before any write), then write.

        `self.report` holds what has been done so far, also when this raises."""
        started = time.perf_counter()
        opts = self._options
        self.report, self.writing = None, False
        refuse_source_as_target(self._source, self._target, opts.in_place)
        plan = self._plan()
        schema = backup_key_schema(self._s3, self._dynamodb, plan)
        report = self.report = RestoreReport(
            self._source,
            self._target,
            opts.as_of_us,
            plan.base.id if plan.base else None,
            dry_run=opts.dry_run,
            newest_event_us=plan.base.newest_event_time_us if plan.base else None,
            in_place=self._source == self._target,
            change_source=plan.source.kind,
            change_source_reason=plan.source.reason,
        )
        # Checks the target's keys (or plans its creation) before reading anything.
        exists, recreate = self._check_target(schema, report)
        key_names = [k.name for k in schema]
        existing: dict[str, Existing] = {unit: {} for unit in plan.units}
        if exists:  # one consistent read of the whole target decides bulk or diff
            for digest, entry in self._read_target(key_names, report).items():
                existing[digest[: plan.shard_digits]][digest] = entry
        report.mode = "diff" if report.target_items else "bulk"
        work: list[Work] = [(w, existing[w.unit]) for w in plan.work()]
        dry = self._dry_pass(plan, work, report)
        if dry is not None:
            report.plan = Plan(report.target_items, dry.puts, dry.deletes, dry.unchanged, dry.added)
            if report.in_place:
                self._announce(f"plan for {self._target!r} in place: {report.plan.describe()}")
            if opts.dry_run:
                dry.fill(report, written=False)
                report.needs_yes = big_delete_reasons(report.plan, opts.max_delete_percent)
                for line in recreate.lines(self._target) if recreate is not None else []:
                    self._announce(line)
                report.seconds = time.perf_counter() - started
                return report
            refuse_big_delete(self._target, report.plan, opts.max_delete_percent, opts.yes)

        if recreate is not None:
            self._create(recreate, report)
        self.writing = True
        done = self._execute(plan, work, dry_run=False, verify=opts.verify, into=report)
        report.seconds = time.perf_counter() - started
        if done.error is not None:
            error = self._unit_error(plan, done.error)
            report.stopped, report.error = True, str(error)
            raise error
        if report.failures:
            report.stopped = done.stopped
            raise RestoreWriteError(self._unwritten_message(report))
        if opts.verify:
            self._verify(key_names, done.digests)
            report.verified = True
        if recreate is not None:
            self._apply_after(recreate, report)
        report.seconds = time.perf_counter() - started
        return report

    def _check_target(
        self, schema: tuple[KeyAttribute, ...], report: RestoreReport
    ) -> tuple[bool, RecreatePlan | None]:
        """Before anything is read or written: (the target exists, the plan that would
        create it). A missing target is planned from the recorded settings (refused here when
        a setting cannot be applied); an existing one keeps its settings, and how they differ
        from the backup's is printed (a different key schema stops the restore)."""
        opts = self._options
        overrides = opts.settings
        actual = describe_target(self._dynamodb, self._target)
        if actual is not None:
            check_schema(self._target, actual, schema)
            recorded = overrides.settings_from or settings_at(
                self._s3, self._bucket, self._prefix, self._source, opts.as_of_us
            )
            if recorded is not None:
                differences = compare_existing(self._dynamodb, self._target, recorded)
                report.settings = {"target_existed": True, "differences": differences}
                if differences:
                    self._announce(
                        f"table {self._target!r} exists; its settings differ from the backup's "
                        "(backup -> target), and are left as they are:"
                    )
                    for line in differences:
                        self._announce(f"  {line}")
            return True, None
        if not opts.create_table:
            raise NotFoundError(
                f"target table {self._target!r} does not exist (add --create-table to create it)"
            )
        recorded = None
        if overrides.settings_from is None:
            recorded = settings_at(
                self._s3, self._bucket, self._prefix, self._source, opts.as_of_us
            )
        plan = plan_recreate(
            recorded,
            schema,
            self._target,
            overrides,
            region=getattr(getattr(self._dynamodb, "meta", None), "region_name", None),
            account=opts.target_account,
        )
        report.settings = plan.as_json()
        if plan.unapplicable and not overrides.skip_unapplicable:
            raise UnapplicableSettingsError(
                f"cannot recreate {self._target!r} as recorded: {'; '.join(plan.unapplicable)}; "
                f"nothing was written (rerun with {SKIP_FLAG} to create it without)"
            )
        return False, plan

    def _create(self, plan: RecreatePlan, report: RestoreReport) -> None:
        """One CreateTable, wait until ACTIVE, check what was made."""
        skip = self._options.settings.skip_unapplicable
        unapplied = create_from_plan(self._dynamodb, plan, skip)
        report.settings["unapplied"] = list(plan.unapplicable) + unapplied
        self._announce(f"created table {self._target!r} ({plan.summary()})")
        self._announce(plan.origin)
        for line in report.settings["unapplied"]:
            self._announce(f"not applied: {line}")
        for line in plan.not_recreated:
            self._announce(f"not recreated: {line}")

    def _apply_after(self, plan: RecreatePlan, report: RestoreReport) -> None:
        """Point-in-time recovery, auto scaling, then TTL: only now that the items are in."""
        clients = {"dynamodb": self._dynamodb, "application-autoscaling": self._autoscaling}
        applied, failed = apply_after(clients, plan, self._options.settings.skip_unapplicable)
        report.settings["applied_after_load"] = [r.operation for r in applied]
        report.settings["unapplied"] = report.settings.get("unapplied", []) + failed
        for request in applied:
            self._announce(f"applied {request.setting} ({request.operation})")
        for line in failed:
            self._announce(f"not applied: {line}")

    def _plan(self) -> StatePlan:
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
            # Before anything is written: every file of the base (and of its chain) is
            # there, at its pinned version and size (checksums are checked as each is read).
            try:
                files_present(self._s3, self._bucket, plan.base, plan.chain)
            except CorruptSnapshotError as e:
                raise self._damaged(plan.base, e) from e
        return plan

    def _dry_pass(self, plan: StatePlan, work: list[Work], report: RestoreReport) -> _Totals | None:
        """Count what the restore would do when a guard needs it (a diff, in place, a dry
        run), and refuse an as-of before the first backed-up change."""
        opts = self._options
        history = plan.base is not None and plan.base.newest_event_time_us is not None
        dry = None
        if report.mode == "diff" or report.in_place or opts.dry_run:
            dry = self._execute(plan, work, dry_run=True, verify=False)
            if dry.error is not None:
                raise self._unit_error(plan, dry.error)
            history = history or dry.newest_event_us is not None
        elif not history and not opts.allow_empty:
            history = self._probe_history(plan)
        if not opts.allow_empty:
            refuse_before_history(self._source, opts.as_of_us, history)
        return dry

    def _execute(
        self,
        plan: StatePlan,
        work: list[Work],
        *,
        dry_run: bool,
        verify: bool,
        into: RestoreReport | None = None,
    ) -> _Totals:
        """One pass over the units (a dry pass counts, a real one writes); stops at the
        first unit that fails, or that could not write an item without skip_unwritable.
        `into` is kept up to date unit by unit."""
        opts = self._options
        units = plan.units
        executor = self._executor or ThreadUnitExecutor(min(opts.units_at_once, len(units)))
        at_once = min(len(units), executor.concurrency)
        task = RestoreTask(
            plan=plan.shared(),  # each unit's journal changes go with its work item
            target=self._target,
            s3=self._factories[0],
            dynamodb=self._factories[1],
            key_filter=opts.key_filter,
            dry_run=dry_run,
            keep_digests=verify,
            writers=opts.workers,
            # the units running together share the cap
            max_wcu=opts.max_wcu / at_once if opts.max_wcu else None,
            read_concurrency=opts.read_concurrency,
            skip_corrupt=opts.skip_corrupt,
            skip_unwritable=opts.skip_unwritable,
        )
        totals = _Totals()
        results = executor.map(functools.partial(restore_unit, task), work)
        try:
            for done, unit in enumerate(results, start=1):
                totals.add(unit)
                if into is not None:
                    totals.fill(into, written=not dry_run)
                self._progress("plan" if dry_run else "restore", done, len(units))
                if unit.error is not None or unit.stopped:
                    break
        finally:
            _close(results)  # stopping early starts no further unit
        return totals

    def _unit_error(self, plan: StatePlan, error: BackupError) -> BackupError:
        if isinstance(error, CorruptSnapshotError) and plan.base is not None:
            return self._damaged(plan.base, error)
        return error

    def _damaged(self, base: Manifest, error: CorruptSnapshotError) -> CorruptSnapshotError:
        """The base failed verification: say which older snapshot to use (--snapshot)."""
        return damaged_snapshot(
            self._s3, self._bucket, self._prefix, self._source, base, error, "restore"
        )

    def _probe_history(self, plan: StatePlan) -> bool:
        """Whether any backed-up change is at or before the as-of: unit by unit, stopping
        at the first unit that holds one (usually the first unit)."""
        opts = self._options
        states = read_state(self._s3, plan, opts.read_concurrency, skip_corrupt=opts.skip_corrupt)
        try:
            for state in states:
                if state.newest_event_us is not None or state.rows or state.removed:
                    return True
        except BackupError as e:
            raise self._unit_error(plan, e) from e
        finally:
            _close(states)
        return False

    def _unwritten_message(self, report: RestoreReport) -> str:
        count = len(report.failures)
        noun = "item" if count == 1 else "items"
        if self._options.skip_unwritable:
            return (
                f"{count} {noun} could not be written to {self._target!r} (named above); "
                "every other item was written"
            )
        return (
            f"{count} {noun} could not be written to {self._target!r} (named above); the "
            "restore stopped there: add --skip-unwritable to write the rest"
        )

    def _read_target(self, key_names: list[str], report: RestoreReport | None = None) -> Existing:
        """key hash -> (item digest, key) for the target's items in the restore's scope,
        by a parallel scan with consistent reads; counts every item into `report`."""
        existing: Existing = {}
        for item in scan(self._dynamodb, self._target):
            if report is not None:
                report.target_items += 1
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


@dataclass
class _Totals:
    """The units' results of one pass, added up."""

    state_items: int = 0
    puts: int = 0
    deletes: int = 0
    unchanged: int = 0
    added: int = 0
    newest_event_us: int | None = None
    writes: WriteStats = field(default_factory=WriteStats)
    digests: dict[str, str] = field(default_factory=dict)
    skipped: list[SkippedVersion] = field(default_factory=list)
    stopped: bool = False
    error: BackupError | None = None

    def add(self, unit: UnitRestore) -> None:
        self.state_items += unit.state_items
        self.puts += unit.puts
        self.deletes += unit.deletes
        self.unchanged += unit.unchanged
        self.added += unit.added
        self.writes.add(unit.writes)
        self.digests.update(unit.digests)
        self.skipped += unit.skipped
        if unit.newest_event_us is not None:
            self.newest_event_us = max(self.newest_event_us or 0, unit.newest_event_us)
        self.stopped = self.stopped or unit.stopped
        self.error = self.error or unit.error

    def fill(self, report: RestoreReport, *, written: bool) -> None:
        """Copy into the report: what was written (a real pass) or would be (a dry one)."""
        report.state_items = self.state_items
        report.unchanged = self.unchanged
        report.puts = self.writes.puts if written else self.puts
        report.deletes = self.writes.deletes if written else self.deletes
        report.writes = self.writes
        report.skipped = list(self.skipped)
        if self.newest_event_us is not None:
            report.newest_event_us = max(report.newest_event_us or 0, self.newest_event_us)


def _close(results: Iterator[Any]) -> None:
    """Close a generator that is left early (its cleanup runs now, not when collected)."""
    close = getattr(results, "close", None)
    if close is not None:
        close()
