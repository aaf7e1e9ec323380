"""`ddb-backup restore`: make a table hold exactly the source table's items as of a time."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import AttributeValue, Item, canonical_key_value
from backup_lambda.errors import BackupError, InvalidValueError, NotFoundError, UserInputError
from backup_lambda.layout import decode_change, format_time_us, items_prefix, key_hash
from compaction.executor import ThreadUnitExecutor, UnitExecutor
from compaction.fold import Row
from compaction.keyschema import describe_key_schema, recorded_key_schema
from compaction.manifest import KeyAttribute
from compaction.s3errors import translate
from compaction.state import StatePlan, StateReader, plan_state
from jobs.args import add_executor_arguments, executor_from, parse_key, parse_time, positive_int
from jobs.batchwrite import BatchWriter, WriteRequest, WriteStats
from jobs.clients import ClientFactory, make_client, settings_from
from jobs.ddbitems import item_digest, item_size, to_client_item
from jobs.output import emit_json
from jobs.progress import ProgressBar
from jobs.target import is_empty, require_target, scan


class VerifyError(BackupError):
    """The target does not hold the restored state after the restore."""


@dataclass(frozen=True)
class KeyFilter:
    """Which items a partial restore covers (both None: the whole table)."""

    key_hashes: frozenset[str] | None = None
    partition: tuple[str, list[str]] | None = None  # (attribute, canonical value)

    def matches(self, digest: str, item: Item) -> bool:
        if self.key_hashes is not None and digest not in self.key_hashes:
            return False
        if self.partition is not None:
            name, value = self.partition
            if name not in item or canonical_key_value(item[name]) != value:
                return False
        return True

    @property
    def partial(self) -> bool:
        return self.key_hashes is not None or self.partition is not None


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
        }


@dataclass(frozen=True)
class RestoreOptions:
    as_of_us: int
    create_table: bool = False
    dry_run: bool = False
    key_filter: KeyFilter = KeyFilter()
    max_wcu: float | None = None
    verify: bool = False
    workers: int = 8  # BatchWriteItem calls in flight per unit task
    read_concurrency: int = 32
    shard_digits: int | None = None  # units of the key space (None: sized to the table)
    units_at_once: int = 2  # unit tasks running together on local threads


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
    key_filter: KeyFilter = KeyFilter()
    dry_run: bool = False
    keep_digests: bool = False  # return every item's digest (for --verify)
    writers: int = 8
    max_wcu: float | None = None  # this task's share of the cap
    read_concurrency: int = 32


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


def restore_unit(task: RestoreTask, work: tuple[str, Existing]) -> UnitRestore:
    """Read one unit's state as of the plan's time, then put what the target lacks and
    delete the unit's target items that the state does not have. `work` is the unit and
    the target's items in it (empty for an empty target)."""
    unit, existing = work
    with ThreadPoolExecutor(task.read_concurrency, thread_name_prefix="s3-get") as reads:
        state = StateReader(task.s3(), task.plan, reads).unit(unit)
    result = UnitRestore(unit, newest_event_us=state.newest_event_us)
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
        body = s3.get_object(Bucket=plan.bucket, Key=key)["Body"].read()
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
        )
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
        )
        expected: dict[str, str] = {}
        results = executor.map(functools.partial(restore_unit, task), list(existing.items()))
        for done, unit in enumerate(results, start=1):
            report.state_items += unit.state_items
            report.puts += unit.puts
            report.deletes += unit.deletes
            report.unchanged += unit.unchanged
            report.writes.add(unit.writes)
            if unit.newest_event_us is not None:
                report.newest_event_us = max(report.newest_event_us or 0, unit.newest_event_us)
            expected.update(unit.digests)
            self._progress("restore", done, len(units))
        if opts.verify and not opts.dry_run:
            self._verify(key_names, expected)
            report.verified = True
        report.seconds = time.perf_counter() - started
        return report

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


def partition_filter(schema: tuple[KeyAttribute, ...], value: str) -> tuple[str, list[str]]:
    hash_keys = [k for k in schema if k.key_type == "HASH"]
    if len(hash_keys) != 1:
        raise UserInputError(
            "--key-prefix needs to know the partition key, which the backup does not record"
        )
    attribute = hash_keys[0]
    typed: AttributeValue = {attribute.attribute_type: value}
    try:
        return attribute.name, canonical_key_value(typed, "--key-prefix")
    except InvalidValueError as e:
        raise UserInputError(str(e)) from None


def _check_key(keys: Item, schema: tuple[KeyAttribute, ...]) -> None:
    """A key with other attribute names or types than the table's can match no item."""

    def spell(pairs: dict[str, str]) -> str:
        return ", ".join(f"{name} {kind}" for name, kind in sorted(pairs.items()))

    expected = {k.name: k.attribute_type for k in schema}
    actual = {name: next(iter(value)) for name, value in keys.items()}
    if expected and actual != expected:
        raise UserInputError(
            f"key ({spell(actual)}) can match no item: the table's key is ({spell(expected)})"
        )


def read_key_file(path: str, schema: tuple[KeyAttribute, ...] = ()) -> frozenset[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserInputError(f"--keys {path}: {e.strerror}") from None
    hashes = set()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                keys = parse_key(line)
                _check_key(keys, schema)
                hashes.add(key_hash(keys))
            except UserInputError as e:
                raise UserInputError(f"--keys {path} line {number}: {e}") from None
    return frozenset(hashes)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "restore",
        parents=[common],
        help="make a table hold exactly the items of --table as of a time",
        description="Restore the state of --table as of TIME (default: the latest backed-up "
        "change) into --to. An empty target is bulk-loaded; a target with data gets only "
        "the puts and deletes that make it equal to that state.",
    )
    parser.add_argument("--to", required=True, metavar="TARGET", help="the table to write")
    parser.add_argument("--as-of", help="point in time (default: now, the latest state)")
    parser.add_argument(
        "--create-table", action="store_true", help="create TARGET (on-demand) if missing"
    )
    parser.add_argument("--dry-run", action="store_true", help="count puts and deletes only")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--keys", metavar="FILE", help="only these keys: one JSON key a line")
    scope.add_argument("--key-prefix", metavar="VALUE", help="only this partition key value")
    parser.add_argument(
        "--max-wcu", type=positive_int, help="cap on write capacity units per second"
    )
    parser.add_argument(
        "--verify", action="store_true", help="re-read TARGET and compare every item"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=8,
        help="BatchWriteItem calls in flight per unit task (two units run at once locally)",
    )
    parser.add_argument(
        "--read-concurrency", type=positive_int, default=32, help="S3 GETs in flight per unit"
    )
    add_executor_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    now_us = int(time.time() * 1_000_000)
    as_of = parse_time(args.as_of) if args.as_of else now_us
    if as_of > now_us:
        raise UserInputError(f"--as-of {format_time_us(as_of)} is in the future")
    settings = settings_from(args, max_pool_connections=args.read_concurrency + args.workers + 8)
    s3 = make_client("s3", settings)
    dynamodb = make_client("dynamodb", settings)
    key_filter = KeyFilter()
    if args.keys is not None or args.key_prefix is not None:
        plan = plan_state(s3, args.bucket, args.prefix, args.table, as_of)
        schema = backup_key_schema(s3, dynamodb, plan)
        if args.keys is not None:
            key_filter = KeyFilter(key_hashes=read_key_file(args.keys, schema))
        else:
            key_filter = KeyFilter(partition=partition_filter(schema, args.key_prefix))
    progress = ProgressBar(enabled=False if args.json else None)
    announce: Callable[[str], None] = (lambda text: None) if args.json else print
    executor = executor_from(args)
    restorer = Restorer(
        s3,
        dynamodb,
        args.bucket,
        args.table,
        args.to,
        prefix=args.prefix,
        options=RestoreOptions(
            as_of_us=as_of,
            create_table=args.create_table,
            dry_run=args.dry_run,
            key_filter=key_filter,
            max_wcu=args.max_wcu,
            verify=args.verify,
            workers=args.workers,
            read_concurrency=args.read_concurrency,
            shard_digits=args.shard_digits,
        ),
        announce=announce,
        progress=progress,
        executor=executor,
        client_factories=(ClientFactory("s3", settings), ClientFactory("dynamodb", settings)),
    )
    try:
        report = restorer.run()
    finally:
        progress.close()
        if executor is not None:
            executor.close()
    if args.json:
        emit_json(report.as_json())
        return 0
    verb = "would put" if report.dry_run else "put"
    source = f"snapshot {report.snapshot} + changes" if report.snapshot else "object versions"
    print(
        f"{args.table} as of {format_time_us(report.as_of_us)} -> {args.to} ({report.mode}, "
        f"from {source}): {report.state_items} items; {verb} {report.puts}, "
        f"{'would delete' if report.dry_run else 'deleted'} {report.deletes}, "
        f"unchanged {report.unchanged}; {report.writes.requests} BatchWriteItem calls; "
        f"{report.seconds:.2f}s" + ("; verified" if report.verified else "")
    )
    return 0
