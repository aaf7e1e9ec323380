"""Scheduled runs: compaction of configured tables and the restore drill, as Lambda
handlers for EventBridge schedules and as the container command `ddb-backup scheduled`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from backup_lambda.errors import BackupError, ConfigError
from backup_lambda.layout import format_time_us, normalize_prefix
from compaction import catalog
from compaction.compactor import CompactionConfig, Compactor
from compaction.newchanges import NewChanges, SnapshotBound, changes_after
from jobs.backup.compact import DEFAULT_SETTLE_SECONDS
from jobs.cli import config as cli_config
from jobs.cli.args import positive_int
from jobs.cli.clients import AwsSettings, make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json
from jobs.ops.drill import Drill
from jobs.ops.schedule_state import ScheduleState, read_state, write_state

logger = Logger(service="ddb-backup-scheduled")
NAMESPACE = "ddb-backup"


def emit(table: str, name: str, unit: MetricUnit, value: float) -> None:
    """One CloudWatch metric (EMF) with the table as its dimension."""
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="table", value=table)


class ScheduledRunError(BackupError):
    """At least one configured table failed; the others were still processed."""


@dataclass(frozen=True)
class ScheduleConfig:
    bucket: str
    tables: tuple[str, ...]
    prefix: str = ""
    settle_seconds: int = DEFAULT_SETTLE_SECONDS
    max_rpo_seconds: float | None = None
    max_restore_seconds: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ScheduleConfig:
        bucket = env.get("BACKUP_BUCKET", "").strip()
        tables = tuple(t.strip() for t in env.get("BACKUP_TABLES", "").split(",") if t.strip())
        if not bucket or not tables:
            raise ConfigError("BACKUP_BUCKET and BACKUP_TABLES (comma-separated) are required")
        try:
            return cls(
                bucket=bucket,
                tables=tables,
                prefix=normalize_prefix(env.get("BACKUP_PREFIX", "")),
                settle_seconds=int(env.get("SETTLE_SECONDS", DEFAULT_SETTLE_SECONDS)),
                max_rpo_seconds=_optional_float(env.get("MAX_RPO_SECONDS")),
                max_restore_seconds=_optional_float(env.get("MAX_RESTORE_SECONDS")),
            )
        except ValueError as e:
            raise ConfigError(f"bad scheduled-run setting: {e}") from e


def _optional_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def compact_table(
    s3: Any,
    dynamodb: Any,
    config: ScheduleConfig,
    table: str,
    now: float,
    autoscaling: Any | None = None,
) -> dict[str, Any]:
    """Compact `table` as of now minus the settle window, unless nothing was written since
    its newest snapshot or that snapshot is not older than the as-of (docs/OPERATIONS.md)."""
    as_of = int((now - config.settle_seconds) * 1_000_000)
    state, _ = read_state(s3, config.bucket, config.prefix, table)
    state = state or ScheduleState()
    bound = state.snapshot
    listed = bound is None  # the bound came from the snapshots, not from the state
    if listed:
        bound = _newest(s3, config, table)
    while True:
        skip, check = _skip(s3, config, table, as_of, bound)
        if skip is not None or listed:
            break
        # The state's snapshot may not be the newest (a manual compact since): check
        # again after the newest one before compacting.
        newest, listed = _newest(s3, config, table), True
        if newest is None or (bound is not None and newest.id == bound.id):
            break
        bound = newest
    if bound is not None and bound != state.snapshot:
        state = dataclasses.replace(state, snapshot=bound)
        if skip is not None:
            write_state(s3, config.bucket, config.prefix, table, state)
    if skip is not None and bound is not None:
        emit(table, "SnapshotLagSeconds", MetricUnit.Seconds, round(now - bound.as_of_us / 1e6, 1))
        return skip
    return _compact(s3, dynamodb, config, table, now, as_of, state, check, autoscaling)


def _newest(s3: Any, config: ScheduleConfig, table: str) -> SnapshotBound | None:
    newest = catalog.newest_at_or_before(s3, config.bucket, config.prefix, table, None)
    return None if newest is None else SnapshotBound.of(newest)


def _skip(
    s3: Any, config: ScheduleConfig, table: str, as_of: int, bound: SnapshotBound | None
) -> tuple[dict[str, Any] | None, NewChanges | None]:
    """(the outcome of a run that skips, or None; the check for new changes, if made)."""
    if bound is None:
        return None, None
    newest = {"snapshot": bound.id, "as_of": format_time_us(bound.as_of_us)}
    if bound.as_of_us >= as_of:
        reason = (
            f"the newest snapshot is as of {format_time_us(bound.as_of_us)}, not before this "
            f"run's as-of {format_time_us(as_of)}: a scheduled run never writes an older one"
        )
        return {"table": table, "status": "skipped", **newest, "reason": reason}, None
    check = changes_after(s3, config.bucket, config.prefix, table, bound)
    if check.found:
        return None, check
    reason = f"nothing written since the snapshot ({check.reason})"
    unchanged = {"table": table, "status": "unchanged", **newest, "reason": reason}
    return {**unchanged, "checked_by": check.source}, check


def _compact(
    s3: Any,
    dynamodb: Any,
    config: ScheduleConfig,
    table: str,
    now: float,
    as_of: int,
    state: ScheduleState,
    check: NewChanges | None,
    autoscaling: Any | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    result = Compactor(
        s3,
        config.bucket,
        table,
        prefix=config.prefix,
        config=CompactionConfig(),
        dynamodb=dynamodb,
        autoscaling=autoscaling,
    ).run(as_of)
    seconds = time.perf_counter() - started
    manifest = result.manifest
    write_state(
        s3,
        config.bucket,
        config.prefix,
        table,
        dataclasses.replace(state, snapshot=SnapshotBound.of(manifest)),
    )
    emit(table, "CompactionSeconds", MetricUnit.Seconds, round(seconds, 3))
    emit(table, "SnapshotItems", MetricUnit.Count, manifest.counts.items)
    emit(table, "VersionsRead", MetricUnit.Count, manifest.counts.objects_read)
    emit(
        table,
        "SnapshotLagSeconds",
        MetricUnit.Seconds,
        round(now - manifest.as_of_us / 1e6, 1),
    )
    outcome = {
        "table": table,
        "status": "compacted" if result.created else "exists",
        "snapshot": manifest.id,
        "as_of": format_time_us(manifest.as_of_us),
        "kind": manifest.kind,
        "items": manifest.counts.items,
        "change_source": manifest.change_source,
        "changed_keys": manifest.counts.changed_keys,
        "versions_read": manifest.counts.objects_read,
        "journal_changes": manifest.counts.journal_changes,
        "seconds": round(seconds, 3),
    }
    if check is not None:
        outcome["checked_by"] = check.source
    return outcome


def run_compactions(
    s3: Any,
    dynamodb: Any,
    config: ScheduleConfig,
    now: float | None = None,
    autoscaling: Any | None = None,
) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    results = []
    failed = []
    for table in config.tables:
        try:
            outcome = compact_table(s3, dynamodb, config, table, now, autoscaling)
        except BackupError as e:
            logger.exception("scheduled compaction failed", table=table, reason=str(e))
            outcome = {"table": table, "status": "failed", "error": str(e)}
            failed.append(table)
        logger.info("scheduled compaction", **outcome)
        results.append(outcome)
    if failed:
        raise ScheduledRunError(f"compaction failed for {', '.join(failed)}; see the log")
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
        config = ScheduleConfig(
            config.bucket, tuple(event["tables"]), config.prefix, config.settle_seconds
        )
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    tables = tuple(t.strip() for t in (args.tables or args.table or "").split(",") if t.strip())
    if not tables:
        raise ConfigError("name the tables with --tables T1,T2 (or --table T)")
    config = ScheduleConfig(args.bucket, tables, normalize_prefix(args.prefix), args.settle)
    settings = settings_from(args)
    results = run_compactions(
        make_client("s3", settings),
        make_client("dynamodb", settings),
        config,
        autoscaling=make_client("application-autoscaling", settings),
    )
    if args.json:
        emit_json({"results": results})
    else:
        for outcome in results:
            print(" ".join(f"{k}={v}" for k, v in outcome.items()))
    return 0
