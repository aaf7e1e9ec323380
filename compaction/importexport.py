"""Importing DynamoDB's own S3 exports: a full export becomes a committed snapshot as of
its exportTime (the same commit as compaction's), an incremental export's lines become
changes at their WriteTimestampMicros, written through the ChangeWriter like any other.

Everything is checked before anything is committed or written: the manifests, the table
ARN, the key schema, the windows (a gap is refused without --allow-gap), and every data
file (MD5, item count, each line). A full export's snapshot is committed only after all
of its files are built; incremental exports are checked in full before their first change
is written. An export carries no table settings: a full export's snapshot records the
source table's, read as compaction reads them (beside the import, within its time budget)
when the table the export's ARN names can be described here, and otherwise a document
saying why there are none. Records under `<table>/v1/imports/` make a second import of the
same export a no-op and let an interrupted one resume (docs/FORMAT.md).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import NotFoundError, RefusedError, UserInputError
from backup_lambda.layout import LAYOUT_DIR, format_time_us, table_root
from compaction import catalog, s3read
from compaction.awsexport import (
    ExportFile,
    ExportSummary,
    discover,
    read_files,
    same_table,
)
from compaction.clock import BucketClock
from compaction.columns import choose_columns, merge_stats
from compaction.commitcheck import confirm_files
from compaction.executor import ThreadUnitExecutor, UnitExecutor
from compaction.exportmanifests import add_export_manifests
from compaction.importtasks import (
    ChangesCheck,
    ChangesFile,
    ChangesTask,
    ItemsTask,
    Partition,
    UnitFiles,
    build_unit,
    check_changes_file,
    check_items_file,
    partition_file,
    write_changes_file,
)
from compaction.keyschema import describe_key_schema
from compaction.lease import RunLease
from compaction.manifest import Column, ColumnStats, Counts, KeyAttribute, Manifest, snapshot_id
from compaction.rowformat import DATA_LAYOUT
from compaction.s3errors import translate
from compaction.settingsstore import upload_settings
from compaction.state import auto_shard_digits
from compaction.tablesettings import (
    DEFAULT_CAPTURE_SECONDS,
    TABLE,
    BackgroundCapture,
    TableSettings,
    capture_settings,
    not_captured,
)
from compaction.versions import put_json

ORIGIN = "import-export"
NO_SETTINGS = "a DynamoDB export carries no table settings"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImportOptions:
    export_ids: tuple[str, ...] = ()  # only these exports (default: every finished one)
    key_schema: tuple[KeyAttribute, ...] | None = None  # else DescribeTable of the source
    allow_gap: bool = False
    dry_run: bool = False  # check everything, write nothing
    shard_digits: int | None = None
    writers: int = 16  # parallel S3 writes per changes task


@dataclass(frozen=True)
class Gap:
    """Times no export covers: after `after` ends and before `before` starts."""

    start_us: int
    end_us: int
    after: str
    before: str

    def describe(self) -> str:
        return (
            f"no export covers {format_time_us(self.start_us)} .. {format_time_us(self.end_us)} "
            f"(between {self.after} and {self.before})"
        )


@dataclass
class ExportOutcome:
    export_id: str
    export_type: str
    start_us: int
    end_us: int
    items: int
    status: str  # imported | already imported | checked | kept
    snapshot: str | None = None
    puts: int = 0
    deletes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "export_id": self.export_id,
            "type": self.export_type,
            "start": format_time_us(self.start_us),
            "end": format_time_us(self.end_us),
            "items": self.items,
            "status": self.status,
            "snapshot": self.snapshot,
            "puts": self.puts,
            "deletes": self.deletes,
        }


@dataclass
class ImportReport:
    source: str
    table: str
    dry_run: bool
    key_schema_source: str = ""
    exports: list[ExportOutcome] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    seconds: float = 0.0


def imports_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/imports/"


def find_gaps(spans: Sequence[tuple[int, int, str]]) -> list[Gap]:
    """Holes in the union of (start, end, name) spans between the first start and the last
    end: a full export is the point (t, t), an incremental window (from, to)."""
    gaps: list[Gap] = []
    covered: tuple[int, str] | None = None
    for start, end, name in sorted(spans):
        if covered is not None and start > covered[0]:
            gaps.append(Gap(covered[0], start, covered[1], name))
        if covered is None or end >= covered[0]:
            covered = (end, name)
    return gaps


def _record_span(record: dict[str, Any]) -> tuple[int, int, str]:
    return (int(record["start_us"]), int(record["end_us"]), str(record["export_id"]))


class ExportImporter:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        table: str,
        source: str,
        *,
        prefix: str = "",
        dynamodb: Any | None = None,
        options: ImportOptions | None = None,
        executor: UnitExecutor | None = None,
        s3_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
        progress: Progress | None = None,
        bucket_clock: BucketClock | None = None,
        autoscaling: Any | None = None,
        capture_budget_seconds: float = DEFAULT_CAPTURE_SECONDS,
    ) -> None:
        """`source` is s3://BUCKET/PREFIX/ of the exports; a distributed `executor` needs
        `s3_factory` (a picklable callable building an S3 client on a worker).
        `bucket_clock`: S3's clock (default: the backup bucket's, `clock` as the host's).
        `dynamodb` (and `autoscaling`, Application Auto Scaling) read the source table's
        settings into a full export's snapshot, as compaction does."""
        if not source.startswith("s3://"):
            raise UserInputError(f"--from {source!r}: expected s3://BUCKET/PREFIX/")
        self._source_bucket, _, self._source_prefix = source[len("s3://") :].partition("/")
        if not self._source_bucket:
            raise UserInputError(f"--from {source!r}: no bucket")
        self._source = source
        self._s3 = s3
        self._bucket = bucket
        self._table = table
        self._prefix = prefix
        self._dynamodb = dynamodb
        self._options = options or ImportOptions()
        self._executor = executor or ThreadUnitExecutor(4)
        if self._executor.distributed and s3_factory is None:
            raise ValueError("a distributed executor needs an s3_factory for its workers")
        self._s3_factory = s3_factory or (lambda: s3)
        self._clock = clock
        self._now = bucket_clock or BucketClock(s3, bucket, host=clock)
        self._progress = progress or (lambda phase, done, total: None)
        self._autoscaling = autoscaling
        self._capture_budget = capture_budget_seconds

    # ---- planning ----------------------------------------------------------------------

    def run(self) -> ImportReport:
        started = time.perf_counter()
        options = self._options
        report = ImportReport(self._source, self._table, options.dry_run)
        found = discover(self._s3, self._source_bucket, self._source_prefix)
        report.unfinished = list(found.unfinished)
        selected = self._select(found.summaries)
        files = {s.export_id: read_files(self._s3, s) for s in selected}
        records = self._records()
        self._check_tables(selected, records)
        schema, report.key_schema_source = self._key_schema(selected)
        self._check_backup_schema(schema)
        report.gaps = find_gaps(
            [_record_span(r) for r in records.values()]
            + [(s.start_us, s.end_us, s.export_id) for s in selected if s.export_id not in records]
        )
        if report.gaps and not options.allow_gap:
            raise RefusedError(
                f"{report.gaps[0].describe()}: states inside it would miss changes; add "
                "--allow-gap to import anyway"
            )
        pending = [s for s in selected if s.export_id not in records]
        for summary in selected:
            if summary.export_id in records:
                report.exports.append(self._outcome(summary, "already imported"))
        incremental = [s for s in pending if s.incremental]
        full = [s for s in pending if not s.incremental]
        changes_task = ChangesTask(
            self._s3_factory,
            self._source_bucket,
            self._bucket,
            self._prefix,
            self._table,
            schema,
            options.writers,
        )
        work = self._changes_work(incremental, files)
        checks = self._map(functools.partial(check_changes_file, changes_task), work, "check")
        if options.dry_run:
            for summary in full:
                task = self._items_task(summary, files[summary.export_id], schema, "", None)
                self._map(
                    functools.partial(check_items_file, task),
                    list(enumerate(files[summary.export_id])),
                    "check",
                )
                report.exports.append(self._outcome(summary, "checked"))
            report.exports += self._tally(incremental, work, checks, "checked")
            report.seconds = time.perf_counter() - started
            return report
        for summary in full:
            report.exports.append(
                self._import_full(summary, files[summary.export_id], schema, report)
            )
        pinned = [dataclasses.replace(w, etag=c.etag) for w, c in zip(work, checks, strict=True)]
        self._map(functools.partial(write_changes_file, changes_task), pinned, "changes")
        outcomes = self._tally(incremental, work, checks, "imported")
        for summary, outcome in zip(incremental, outcomes, strict=True):
            self._put_record(summary, None, outcome.puts + outcome.deletes)
        report.exports += outcomes
        report.exports.sort(key=lambda o: (o.start_us, o.end_us, o.export_id))
        report.seconds = time.perf_counter() - started
        return report

    def _select(self, summaries: Sequence[ExportSummary]) -> list[ExportSummary]:
        wanted = self._options.export_ids
        if not wanted:
            return list(summaries)
        known = {s.export_id for s in summaries}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise NotFoundError(
                f"no finished export {missing[0]} under {self._source} (found: "
                f"{', '.join(sorted(known)) or 'none'})"
            )
        return [s for s in summaries if s.export_id in wanted]

    def _check_tables(
        self, selected: Sequence[ExportSummary], records: dict[str, dict[str, Any]]
    ) -> None:
        arns = [(s.table_arn, s.summary_uri) for s in selected]
        arns += [(str(r["table_arn"]), f"the import record of {i}") for i, r in records.items()]
        for arn, where in arns[1:]:
            if not same_table(arn, arns[0][0]):
                raise UserInputError(
                    f"{where}: table {arn} is not the table of {arns[0][1]} ({arns[0][0]}); "
                    "import one table's exports into one backup table"
                )

    def _key_schema(
        self, selected: Sequence[ExportSummary]
    ) -> tuple[tuple[KeyAttribute, ...], str]:
        if self._options.key_schema:
            return self._options.key_schema, "key_schema_option"
        source = selected[0].table_name if selected else self._table
        described = describe_key_schema(self._dynamodb, source) if self._dynamodb else None
        if described:
            return described, "describe_table"
        if not selected:
            return (), "none"
        raise UserInputError(
            f"cannot find the key schema: DescribeTable of {source!r} failed; pass "
            "--key-schema NAME:TYPE:HASH[,NAME:TYPE:RANGE] (e.g. pk:S:HASH,sk:N:RANGE)"
        )

    def _check_backup_schema(self, schema: tuple[KeyAttribute, ...]) -> None:
        """The exports must agree with what the backup already records about the keys."""
        if not schema:
            return
        for manifest in reversed(
            catalog.committed_snapshots(self._s3, self._bucket, self._prefix, self._table)
        ):
            recorded = manifest.key_schema
            if not recorded:
                continue
            roles = all(k.key_type for k in recorded)
            ours = {(k.name, k.attribute_type, k.key_type if roles else None) for k in schema}
            theirs = {(k.name, k.attribute_type, k.key_type if roles else None) for k in recorded}
            if ours != theirs:
                raise UserInputError(
                    f"the key schema {_spell(schema)} differs from the backup's "
                    f"{_spell(recorded)} (snapshot {manifest.id}); nothing was imported"
                )
            return

    # ---- records -----------------------------------------------------------------------

    def _records(self) -> dict[str, dict[str, Any]]:
        root = imports_prefix(self._prefix, self._table)
        records: dict[str, dict[str, Any]] = {}
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            keys = [
                entry["Key"]
                for page in paginator.paginate(Bucket=self._bucket, Prefix=root, Delimiter="/")
                for entry in page.get("Contents", [])
                if entry["Key"].endswith(".json")
            ]
            for key in keys:
                body = s3read.get_bytes(self._s3, self._bucket, key)
                record = json.loads(body)
                records[str(record["export_id"])] = record
        except (ClientError, BotoCoreError) as e:
            raise translate(e, self._bucket, root) from e
        except (ValueError, KeyError, TypeError) as e:
            raise UserInputError(
                f"s3://{self._bucket}/{root}: unreadable import record ({e})"
            ) from None
        return records

    def _put_record(self, summary: ExportSummary, snapshot: str | None, changes: int) -> None:
        key = f"{imports_prefix(self._prefix, self._table)}{summary.export_id}.json"
        put_json(
            self._s3,
            self._bucket,
            key,
            {
                "export_id": summary.export_id,
                "export_arn": summary.export_arn,
                "table_arn": summary.table_arn,
                "export_type": summary.export_type,
                "start_us": summary.start_us,
                "end_us": summary.end_us,
                "start": format_time_us(summary.start_us),
                "end": format_time_us(summary.end_us),
                "items": summary.item_count,
                "snapshot": snapshot,
                "changes": changes,
                "source": summary.summary_uri,
                "imported_at": format_time_us(self._now.now_us()),
            },
        )

    def _marker(self, summary: ExportSummary, data_file: ExportFile) -> str:
        digest = hashlib.sha256(data_file.key.encode("utf-8")).hexdigest()[:24]
        return f"{imports_prefix(self._prefix, self._table)}{summary.export_id}/files/{digest}.json"

    def _markers(self, summary: ExportSummary) -> set[str]:
        folder = f"{imports_prefix(self._prefix, self._table)}{summary.export_id}/files/"
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            return {
                entry["Key"]
                for page in paginator.paginate(Bucket=self._bucket, Prefix=folder)
                for entry in page.get("Contents", [])
            }
        except (ClientError, BotoCoreError) as e:
            raise translate(e, self._bucket, folder) from e

    # ---- incremental exports -----------------------------------------------------------

    def _changes_work(
        self, incremental: Sequence[ExportSummary], files: dict[str, list[ExportFile]]
    ) -> list[ChangesFile]:
        work = []
        for summary in incremental:
            done = self._markers(summary)
            for data_file in files[summary.export_id]:
                marker = self._marker(summary, data_file)
                if marker in done:
                    continue  # written by an earlier, interrupted run
                work.append(
                    ChangesFile(
                        summary.export_id,
                        summary.output_view or "",
                        summary.start_us,
                        summary.end_us,
                        data_file,
                        marker,
                    )
                )
        return work

    def _tally(
        self,
        incremental: Sequence[ExportSummary],
        work: Sequence[ChangesFile],
        checks: Sequence[ChangesCheck],
        status: str,
    ) -> list[ExportOutcome]:
        outcomes = []
        for summary in incremental:
            outcome = self._outcome(summary, status)
            for item, check in zip(work, checks, strict=True):
                if item.export_id == summary.export_id:
                    outcome.puts += check.puts
                    outcome.deletes += check.deletes
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _outcome(summary: ExportSummary, status: str) -> ExportOutcome:
        return ExportOutcome(
            summary.export_id,
            summary.export_type,
            summary.start_us,
            summary.end_us,
            summary.item_count,
            status,
        )

    # ---- full exports ------------------------------------------------------------------

    def _items_task(
        self,
        summary: ExportSummary,
        files: list[ExportFile],
        schema: tuple[KeyAttribute, ...],
        run_root: str,
        local_dir: str | None,
        digits: int = 0,
    ) -> ItemsTask:
        as_of = summary.start_us
        return ItemsTask(
            s3=self._s3_factory,
            source_bucket=self._source_bucket,
            bucket=self._bucket,
            table=self._table,
            export_id=summary.export_id,
            key_schema=schema,
            shard_digits=digits,
            run_root=run_root,
            # Stream event times are whole seconds: a stream change in the export's own
            # second (before or after it) orders after the export's items (sequence 0).
            event_time_us=as_of - as_of % 1_000_000,
            written_at_us=self._now.now_us(),
            file_keys=tuple(f.key for f in files),
            local_dir=local_dir,
        )

    def _import_full(
        self,
        summary: ExportSummary,
        files: list[ExportFile],
        schema: tuple[KeyAttribute, ...],
        report: ImportReport,
    ) -> ExportOutcome:
        as_of = summary.start_us
        snapshot = snapshot_id(as_of)
        existing = catalog.load_manifest(
            self._s3, self._bucket, self._prefix, self._table, snapshot
        )
        if existing is not None:
            mine = existing.origin == ORIGIN
            if mine:  # committed by an import that stopped before its record
                self._put_record(summary, snapshot, 0)
            outcome = self._outcome(summary, "already imported" if mine else "kept")
            outcome.snapshot = snapshot
            return outcome
        options = self._options
        digits = (
            options.shard_digits
            if options.shard_digits is not None
            else auto_shard_digits(summary.item_count)
        )
        run_id = uuid.uuid4().hex[:12]
        run_root = catalog.run_prefix(self._prefix, self._table, snapshot, run_id)
        started_us = self._now.now_us()  # the listing watermark: S3's clock
        capture = self._start_capture(summary)
        # The lease keeps `expire` off the run folder while the files are written (its last
        # renewal also counts as the folder's newest file for the grace period).
        lease = RunLease(self._s3, self._bucket, run_root, run_id)
        with lease, tempfile.TemporaryDirectory(prefix="ddb-backup-import-") as tmp:
            local = None if self._executor.distributed else tmp
            task = self._items_task(summary, files, schema, run_root, local, digits)
            partitions: list[Partition] = self._map(
                functools.partial(partition_file, task), list(enumerate(files)), "items"
            )
            stats = merge_stats(p.stats for p in partitions)
            columns = tuple(
                Column(name, kind) for name, kind in choose_columns(stats, [k.name for k in schema])
            )
            pieces: dict[str, list[str]] = {}
            for partition in partitions:
                for unit, ref in partition.pieces.items():
                    pieces.setdefault(unit, []).append(ref)
            units: list[UnitFiles] = self._map(
                functools.partial(build_unit, task),
                [(unit, refs, columns) for unit, refs in sorted(pieces.items())],
                "units",
            )
        data = [f for u in units for f in (u.export, u.parquet) if f is not None]
        data.append(upload_settings(self._s3, self._bucket, run_root, capture.result()))
        items = sum(u.rows for u in units)
        manifest = Manifest(
            id=snapshot,
            table=self._table,
            as_of_us=as_of,
            built_at_us=self._now.now_us(),
            listing_watermark_us=started_us,
            base=None,
            shard_digits=digits,
            key_schema=schema,
            key_schema_source=report.key_schema_source,
            columns=columns,
            files=tuple(sorted(data, key=lambda f: (f.format, f.unit))),
            counts=Counts(
                items=items,
                versions_listed=0,
                objects_read=0,
                changed_keys=items,
                carried_rows=0,
            ),
            newest_event_time_us=as_of,
            run_id=run_id,
            column_stats=tuple(
                ColumnStats(name, tuple(sorted(s.tags)), s.max_integer_digits, s.max_scale, s.count)
                for name, s in sorted(stats.items())
            ),
            origin=ORIGIN,
            data_layout=DATA_LAYOUT,
            clock=self._now.reading,
        )
        manifest = add_export_manifests(
            self._s3, self._bucket, self._prefix, manifest, table_arn=summary.table_arn
        )
        confirm_files(self._s3, self._bucket, manifest)
        catalog.commit(self._s3, self._bucket, self._prefix, manifest)
        self._put_record(summary, snapshot, 0)
        outcome = self._outcome(summary, "imported")
        outcome.snapshot = snapshot
        return outcome

    def _start_capture(self, summary: ExportSummary) -> BackgroundCapture:
        """The source table's settings, read beside the import like compaction's capture
        (never failing it, at most its budget long)."""
        return BackgroundCapture(
            lambda: self._capture(summary),
            summary.table_name,
            self._capture_budget,
            clock=self._clock,
        )

    def _capture(self, summary: ExportSummary) -> TableSettings:
        """Captured when the table the export's ARN names is the one DynamoDB describes
        here; otherwise every part says that an export carries no settings, and why the
        table could not be read instead."""
        name, arn = summary.table_name, summary.table_arn
        now_us = int(self._clock() * 1_000_000)
        if self._dynamodb is None:
            return not_captured(name, f"{NO_SETTINGS} (no DynamoDB client to read {arn})", now_us)
        region = getattr(getattr(self._dynamodb, "meta", None), "region_name", None)
        parts = arn.split(":")
        if len(parts) > 4 and parts[3] and region and parts[3] != region:
            return not_captured(
                name,
                f"{NO_SETTINGS}, and its table {arn} is in {parts[3]}, not in {region} where "
                "this import reads DynamoDB",
                now_us,
            )
        settings = capture_settings(
            self._dynamodb, name, autoscaling=self._autoscaling, clock=self._clock
        )
        if not settings.captured(TABLE):
            return not_captured(
                name,
                f"{NO_SETTINGS}, and its table {arn} could not be described "
                f"({settings.part(TABLE).not_captured})",
                settings.captured_at_us,
            )
        if settings.table_arn and not same_table(settings.table_arn, arn):
            return not_captured(
                name,
                f"{NO_SETTINGS}, and the table {name!r} here is {settings.table_arn}, not the "
                f"exported {arn}",
                settings.captured_at_us,
            )
        return settings

    def _map(self, work: Callable[[Any], Any], items: list[Any], phase: str) -> list[Any]:
        results = []
        for done, result in enumerate(self._executor.map(work, items), start=1):
            results.append(result)
            self._progress(phase, done, len(items))
        return results


def _spell(schema: Sequence[KeyAttribute]) -> str:
    return "(" + ", ".join(f"{k.name} {k.attribute_type} {k.key_type or '?'}" for k in schema) + ")"
