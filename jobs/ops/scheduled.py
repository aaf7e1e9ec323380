"""Scheduled runs: compaction of configured tables and the restore drill, as Lambda
handlers for EventBridge schedules and as the container command `ddb-backup scheduled`."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit

from backup_lambda.errors import BackupError, ConfigError, IntegrityError
from backup_lambda.layout import normalize_prefix
from compaction.clock import BucketClock
from jobs.cli import config as cli_config
from jobs.cli.args import non_negative_int, positive_int
from jobs.cli.clients import AwsSettings, make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json, print_table, warn
from jobs.ops.drill import Drill
from jobs.ops.schedule_table import (
    Metric,
    ScheduleConfig,
    compact_table,
    emit,
    no_metrics,
)

logger = Logger(service="ddb-backup-scheduled")


class ScheduledRunError(BackupError):
    """At least one configured table failed; the others were still processed."""


class ScheduledVerificationError(IntegrityError):
    """A table's stored data failed verification (e.g. the journal check); the others were
    still processed."""


def compact_tables(
    s3: Any,
    dynamodb: Any,
    config: ScheduleConfig,
    now: float | None = None,
    autoscaling: Any | None = None,
    *,
    machine: bool = True,
) -> tuple[list[dict[str, Any]], BackupError | None]:
    """Every configured table, one after the other: (their outcomes, the error that fails
    the run when any table failed). `machine`: log JSON and EMF metrics on stdout (the
    Lambda, `--json`); else nothing but the outcomes."""
    if now is None:  # S3's now, not the host's alone (compaction.clock)
        clock = BucketClock(s3, config.bucket)
        now = clock.now_us() / 1_000_000
        for warning in clock.warnings():  # reads S3's clock, refusing an unversioned bucket
            if machine:
                logger.warning(warning)
            else:
                warn(warning)
    metric: Metric = emit if machine else no_metrics
    results = []
    failures: dict[str, BackupError] = {}
    for table in config.tables:
        try:
            outcome = compact_table(s3, dynamodb, config, table, now, autoscaling, metric)
        except BackupError as e:
            # One line: the error says what is wrong (a traceback adds nothing for these).
            outcome = {"table": table, "status": "failed", "error": str(e)}
            failures[table] = e
        if machine:
            if table in failures:
                logger.error("scheduled compaction failed", **outcome)
            else:
                logger.info("scheduled compaction", **outcome)
        results.append(outcome)
    return results, _failure(failures, len(config.tables))


def _failure(failures: dict[str, BackupError], tables: int) -> BackupError | None:
    if not failures:
        return None
    what = "; ".join(f"{table}: {error}" for table, error in failures.items())
    message = f"compaction failed for {len(failures)} of {tables} tables: {what}"
    if any(isinstance(e, IntegrityError) for e in failures.values()):
        return ScheduledVerificationError(message)
    return ScheduledRunError(message)


def run_compactions(
    s3: Any,
    dynamodb: Any,
    config: ScheduleConfig,
    now: float | None = None,
    autoscaling: Any | None = None,
) -> list[dict[str, Any]]:
    """compact_tables for the Lambda: its metrics and log lines, and a failed invocation
    (the schedule's error alarm) when any table failed."""
    results, failure = compact_tables(s3, dynamodb, config, now, autoscaling)
    if failure is not None:
        raise failure
    return results


def _clients() -> tuple[Any, Any]:
    settings = AwsSettings()  # boto3's own settings: AWS_ENDPOINT_URL(_S3), region, role
    return make_client("s3", settings), make_client("dynamodb", settings)


def _autoscaling() -> Any:
    return make_client("application-autoscaling", AwsSettings())


def compaction_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge schedule target; the event may name {"tables": [...]} to override."""
    config = ScheduleConfig.from_env(os.environ)
    if isinstance(event, dict) and event.get("tables"):
        config = dataclasses.replace(config, tables=tuple(event["tables"]))
    s3, dynamodb = _clients()
    return {"results": run_compactions(s3, dynamodb, config, autoscaling=_autoscaling())}


def drill_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge schedule target: one drill per configured table; fails on a miss."""
    config = ScheduleConfig.from_env(os.environ)
    s3, dynamodb = _clients()
    reports = []
    for table in config.tables:
        report = Drill(
            s3,
            dynamodb,
            config.bucket,
            table,
            prefix=config.prefix,
            max_rpo_seconds=config.max_rpo_seconds,
            max_restore_seconds=config.max_restore_seconds,
        ).run()
        emit(table, "DrillPassed", MetricUnit.Count, int(report.passed))
        emit(table, "DrillRestoreSeconds", MetricUnit.Seconds, report.restore_seconds)
        if report.rpo_seconds is not None:
            emit(table, "RecoveryPointSeconds", MetricUnit.Seconds, report.rpo_seconds)
        logger.info("drill", table=table, passed=report.passed, failures=report.failures)
        reports.append({"table": table, "passed": report.passed, "report": report.report_key})
    if not all(r["passed"] for r in reports):
        raise ScheduledRunError(f"drill failed: {reports}")
    return {"drills": reports}


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "scheduled",
        parents=[common],
        help="compact several tables, skipping those without new versions (for schedulers)",
        description="The scheduled compaction as a command (for a container scheduler): "
        "for each table, compact as of now minus --settle unless nothing was written "
        "since its newest snapshot. --table may be omitted when --tables is given.",
    )
    add_setting(
        parser,
        cli_config.TABLES,
        "--tables",
        help="comma-separated source tables",
        none_means="--table",
    )
    add_setting(
        parser,
        cli_config.SETTLE,
        "--settle",
        type=positive_int,
        help="seconds the as-of stays behind now, for in-flight stream records",
    )
    add_setting(
        parser,
        cli_config.VERIFY_JOURNAL_EVERY,
        "--verify-journal-every",
        type=non_negative_int,
        metavar="N",
        help="every Nth compaction of a table that reads the change journal alone also "
        "lists the item versions of its window and fails (exit 6) if the journal misses "
        "one, as compact --verify-journal; 0: never",
    )
    add_setting(
        parser,
        cli_config.FULL_EVERY,
        "--full-every",
        type=non_negative_int,
        metavar="N",
        help="every Nth snapshot of a chain is full (a full one, then at most N-1 deltas); "
        "0: only the delta policy's own rules (compact --max-chain)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    tables = tuple(t.strip() for t in (args.tables or args.table or "").split(",") if t.strip())
    if not tables:
        raise ConfigError("name the tables with --tables T1,T2 (or --table T, or BACKUP_TABLES)")
    config = ScheduleConfig(
        args.bucket,
        tables,
        normalize_prefix(args.prefix),
        args.settle,
        verify_journal_every=args.verify_journal_every,
        full_every=args.full_every,
    )
    settings = settings_from(args)
    results, failure = compact_tables(
        make_client("s3", settings),
        make_client("dynamodb", settings),
        config,
        autoscaling=make_client("application-autoscaling", settings),
        machine=args.json,
    )
    if args.json:
        emit_json({"results": results})
    else:
        print_summary(results)
    if failure is not None:
        raise failure
    return 0


def print_summary(results: list[dict[str, Any]]) -> None:
    """One row per table: what the run did, and why it did not when it skipped."""
    print_table(
        ["table", "outcome", "snapshot", "details"],
        [(r["table"], r["status"], r.get("snapshot"), describe(r)) for r in results],
    )


def describe(outcome: dict[str, Any]) -> str:
    note = f"; {outcome['note']}" if "note" in outcome else ""
    return _describe(outcome) + note


def _describe(outcome: dict[str, Any]) -> str:
    status = outcome["status"]
    if status == "failed":
        return str(outcome["error"])
    if status in {"unchanged", "skipped"}:
        return str(outcome["reason"])
    if status == "exists":
        return f"a snapshot as of {outcome['as_of']} was already committed"
    text = (
        f"{outcome['kind']}, {outcome['items']} items, as of {outcome['as_of']}; "
        f"{outcome['changed_keys']} changed keys found by {outcome['change_source']}"
    )
    if "journal_check" in outcome:
        text += f"; {outcome['journal_check']}"
    return f"{text}; {outcome['seconds']} s"
