"""`restore --via import-table`: DynamoDB's ImportTable creates the target from a full
snapshot's export files (no write capacity used: the right path for large tables), then
BatchWriteItem applies the changes after the snapshot up to --as-of.

ImportTable reads every object under an S3 prefix at its current version; before it is
called, the snapshot's `export/data/` prefix is checked to hold exactly the snapshot's
files at their pinned versions and sizes. ImportTable only creates new tables (an
existing target is refused) and logs rejected items to CloudWatch Logs; its counts are
reported, and an import that did not load every item of the snapshot fails the restore.

The table comes from the same plan as `restore --create-table`'s CreateTable (the recorded
settings and the same overrides): ImportTable's TableCreationParameters carry the keys,
billing and capacity, global indexes and encryption; once the import is done, UpdateTable
and TagResource give the table its stream, table class, deletion protection and tags; after
the changes are written, PITR, auto scaling and TTL (last). ImportTable creates no local
indexes: a backup that records some is refused unless --skip-unapplicable (or
--no-indexes) says to go on without them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import (
    BackupError,
    CorruptSnapshotError,
    NotFoundError,
    StorageError,
    UserInputError,
)
from backup_lambda.layout import format_time_us
from compaction import catalog
from compaction.executor import ThreadUnitExecutor, UnitExecutor
from compaction.exportmanifests import EXPORT_FORMAT, export_root
from compaction.fallback import files_present
from compaction.manifest import KeyAttribute, Manifest
from compaction.s3errors import translate
from compaction.settingsstore import settings_at
from compaction.state import StateReader, plan_state
from compaction.tablesettings import TABLE
from jobs.cli.args import executor_from
from jobs.cli.clients import ClientFactory, make_client, settings_from
from jobs.cli.output import emit_json, warn
from jobs.cli.progress import progress_for
from jobs.restore.batchwrite import BatchWriter, WriteRequest, WriteStats
from jobs.restore.ddbitems import item_size, to_client_item
from jobs.restore.restorer import RestoreTask, backup_key_schema
from jobs.restore.settingsargs import caller_account, overrides_from
from jobs.restore.tablesettings import (
    SKIP_FLAG,
    RecreatePlan,
    Request,
    SettingsOverrides,
    UnapplicableSettingsError,
    apply_after,
    blamed_setting,
    check_created,
    import_table_parameters,
    plan_recreate,
    table_summary,
    wait_active,
)
from jobs.restore.target import describe_target

POLL_SECONDS = 10.0
_FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class ImportTableError(BackupError):
    """ImportTable failed, or did not load every item of the snapshot."""


@dataclass(frozen=True)
class ImportTableOptions:
    as_of_us: int
    snapshot: str | None = None  # a full snapshot at or before as-of (default: the newest)
    dry_run: bool = False  # plan and check, print the request; call nothing
    workers: int = 8  # BatchWriteItem calls in flight per unit (the changes after it)
    read_concurrency: int = 32
    max_wcu: float | None = None
    shard_digits: int | None = None
    units_at_once: int = 2
    skip_corrupt: bool = False
    poll_seconds: float = POLL_SECONDS
    settings: SettingsOverrides = field(default_factory=SettingsOverrides)
    target_account: str | None = None  # to check a recorded KMS key (None: unknown)


@dataclass
class ImportTableReport:
    source: str
    target: str
    as_of_us: int
    snapshot: str
    snapshot_items: int
    request: dict[str, Any]
    not_carried: list[str] = field(default_factory=list)
    dry_run: bool = False
    recreate: RecreatePlan | None = None  # the table's settings (the after-load requests)
    after_import: list[Request] = field(default_factory=list)  # stream, class, protection, tags
    unapplied: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # the follow-up requests that were sent
    import_arn: str | None = None
    status: str | None = None
    imported: int = 0
    processed: int = 0
    errors: int = 0
    log_group: str | None = None
    waited_seconds: float = 0.0
    puts: int = 0
    deletes: int = 0
    writes: WriteStats = field(default_factory=WriteStats)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "as_of": format_time_us(self.as_of_us),
            "via": "import-table",
            "snapshot": self.snapshot,
            "snapshot_items": self.snapshot_items,
            "dry_run": self.dry_run,
            "import_arn": self.import_arn,
            "import_status": self.status,
            "imported_items": self.imported,
            "processed_items": self.processed,
            "import_errors": self.errors,
            "error_log_group": self.log_group,
            "import_seconds": round(self.waited_seconds, 3),
            "puts": self.puts,
            "deletes": self.deletes,
            "batch_write_calls": self.writes.requests,
            "not_carried": self.not_carried,
            "settings": self.settings_json(),
            "seconds": round(self.seconds, 3),
        }

    def requests(self) -> list[Request]:
        """Every request that makes the table, in the order they are sent."""
        first = Request("dynamodb", "ImportTable", self.request, "table")
        after = list(self.recreate.after) if self.recreate else []
        return [first, *self.after_import, *after]

    def settings_json(self) -> dict[str, Any]:
        plan = self.recreate
        return {
            "origin": plan.origin if plan else "",
            "requests": [r.as_json() for r in self.requests()],
            "not_recreated": list(plan.not_recreated) if plan else [],
            "unapplicable": list(plan.unapplicable) if plan else [],
            "unapplied": self.unapplied,
            "applied": self.applied,
        }

    def lines(self) -> list[str]:
        """What a dry run prints: the exact requests, in the order they would be sent."""
        params = self.request["TableCreationParameters"]
        out = [
            f"would import table {self.target!r} ({table_summary(params)}) from snapshot "
            f"{self.snapshot} ({self.snapshot_items} items)"
        ]
        if self.recreate is not None:
            out.append(self.recreate.origin)
        out.append(f"ImportTable {json.dumps(self.request, indent=2, sort_keys=True)}")
        if self.after_import:
            out.append("once the import is done:")
            out += [r.text() for r in self.after_import]
        if self.recreate is not None and self.recreate.after:
            out.append("after the changes since the snapshot are written:")
            out += [r.text() for r in self.recreate.after]
        out += [f"not carried: {line}" for line in self.not_carried]
        return out


def _error(error: BaseException) -> str:
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code')}: {detail.get('Message')}"
    return f"{type(error).__name__}: {error}"


def data_prefix(prefix: str, snapshot: Manifest) -> str:
    """The prefix ImportTable loads: the snapshot's JSON lines files, and nothing else."""
    return export_root(prefix, snapshot) + "data/"


def import_table_request(
    bucket: str, prefix: str, snapshot: Manifest, parameters: dict[str, Any]
) -> dict[str, Any]:
    """The ImportTable request (pure), with `parameters` as its TableCreationParameters. The
    client token makes a retry of the same request within DynamoDB's 8 hours return the
    same import instead of starting another; other parameters (a setting dropped after a
    refusal) get another token, as DynamoDB refuses a token reused with other parameters."""
    target = parameters["TableName"]
    digest = hashlib.sha256(
        f"{bucket}/{snapshot.table}/{snapshot.id}/{snapshot.run_id}/{target}/".encode()
        + json.dumps(parameters, sort_keys=True).encode()
    )
    return {
        "S3BucketSource": {"S3Bucket": bucket, "S3KeyPrefix": data_prefix(prefix, snapshot)},
        "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": "GZIP",
        "TableCreationParameters": parameters,
        "ClientToken": digest.hexdigest()[:32],
    }


def check_import_source(s3: Any, bucket: str, prefix: str, snapshot: Manifest) -> None:
    """ImportTable reads whatever is under the prefix now: it must be exactly the snapshot's
    export files, at the versions the manifest pins, with their sizes."""
    root = data_prefix(prefix, snapshot)
    expected = {f.key: f for f in snapshot.files_of(EXPORT_FORMAT)}
    try:
        paginator = s3.get_paginator("list_objects_v2")
        stored = {
            entry["Key"]: int(entry["Size"])
            for page in paginator.paginate(Bucket=bucket, Prefix=root)
            for entry in page.get("Contents", [])
        }
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, root) from e
    for key in sorted(set(stored) - set(expected)):
        raise CorruptSnapshotError(
            f"s3://{bucket}/{key} is under the prefix ImportTable would load but is not a file "
            f"of snapshot {snapshot.id}; remove it or restore without --via import-table"
        )
    for key, data_file in sorted(expected.items()):
        if stored.get(key) != data_file.bytes:
            raise CorruptSnapshotError(
                f"snapshot file s3://{bucket}/{key}: {stored.get(key)} bytes now, the manifest "
                f"says {data_file.bytes}"
            )
        if data_file.version_id is None:
            continue
        try:
            current = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        except (ClientError, BotoCoreError) as e:
            raise translate(e, bucket, key) from e
        if current != data_file.version_id:
            raise CorruptSnapshotError(
                f"snapshot file s3://{bucket}/{key}: its current version is {current}, the "
                f"manifest pins {data_file.version_id} (ImportTable reads the current one)"
            )


@dataclass
class UnitChanges:
    unit: str
    puts: int = 0
    deletes: int = 0
    writes: WriteStats = field(default_factory=WriteStats)


def apply_unit_changes(task: RestoreTask, unit: str) -> UnitChanges:
    """Put the unit's items that changed after the snapshot, delete its removed ones."""
    with ThreadPoolExecutor(task.read_concurrency, thread_name_prefix="s3-get") as reads:
        state = StateReader(task.s3(), task.plan, reads, skip_corrupt=task.skip_corrupt).unit(unit)
    result = UnitChanges(unit)

    def requests() -> Iterator[WriteRequest]:
        for row in state.rows:
            if row.key_hash in state.changed:
                result.puts += 1
                item = row.change.new_image or {}
                yield WriteRequest({"PutRequest": {"Item": to_client_item(item)}}, item_size(item))
        for row in state.removed:
            if row.key_hash in state.changed:
                result.deletes += 1
                keys = row.change.keys
                yield WriteRequest(
                    {"DeleteRequest": {"Key": to_client_item(keys)}}, item_size(keys)
                )

    if task.dry_run:
        for _ in requests():
            pass
        return result
    writer = BatchWriter(task.dynamodb(), task.target, workers=task.writers, max_wcu=task.max_wcu)
    try:
        writer.submit(requests())
    finally:
        result.writes = writer.close()
    return result


class ImportTableRestorer:
    def __init__(
        self,
        s3: Any,
        dynamodb: Any,
        bucket: str,
        source: str,
        target: str,
        *,
        prefix: str = "",
        options: ImportTableOptions,
        announce: Callable[[str], None] = print,
        warn: Callable[[str], None] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        executor: UnitExecutor | None = None,
        client_factories: tuple[Callable[[], Any], Callable[[], Any]] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        autoscaling: Any | None = None,
        wait: Callable[[Any, str], None] | None = None,
    ) -> None:
        """`autoscaling` (Application Auto Scaling) recreates the recorded scaling targets
        and policies; `wait` waits until the table is ACTIVE (default: wait_active)."""
        self._autoscaling = autoscaling
        self._wait = wait
        self._s3 = s3
        self._dynamodb = dynamodb
        self._bucket = bucket
        self._source = source
        self._target = target
        self._prefix = prefix
        self._options = options
        self._announce = announce
        self._warn = warn or announce
        self._progress = progress or (lambda phase, done, total: None)
        self._executor = executor
        if executor is not None and executor.distributed and client_factories is None:
            raise ValueError("a distributed executor needs client_factories for its workers")
        self._factories = client_factories or ((lambda: s3), (lambda: dynamodb))
        self._sleep = sleep

    def run(self) -> ImportTableReport:
        started = time.perf_counter()
        opts = self._options
        if describe_target(self._dynamodb, self._target) is not None:
            raise UserInputError(
                f"target table {self._target!r} exists: ImportTable only creates new tables "
                "(restore into it without --via import-table, or choose another --to)"
            )
        snapshot = self._full_snapshot()
        plan = plan_state(
            self._s3,
            self._bucket,
            self._prefix,
            self._source,
            opts.as_of_us,
            shard_digits=opts.shard_digits,
            base_id=snapshot.id,
        )
        files_present(self._s3, self._bucket, snapshot)
        check_import_source(self._s3, self._bucket, self._prefix, snapshot)
        schema = backup_key_schema(self._s3, self._dynamodb, plan)
        recreate = self._settings_plan(schema)
        parameters, after_import, no_local = import_table_parameters(recreate)
        report = ImportTableReport(
            self._source,
            self._target,
            opts.as_of_us,
            snapshot.id,
            snapshot.counts.items,
            import_table_request(self._bucket, self._prefix, snapshot, parameters),
            [*recreate.not_recreated, *recreate.unapplicable, *no_local],
            dry_run=opts.dry_run,
            recreate=recreate,
            after_import=after_import,
        )
        unapplicable = [*recreate.unapplicable, *no_local]
        if unapplicable and not opts.settings.skip_unapplicable:
            raise UnapplicableSettingsError(
                f"cannot restore {self._target!r} through ImportTable as recorded: "
                f"{'; '.join(unapplicable)}; nothing was written (rerun with {SKIP_FLAG} to "
                "go on without it, or --no-indexes)"
            )
        report.unapplied = list(unapplicable)
        for what in report.not_carried:
            self._warn(f"not carried to {self._target}: {what}")
        if not opts.dry_run:
            self._import(report, snapshot)
            self._after_import(report)
        self._apply_changes(plan, report)
        if not opts.dry_run:
            self._after_load(report)
        report.seconds = time.perf_counter() - started
        return report

    def _settings_plan(self, schema: tuple[KeyAttribute, ...]) -> RecreatePlan:
        """The same plan as `restore --create-table`'s: the recorded settings as of the
        restore's time (or --settings-from) with the overrides."""
        opts = self._options
        overrides = opts.settings
        recorded = None
        if overrides.settings_from is None:
            recorded = settings_at(
                self._s3, self._bucket, self._prefix, self._source, opts.as_of_us
            )
        described = overrides.settings_from or recorded
        if (described is None or not described.captured(TABLE)) and (
            not schema or any(k.key_type is None for k in schema)
        ):
            raise UserInputError(
                "cannot create the target: the backup records key names but not which is the "
                "partition key; restore without --via import-table into a table you create"
            )
        return plan_recreate(
            recorded,
            schema,
            self._target,
            overrides,
            region=getattr(getattr(self._dynamodb, "meta", None), "region_name", None),
            account=opts.target_account,
        )

    def _full_snapshot(self) -> Manifest:
        opts = self._options
        if opts.snapshot is not None:
            chosen = catalog.load_manifest(
                self._s3, self._bucket, self._prefix, self._source, opts.snapshot
            )
            if chosen is None or chosen.as_of_us > opts.as_of_us:
                raise NotFoundError(
                    f"no committed snapshot {opts.snapshot} of {self._source!r} at or before "
                    f"{format_time_us(opts.as_of_us)}"
                )
            if chosen.kind != "full":
                raise UserInputError(
                    f"snapshot {chosen.id} is a {chosen.kind} snapshot: ImportTable needs a "
                    "full one"
                )
            return chosen
        candidates = catalog.committed_snapshots(self._s3, self._bucket, self._prefix, self._source)
        full = [m for m in candidates if m.kind == "full" and m.as_of_us <= opts.as_of_us]
        if not full:
            raise NotFoundError(
                f"no full snapshot of {self._source!r} at or before "
                f"{format_time_us(opts.as_of_us)}: --via import-table loads one (run "
                "`ddb-backup compact` first, or restore without --via import-table)"
            )
        return full[-1]

    def _import(self, report: ImportTableReport, snapshot: Manifest) -> None:
        waited = time.perf_counter()
        try:
            response = self._start_import(report, snapshot)
            description = response["ImportTableDescription"]
            report.import_arn = description["ImportArn"]
            self._announce(f"ImportTable {report.import_arn} started")
            while description.get("ImportStatus") not in _FINISHED:
                self._progress(
                    "import-table",
                    int(description.get("ProcessedItemCount") or 0),
                    report.snapshot_items,
                )
                self._sleep(self._options.poll_seconds)
                description = self._dynamodb.describe_import(ImportArn=report.import_arn)[
                    "ImportTableDescription"
                ]
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"ImportTable into {self._target!r} failed: {e}") from e
        report.waited_seconds = time.perf_counter() - waited
        report.status = description.get("ImportStatus")
        report.imported = int(description.get("ImportedItemCount") or 0)
        report.processed = int(description.get("ProcessedItemCount") or 0)
        report.errors = int(description.get("ErrorCount") or 0)
        report.log_group = description.get("CloudWatchLogGroupArn")
        self._progress("import-table", report.processed, report.snapshot_items)
        where = f" (rejected items are logged in {report.log_group})" if report.log_group else ""
        if report.status != "COMPLETED":
            raise ImportTableError(
                f"ImportTable {report.import_arn} {report.status}: "
                f"{description.get('FailureCode') or ''} {description.get('FailureMessage') or ''}"
                f"; {report.imported} of {report.snapshot_items} items imported, "
                f"{report.errors} errors{where}"
            )
        if report.errors or report.imported != report.snapshot_items:
            raise ImportTableError(
                f"ImportTable {report.import_arn} imported {report.imported} of "
                f"{report.snapshot_items} items of snapshot {report.snapshot}, "
                f"{report.errors} errors{where}"
            )

    def _start_import(self, report: ImportTableReport, snapshot: Manifest) -> Any:
        """ImportTable; a setting it refuses (a KMS key it cannot use, say) stops the restore
        before anything is loaded, or with --skip-unapplicable is dropped and reported."""
        while True:
            try:
                return self._dynamodb.import_table(**report.request)
            except ClientError as e:
                error = e.response.get("Error", {})
                parameters = dict(report.request["TableCreationParameters"])
                blamed = blamed_setting(str(error.get("Message", "")), parameters)
                if error.get("Code") != "ValidationException" or blamed is None:
                    raise
                key, name = blamed
                note = f"{name}: {error.get('Code')}: {error.get('Message')}"
                if not self._options.settings.skip_unapplicable:
                    raise UnapplicableSettingsError(
                        f"ImportTable refused to create {self._target!r} with the recorded "
                        f"{note}; nothing was written (rerun with {SKIP_FLAG} to import it "
                        "without, or change it with --settings-from FILE)"
                    ) from e
                parameters.pop(key)
                report.request = import_table_request(
                    self._bucket, self._prefix, snapshot, parameters
                )
                report.unapplied.append(note)
                self._warn(f"not applied: {note}")

    def _after_import(self, report: ImportTableReport) -> None:
        """Once the import is done: the stream, table class and deletion protection (one
        UpdateTable each, the table ACTIVE before the next), the tags; then what DynamoDB
        made is checked as after a CreateTable. What fails is reported, the restore goes on
        (the items are in the table), and it fails at the end without --skip-unapplicable."""
        wait = self._wait or wait_active
        wait(self._dynamodb, self._target)
        params = report.request["TableCreationParameters"]
        self._announce(f"imported table {self._target!r} ({table_summary(params)})")
        if report.recreate is not None:
            self._announce(report.recreate.origin)
        made = dict(report.request["TableCreationParameters"])
        said = len(report.unapplied)  # what was said before the import
        arn: str | None = None
        for request in report.after_import:
            params = dict(request.params)
            try:
                if request.operation == "TagResource":
                    arn = (
                        arn
                        or self._dynamodb.describe_table(TableName=self._target)["Table"][
                            "TableArn"
                        ]
                    )
                    params["ResourceArn"] = arn
                    self._dynamodb.tag_resource(**params)
                else:
                    self._dynamodb.update_table(**params)
                    wait(self._dynamodb, self._target)
            except (ClientError, BotoCoreError) as e:
                report.unapplied.append(f"{request.setting} ({request.operation}): {_error(e)}")
                continue
            report.applied.append(request.operation)
            self._announce(f"applied {request.setting} ({request.operation})")
            made.update({"Tags": params["Tags"]} if "Tags" in params else params)
        report.unapplied += check_created(self._dynamodb, made)
        for line in report.unapplied[said:]:
            self._warn(f"not applied: {line}")

    def _after_load(self, report: ImportTableReport) -> None:
        """PITR, auto scaling, then TTL: only now that the changes are in too."""
        assert report.recreate is not None  # noqa: S101 - run() plans it first
        clients = {"dynamodb": self._dynamodb, "application-autoscaling": self._autoscaling}
        applied, failed = apply_after(clients, report.recreate, skip_unapplicable=True)
        report.applied += [r.operation for r in applied]
        for request in applied:
            self._announce(f"applied {request.setting} ({request.operation})")
        for line in failed:
            self._warn(f"not applied: {line}")
        report.unapplied += failed
        # Without the flag, anything unapplicable was refused before the import: what is
        # listed now failed once the items were in.
        if report.unapplied and not self._options.settings.skip_unapplicable:
            raise UnapplicableSettingsError(
                f"the items were restored into {self._target!r}, but these settings could not "
                f"be applied: {'; '.join(report.unapplied)} (apply them yourself; {SKIP_FLAG} "
                "accepts this)"
            )

    def _apply_changes(self, plan: Any, report: ImportTableReport) -> None:
        opts = self._options
        units = plan.units
        executor = self._executor or ThreadUnitExecutor(min(opts.units_at_once, len(units)))
        at_once = min(len(units), executor.concurrency)
        task = RestoreTask(
            plan=plan,
            target=self._target,
            s3=self._factories[0],
            dynamodb=self._factories[1],
            dry_run=opts.dry_run,
            writers=opts.workers,
            max_wcu=opts.max_wcu / at_once if opts.max_wcu else None,
            read_concurrency=opts.read_concurrency,
            skip_corrupt=opts.skip_corrupt,
        )
        results = executor.map(functools.partial(apply_unit_changes, task), units)
        for done, unit in enumerate(results, start=1):
            report.puts += unit.puts
            report.deletes += unit.deletes
            report.writes.add(unit.writes)
            self._progress("changes", done, len(units))


def run_command(args: Any, as_of_us: int) -> int:
    """`restore --via import-table` from the parsed command line."""
    if not args.create_table:
        raise UserInputError("--via import-table creates the target table: add --create-table")
    if args.keys is not None or args.key_prefix is not None or args.verify:
        raise UserInputError(
            "--via import-table restores the whole table: --keys, --key-prefix and --verify "
            "need the default --via batch-write"
        )
    settings = settings_from(
        args,
        max_pool_connections=(args.read_concurrency + args.write_concurrency) * args.workers + 8,
    )
    announce: Callable[[str], None] = (lambda text: None) if args.json else print
    progress = progress_for(args)
    executor = executor_from(args)
    restorer = ImportTableRestorer(
        make_client("s3", settings),
        make_client("dynamodb", settings),
        args.bucket,
        args.table,
        args.to,
        prefix=args.prefix,
        options=ImportTableOptions(
            as_of_us=as_of_us,
            snapshot=args.snapshot,
            dry_run=args.dry_run,
            workers=args.write_concurrency,
            units_at_once=args.workers,
            read_concurrency=args.read_concurrency,
            max_wcu=args.max_wcu,
            shard_digits=args.shard_digits,
            skip_corrupt=args.skip_corrupt,
            settings=overrides_from(args),
            target_account=caller_account(settings),
        ),
        announce=announce,
        warn=warn,
        progress=progress,
        executor=executor,
        client_factories=(ClientFactory("s3", settings), ClientFactory("dynamodb", settings)),
        autoscaling=make_client("application-autoscaling", settings),
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
    if report.dry_run:
        for line in report.lines():
            print(line)
        print(
            f"{args.table} as of {format_time_us(report.as_of_us)} -> {args.to} (import-table, "
            f"dry run): snapshot {report.snapshot} ({report.snapshot_items} items) then would "
            f"put {report.puts}, would delete {report.deletes}"
        )
        return 0
    print(
        f"{args.table} as of {format_time_us(report.as_of_us)} -> {args.to} (import-table): "
        f"ImportTable loaded {report.imported} items of snapshot {report.snapshot} in "
        f"{report.waited_seconds:.1f}s ({report.errors} errors), then put {report.puts}, "
        f"deleted {report.deletes} in {report.writes.requests} BatchWriteItem calls; "
        f"{report.seconds:.2f}s"
    )
    return 0
