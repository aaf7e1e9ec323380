"""The scheduled `expire`: snapshot retention and orphan clean-up of configured tables, as
a Lambda handler for an EventBridge schedule (deploy/template.yaml's ExpireFunction).

Configured by BACKUP_BUCKET, BACKUP_PREFIX, BACKUP_TABLES (comma-separated), KEEP_LAST,
KEEP_DAYS (optional) and GRACE_HOURS (optional, the `expire` default otherwise). It never
puts the lifecycle rule on the bucket (the stack owns the bucket's lifecycle
configuration): the rule is logged, and the noncurrent-version days it needs are a metric.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit

from backup_lambda.errors import BackupError, ConfigError
from backup_lambda.layout import normalize_prefix
from compaction.retention import RetentionPolicy
from jobs.cli.clients import AwsSettings, make_client
from jobs.ops.expire import DEFAULT_GRACE_HOURS, MIN_GRACE_HOURS, Expirer
from jobs.ops.schedule_table import emit
from jobs.ops.scheduled import ScheduledRunError

logger = Logger(service="ddb-backup-expire")


@dataclass(frozen=True)
class ExpireConfig:
    bucket: str
    tables: tuple[str, ...]
    keep_last: int
    prefix: str = ""
    keep_days: float | None = None
    grace_hours: float = DEFAULT_GRACE_HOURS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExpireConfig:
        bucket = env.get("BACKUP_BUCKET", "").strip()
        tables = tuple(t.strip() for t in env.get("BACKUP_TABLES", "").split(",") if t.strip())
        if not bucket or not tables:
            raise ConfigError("BACKUP_BUCKET and BACKUP_TABLES (comma-separated) are required")
        try:
            keep_last = int(env.get("KEEP_LAST", ""))
            keep_days = _optional_number(env.get("KEEP_DAYS"))
            grace = _optional_number(env.get("GRACE_HOURS"))
        except ValueError as e:
            raise ConfigError(f"KEEP_LAST (a whole number), KEEP_DAYS, GRACE_HOURS: {e}") from e
        if keep_last < 1:
            raise ConfigError(f"KEEP_LAST must be at least 1, got {keep_last}")
        if keep_days is not None and keep_days < 0:
            raise ConfigError("KEEP_DAYS must be >= 0")
        if grace is not None and grace < MIN_GRACE_HOURS:
            raise ConfigError(f"GRACE_HOURS must be at least {MIN_GRACE_HOURS:g}, got {grace:g}")
        return cls(
            bucket=bucket,
            tables=tables,
            keep_last=keep_last,
            prefix=normalize_prefix(env.get("BACKUP_PREFIX", "")),
            keep_days=keep_days or None,  # 0 = only KEEP_LAST, as the template's default
            grace_hours=DEFAULT_GRACE_HOURS if grace is None else grace,
        )


def _optional_number(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a number: {text!r}")
    return value


def expire_table(s3: Any, config: ExpireConfig, table: str, now_us: int) -> dict[str, Any]:
    report = Expirer(
        s3,
        config.bucket,
        table,
        config.prefix,
        RetentionPolicy(config.keep_last, config.keep_days),
        grace_us=int(config.grace_hours * 3600 * 1_000_000),
        now_us=now_us,
    ).run(apply_lifecycle=False)
    emit(table, "SnapshotsExpired", MetricUnit.Count, len(report.expired))
    emit(table, "SnapshotsKept", MetricUnit.Count, len(report.kept))
    emit(table, "ExpiredObjectsDeleted", MetricUnit.Count, report.deleted_objects)
    outcome: dict[str, Any] = {
        "table": table,
        "status": "expired",
        "kept": len(report.kept),
        "expired": report.expired,
        "deleted_objects": report.deleted_objects,
        "freed_bytes": report.freed_bytes,
        "waiting_runs": len(report.waiting_runs),
        "journal": report.journal.to_json() if report.journal else None,
    }
    if report.lifecycle is not None:
        days = report.lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"]
        emit(table, "NoncurrentDaysNeeded", MetricUnit.Count, days)
        outcome["noncurrent_days_needed"] = days
    return outcome


def run_expiry(s3: Any, config: ExpireConfig, now_us: int | None = None) -> list[dict[str, Any]]:
    """Every configured table; one that fails is logged and the others still run, then
    the run fails so that the schedule's Errors alarm shows it."""
    now_us = int(time.time() * 1_000_000) if now_us is None else now_us
    results, failed = [], []
    for table in config.tables:
        try:
            outcome = expire_table(s3, config, table, now_us)
        except BackupError as e:
            logger.exception("scheduled expire failed", table=table, reason=str(e))
            outcome = {"table": table, "status": "failed", "error": str(e)}
            failed.append(table)
        logger.info("scheduled expire", **outcome)
        results.append(outcome)
    if failed:
        raise ScheduledRunError(f"expire failed for {', '.join(failed)}; see the log")
    return results


def expire_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """EventBridge schedule target; the event may name {"tables": [...]} to override."""
    config = ExpireConfig.from_env(os.environ)
    if isinstance(event, dict) and event.get("tables"):
        config = ExpireConfig(
            config.bucket,
            tuple(event["tables"]),
            config.keep_last,
            config.prefix,
            config.keep_days,
            config.grace_hours,
        )
    return {"results": run_expiry(make_client("s3", AwsSettings()), config)}
