"""One table's scheduled compaction: skip it when its newest snapshot is not older than
the as-of or nothing was written since (docs/OPERATIONS.md, "Scheduled compaction"), else
compact it, every Nth time verifying the journal, every Nth snapshot full."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from backup_lambda.errors import ConfigError
from backup_lambda.layout import format_time_us, normalize_prefix
from compaction import catalog
from compaction.backfills import not_before_backfill
from compaction.compactor import CompactionConfig, Compactor
from compaction.journal import JOURNAL
from compaction.newchanges import NewChanges, SnapshotBound, changes_after
from compaction.policy import SnapshotPolicy
from jobs.backup.compact import DEFAULT_SETTLE_SECONDS
from jobs.cli import config as cli_config
from jobs.ops.schedule_state import ScheduleState, read_state, write_state

NAMESPACE = "ddb-backup"
Metric = Callable[[str, str, MetricUnit, float], None]  # (table, name, unit, value)


def emit(table: str, name: str, unit: MetricUnit, value: float) -> None:
    """One CloudWatch metric (EMF) with the table as its dimension."""
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="table", value=table)


def no_metrics(table: str, name: str, unit: MetricUnit, value: float) -> None:
    """Metrics dropped (the command's human output)."""


@dataclass(frozen=True)
class ScheduleConfig:
    bucket: str
    tables: tuple[str, ...]
    prefix: str = ""
    settle_seconds: int = DEFAULT_SETTLE_SECONDS
    max_rpo_seconds: float | None = None
    max_restore_seconds: float | None = None
    # Every Nth compaction that reads the journal alone verifies it (0: never).
    verify_journal_every: int = cli_config.VERIFY_JOURNAL_EVERY.default
    full_every: int = cli_config.FULL_EVERY.default  # every Nth snapshot is full (0: policy)

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
                verify_journal_every=_from_env(env, cli_config.VERIFY_JOURNAL_EVERY),
                full_every=_from_env(env, cli_config.FULL_EVERY),
            )
        except ValueError as e:
            raise ConfigError(f"bad scheduled-run setting: {e}") from e


def _optional_float(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def _from_env(env: Mapping[str, str], setting: cli_config.Setting) -> Any:
    """A setting from its environment variable, parsed as the command line parses it."""
    (name,) = setting.env
    text = env.get(name, "").strip()
    if not text:
        return setting.default
    try:
        return setting.parse(text)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from e


def compact_table(
    s3: Any,
    dynamodb: Any,
    config: ScheduleConfig,
    table: str,
    now: float,
    autoscaling: Any | None = None,
    metric: Metric = emit,
) -> dict[str, Any]:
    """Compact `table` as of now minus the settle window, unless nothing was written since
    its newest snapshot or that snapshot is not older than the as-of (docs/OPERATIONS.md)."""
    as_of = int((now - config.settle_seconds) * 1_000_000)
    state, unreadable = read_state(s3, config.bucket, config.prefix, table)
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
    if bound is None:  # the first snapshot: it holds a backfill made within the settle
        as_of, _ = not_before_backfill(
            s3, config.bucket, config.prefix, table, as_of, int(now * 1_000_000)
        )
    if bound is not None and bound != state.snapshot:
        state = dataclasses.replace(state, snapshot=bound)
        if skip is not None:
            write_state(s3, config.bucket, config.prefix, table, state)
    if skip is not None and bound is not None:
        lag = round(now - bound.as_of_us / 1e6, 1)
        metric(table, "SnapshotLagSeconds", MetricUnit.Seconds, lag)
        outcome = skip
    else:
        outcome = _compact(
            s3, dynamodb, config, table, now, as_of, state, check, autoscaling, metric
        )
    return outcome if unreadable is None else {**outcome, "note": unreadable}


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
    metric: Metric,
) -> dict[str, Any]:
    every = config.verify_journal_every
    verify = every > 0 and state.unverified_journal_runs + 1 >= every
    started = time.perf_counter()
    result = Compactor(
        s3,
        config.bucket,
        table,
        prefix=config.prefix,
        config=CompactionConfig(
            verify_journal=verify, policy=SnapshotPolicy(full_every=config.full_every)
        ),
        dynamodb=dynamodb,
        autoscaling=autoscaling,
    ).run(as_of)
    seconds = time.perf_counter() - started
    manifest = result.manifest
    runs = state.unverified_journal_runs
    if result.created and manifest.change_source == JOURNAL:
        verified = result.journal_check is not None and result.journal_check.checked
        runs = 0 if verified else runs + 1
    write_state(
        s3,
        config.bucket,
        config.prefix,
        table,
        ScheduleState(SnapshotBound.of(manifest), runs),
    )
    metric(table, "CompactionSeconds", MetricUnit.Seconds, round(seconds, 3))
    metric(table, "SnapshotItems", MetricUnit.Count, manifest.counts.items)
    metric(table, "VersionsRead", MetricUnit.Count, manifest.counts.objects_read)
    metric(
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
        "policy": manifest.policy_reason,
        "seconds": round(seconds, 3),
    }
    if result.journal_check is not None:
        outcome["journal_check"] = result.journal_check.summary()
    if check is not None:
        outcome["checked_by"] = check.source
    return outcome
