"""`ddb-backup restore`: make a table hold exactly the source table's items as of a time."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from backup_lambda.errors import BackupError, RefusedError, UserInputError
from backup_lambda.layout import format_time_us
from compaction.state import plan_state
from jobs.cli import config
from jobs.cli.args import add_executor_arguments, executor_from, parse_time, positive_int
from jobs.cli.clients import ClientFactory, make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.progress import progress_for
from jobs.restore import importtable
from jobs.restore.guards import DEFAULT_MAX_DELETE_PERCENT
from jobs.restore.keys import KeyFilter, partition_filter, read_key_file
from jobs.restore.restorer import RestoreOptions, Restorer, RestoreReport, backup_key_schema
from jobs.restore.settingsargs import add_settings_arguments, caller_account, overrides_from
from jobs.restore.summary import report_to, write_failures

_NO_FAILURES = RestoreReport("", "", 0, None)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "restore",
        parents=[common],
        help="make a table hold exactly the items of --table as of a time",
        description="Restore the state of --table as of TIME (default: the latest backed-up "
        "change) into --to. An empty target is bulk-loaded; a target with data gets only "
        "the puts and deletes that make it equal to that state.",
    )
    add_setting(
        parser,
        config.RESTORE_TARGET,
        "--to",
        required=True,
        metavar="TARGET",
        help="the table to write; {table}, {as_of} and {date} are filled in",
    )
    parser.add_argument("--as-of", help="point in time (default: now, the latest state)")
    parser.add_argument(
        "--create-table",
        action="store_true",
        help="create TARGET if missing, from the source's recorded settings (indexes, "
        "capacity, stream, encryption, tags; TTL, PITR and auto scaling after the load)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="count puts and deletes, and print the requests that would create TARGET",
    )
    add_settings_arguments(parser)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--keys", metavar="FILE", help="only these keys: one JSON key a line (default: every key)"
    )
    scope.add_argument(
        "--key-prefix", metavar="VALUE", help="only this partition key value (default: every key)"
    )
    add_setting(
        parser,
        config.MAX_WCU,
        "--max-wcu",
        type=positive_int,
        help="cap on write capacity units per second",
        none_means="no cap",
    )
    parser.add_argument(
        "--verify", action="store_true", help="re-read TARGET and compare every item"
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="units at once on local threads (as in compact; dask: --dask-workers)",
    )
    parser.add_argument(
        "--write-concurrency",
        type=positive_int,
        default=8,
        help="BatchWriteItem calls in flight per unit",
    )
    parser.add_argument(
        "--read-concurrency", type=positive_int, default=32, help="S3 GETs in flight per unit"
    )
    parser.add_argument(
        "--snapshot",
        metavar="ID",
        help="start from this snapshot (as of TIME or earlier), e.g. an older one when the "
        "newest fails verification (default: the newest as of TIME)",
    )
    parser.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable item versions (reported) instead of failing; never snapshot files",
    )
    guards = parser.add_argument_group(
        "guards", "what a restore does only when asked (see docs/RESTORE.md)"
    )
    guards.add_argument(
        "--allow-empty",
        action="store_true",
        help="restore an --as-of before the first backed-up change (an empty state)",
    )
    guards.add_argument(
        "--yes",
        action="store_true",
        help="go ahead with a restore that deletes more than --max-delete-percent of the "
        "target's items, or leaves it empty",
    )
    guards.add_argument(
        "--max-delete-percent",
        type=percent,
        default=DEFAULT_MAX_DELETE_PERCENT,
        metavar="PCT",
        help="deleting more of the target's items than this needs --yes (default: %(default)g)",
    )
    guards.add_argument(
        "--in-place",
        action="store_true",
        help="allow --to to be the source table itself (the plan is printed first)",
    )
    failures = parser.add_argument_group("items that cannot be written")
    failures.add_argument(
        "--skip-unwritable",
        action="store_true",
        help="write every other item when one cannot be written (exit status still 1)",
    )
    failures.add_argument(
        "--failures-out",
        metavar="FILE",
        help="write every item not written here, one JSON object a line, for --keys "
        "(default: only --json lists them all)",
    )
    parser.add_argument(
        "--via",
        choices=["batch-write", "import-table"],
        default="batch-write",
        help="batch-write: BatchWriteItem every item; import-table: DynamoDB ImportTable "
        "creates --to from a full snapshot (no write capacity), then BatchWriteItem applies "
        "the changes after it (needs --create-table; a new table only)",
    )
    add_executor_arguments(parser)
    parser.set_defaults(run=run)


def expand_target(template: str, table: str, as_of_us: int, now_us: int) -> str:
    """The target table name: {table}, {as_of} (20261128T140000Z) and {date} (20261128)."""
    as_of = format_time_us(as_of_us - as_of_us % 1_000_000).replace("-", "").replace(":", "")
    today = format_time_us(now_us)[:10].replace("-", "")
    try:
        return template.format(table=table, as_of=as_of, date=today)
    except (KeyError, IndexError, ValueError) as e:
        raise UserInputError(
            f"--to {template!r}: only {{table}}, {{as_of}} and {{date}} are filled in ({e})"
        ) from None


def percent(text: str) -> float:
    """argparse type: a number from 0 to 100."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 100, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    now_us = int(time.time() * 1_000_000)
    as_of = parse_time(args.as_of, "--as-of") if args.as_of else now_us
    args.to = expand_target(args.to, args.table, as_of, now_us)
    if as_of > now_us:
        raise RefusedError(
            f"--as-of {format_time_us(as_of)} is in the future (now is {format_time_us(now_us)})"
        )
    if args.failures_out:
        write_failures(args.failures_out, _NO_FAILURES)  # fails now if it cannot be written
    if args.via == "import-table":
        return importtable.run_command(args, as_of)
    settings = settings_from(
        args,
        max_pool_connections=(args.read_concurrency + args.write_concurrency) * args.workers + 8,
    )
    s3 = make_client("s3", settings)
    dynamodb = make_client("dynamodb", settings)
    overrides = overrides_from(args)
    key_filter = KeyFilter()
    if args.keys is not None or args.key_prefix is not None:
        plan = plan_state(s3, args.bucket, args.prefix, args.table, as_of, base_id=args.snapshot)
        schema = backup_key_schema(s3, dynamodb, plan)
        if args.keys is not None:
            key_filter = KeyFilter(key_hashes=read_key_file(args.keys, schema))
        else:
            key_filter = KeyFilter(partition=partition_filter(schema, args.key_prefix))
    progress = progress_for(args)
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
            workers=args.write_concurrency,
            units_at_once=args.workers,
            read_concurrency=args.read_concurrency,
            shard_digits=args.shard_digits,
            snapshot=args.snapshot,
            skip_corrupt=args.skip_corrupt,
            # the latest state (no --as-of) is never a mistaken time
            allow_empty=args.allow_empty or args.as_of is None,
            in_place=args.in_place,
            yes=args.yes,
            max_delete_percent=args.max_delete_percent,
            skip_unwritable=args.skip_unwritable,
            settings=overrides,
            target_account=caller_account(settings) if args.create_table else None,
        ),
        announce=announce,
        progress=progress,
        executor=executor,
        client_factories=(ClientFactory("s3", settings), ClientFactory("dynamodb", settings)),
        autoscaling=make_client("application-autoscaling", settings),
    )
    try:
        restorer.run()
    except BackupError:
        # A restore that failed while writing still says what it wrote and names what it
        # could not write; one refused or failed before writing wrote nothing.
        progress.close()
        if restorer.writing:
            _finish(args, restorer)
        raise
    finally:
        progress.close()
        if executor is not None:
            executor.close()
    _finish(args, restorer)
    return 0


def _finish(args: argparse.Namespace, restorer: Restorer) -> None:
    report = restorer.report
    assert report is not None  # noqa: S101 - run() sets it before anything can be written
    if args.failures_out:
        write_failures(args.failures_out, report)
    report_to(report, args.json, print)
