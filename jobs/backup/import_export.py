"""`ddb-backup import-export`: bootstrap or feed a table's backup from DynamoDB's own S3
exports (full exports become snapshots, incremental exports become changes)."""

from __future__ import annotations

import argparse
from typing import Any

from backup_lambda.errors import UserInputError
from backup_lambda.layout import format_time_us
from compaction.clock import BucketClock
from compaction.executor import ThreadUnitExecutor
from compaction.importexport import ExportImporter, ImportOptions, ImportReport
from compaction.manifest import KeyAttribute
from jobs.cli.args import add_executor_arguments, executor_from, positive_int
from jobs.cli.clients import ClientFactory, make_client, settings_from
from jobs.cli.output import emit_json, note
from jobs.cli.progress import progress_for

_TYPES = frozenset({"S", "N", "B"})
_ROLES = frozenset({"HASH", "RANGE"})


def parse_key_schema(text: str) -> tuple[KeyAttribute, ...]:
    """`pk:S:HASH,sk:N:RANGE` -> the key schema (partition key first)."""
    attributes = []
    for part in text.split(","):
        name, _, rest = part.strip().rpartition(":")
        name, _, kind = name.rpartition(":")
        role = rest.upper()
        if not name or kind not in _TYPES or role not in _ROLES:
            raise UserInputError(
                f"--key-schema {text!r}: expected NAME:TYPE:ROLE[,NAME:TYPE:ROLE] with TYPE "
                "S, N or B and ROLE HASH or RANGE (e.g. pk:S:HASH,sk:N:RANGE)"
            )
        attributes.append(KeyAttribute(name, kind, role))
    roles = sorted(a.key_type or "" for a in attributes)
    if roles not in (["HASH"], ["HASH", "RANGE"]) or len({a.name for a in attributes}) != len(
        attributes
    ):
        raise UserInputError(
            f"--key-schema {text!r}: one HASH attribute and at most one RANGE attribute"
        )
    return tuple(sorted(attributes, key=lambda a: a.key_type != "HASH"))


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "import-export",
        parents=[common],
        help="import DynamoDB's own S3 exports (full and incremental) into the backup",
        description="Read DynamoDB exports under --from (AWSDynamoDB/<export-id>/ folders, or "
        "one export's folder): a full export becomes a committed snapshot of --table as of "
        "its exportTime; an incremental export's lines become changes at their "
        "WriteTimestampMicros. Everything is checked first (manifests, MD5s, item counts, "
        "each line, the key schema, gaps between windows); a second run of the same "
        "exports changes nothing, and an interrupted run resumes.",
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="S3URI",
        help="s3://BUCKET/PREFIX/ holding AWSDynamoDB/<export-id>/ folders",
    )
    parser.add_argument(
        "--export-id",
        action="append",
        default=[],
        metavar="ID",
        help="import only this export (repeatable; default: every finished export)",
    )
    parser.add_argument(
        "--key-schema",
        metavar="SPEC",
        help="the table's key, e.g. pk:S:HASH,sk:N:RANGE (default: DescribeTable of the "
        "exported table)",
    )
    parser.add_argument(
        "--allow-gap",
        action="store_true",
        help="import although no export covers some time between the exports",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check every export and file; write nothing"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=4, help="files or units processed at once"
    )
    parser.add_argument(
        "--writers", type=positive_int, default=16, help="parallel S3 writes per changes file"
    )
    add_executor_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    key_schema = parse_key_schema(args.key_schema) if args.key_schema else None
    settings = settings_from(args, max_pool_connections=args.workers * (args.writers + 2) + 8)
    s3 = make_client("s3", settings)
    clock = BucketClock(s3, args.bucket)
    for warning in clock.warnings():  # reads S3's clock, refusing an unversioned bucket
        note(args, warning)
    progress = progress_for(args)
    executor = executor_from(args)
    importer = ExportImporter(
        s3,
        args.bucket,
        args.table,
        args.source,
        prefix=args.prefix,
        dynamodb=make_client("dynamodb", settings),
        autoscaling=make_client("application-autoscaling", settings),
        options=ImportOptions(
            export_ids=tuple(args.export_id),
            key_schema=key_schema,
            allow_gap=args.allow_gap,
            dry_run=args.dry_run,
            shard_digits=args.shard_digits,
            writers=args.writers,
        ),
        executor=executor or ThreadUnitExecutor(args.workers),
        s3_factory=ClientFactory("s3", settings),
        progress=progress,
        bucket_clock=clock,
    )
    try:
        report = importer.run()
    finally:
        progress.close()
        if executor is not None:
            executor.close()
    for folder in report.unfinished:
        note(args, f"skipped {folder}: the export has not finished (no manifest-summary.json)")
    for gap in report.gaps:
        note(args, f"gap: {gap.describe()} (allowed by --allow-gap)")
    if args.json:
        emit_json(as_json(report))
    else:
        print_report(report)
    return 0


def as_json(report: ImportReport) -> dict[str, Any]:
    return {
        "table": report.table,
        "source": report.source,
        "dry_run": report.dry_run,
        "key_schema_source": report.key_schema_source,
        "exports": [o.as_json() for o in report.exports],
        "gaps": [
            {"start": format_time_us(g.start_us), "end": format_time_us(g.end_us)}
            for g in report.gaps
        ],
        "unfinished": report.unfinished,
        "seconds": round(report.seconds, 3),
    }


def print_report(report: ImportReport) -> None:
    for outcome in report.exports:
        when = format_time_us(outcome.start_us)
        if outcome.export_type == "FULL_EXPORT":
            what = f"full export {outcome.export_id} as of {when}: {outcome.items} items"
            if outcome.snapshot:
                what += f" -> snapshot {outcome.snapshot}"
        else:
            what = (
                f"incremental export {outcome.export_id} {when} .. "
                f"{format_time_us(outcome.end_us)}: {outcome.puts} puts, "
                f"{outcome.deletes} deletes"
            )
        print(f"{what} ({outcome.status})")
    verb = "checked" if report.dry_run else "imported"
    print(
        f"{verb} {len(report.exports)} exports of {report.source} into {report.table} "
        f"in {report.seconds:.2f}s"
    )
