"""The health of a table's backup: the facts the bucket holds about it (a handful of
requests, no listing of items or of the journal) and the thresholds they miss.

`ddb-backup status` (jobs/ops/status.py) prints them; docs/OPERATIONS.md, "Status".
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import format_time_us, normalize_prefix
from compaction.catalog import newest_at_or_before
from compaction.journal import complete_from, journal_only_since
from compaction.recency import NewestWrite, newest_write
from compaction.s3errors import translate
from compaction.s3read import get_bytes
from jobs.ops.drill import drills_prefix

SEC = 1_000_000
HOUR = 3600 * SEC
# The newest drill report is looked for among those of the last weeks first (one LIST).
RECENT_DRILLS_US = 35 * 24 * HOUR


@dataclass(frozen=True)
class Thresholds:
    max_quiet_hours: float
    max_snapshot_age_hours: float


@dataclass(frozen=True)
class SnapshotFacts:
    id: str
    as_of_us: int
    built_at_us: int
    kind: str
    depth: int
    items: int
    bytes: int
    newest_event_time_us: int | None


@dataclass(frozen=True)
class DrillFacts:
    report: str
    started_at_us: int | None
    passed: bool | None
    failures: tuple[str, ...] = ()
    rpo_seconds: float | None = None
    restore_seconds: float | None = None
    items: int | None = None
    problem: str | None = None  # the report could not be read


@dataclass(frozen=True)
class TableFacts:
    """What the bucket says about one table's backup."""

    prefix: str
    table: str
    newest: NewestWrite | None
    snapshot: SnapshotFacts | None
    journal_complete_from_us: int | None
    journal_only_since_us: int | None
    drill: DrillFacts | None

    @property
    def recovery_point(self) -> tuple[int | None, str | None]:
        """(the newest event time backed up, where it was seen): the journal's newest
        object, else the newest snapshot (a table without a journal)."""
        candidates: list[tuple[int, str]] = []
        if self.newest is not None and self.newest.event_time_us is not None:
            candidates.append((self.newest.event_time_us, "journal"))
        if self.snapshot is not None and self.snapshot.newest_event_time_us is not None:
            candidates.append((self.snapshot.newest_event_time_us, "snapshot"))
        if not candidates:
            return None, None
        return max(candidates, key=lambda c: (c[0], c[1] == "journal"))  # ties: the journal


# ---------------------------------------------------------------- gathering


def gather(s3: Any, bucket: str, prefix: str, table: str, now_us: int) -> TableFacts:
    manifest = newest_at_or_before(s3, bucket, prefix, table, None)
    snapshot = None
    if manifest is not None:
        snapshot = SnapshotFacts(
            manifest.id,
            manifest.as_of_us,
            manifest.built_at_us,
            manifest.kind,
            manifest.depth,
            manifest.counts.items,
            manifest.total_bytes,
            manifest.newest_event_time_us,
        )
    complete = complete_from(s3, bucket, prefix, table)
    return TableFacts(
        normalize_prefix(prefix),
        table,
        newest_write(s3, bucket, prefix, table, now_us),
        snapshot,
        complete,
        journal_only_since(s3, bucket, prefix, table) if complete is not None else None,
        newest_drill(s3, bucket, prefix, table, now_us),
    )


def newest_drill(s3: Any, bucket: str, prefix: str, table: str, now_us: int) -> DrillFacts | None:
    """The newest drill report (reports are named by their start time, so sort by name)."""
    folder = drills_prefix(prefix, table)
    recent = folder + _drill_stamp(now_us - RECENT_DRILLS_US)
    key = _last_key(s3, bucket, folder, recent) or _last_key(s3, bucket, folder, None)
    if key is None:
        return None
    started = _drill_time(key[len(folder) :])
    try:
        document = json.loads(get_bytes(s3, bucket, key))
        return DrillFacts(
            key,
            started,
            bool(document["passed"]),
            tuple(str(f) for f in document.get("failures") or ()),
            document.get("rpo_seconds"),
            document.get("restore_seconds"),
            document.get("items"),
        )
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
    except (ValueError, KeyError, TypeError) as e:
        return DrillFacts(key, started, None, problem=f"not a drill report ({e})")


def _last_key(s3: Any, bucket: str, folder: str, start_after: str | None) -> str | None:
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": folder}
    if start_after is not None:
        params["StartAfter"] = start_after
    last = None
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**params):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith(".json"):
                    last = entry["Key"]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e
    return last


def _drill_stamp(micros: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(max(0, micros) // SEC))


def _drill_time(name: str) -> int | None:
    try:
        moment = dt.datetime.strptime(name.removesuffix(".json"), "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return int(moment.replace(tzinfo=dt.UTC).timestamp()) * SEC


def bucket_versioning(s3: Any, bucket: str) -> str:
    """Enabled, Suspended or Off (never enabled); `unknown (...)` when it cannot be read."""
    try:
        response = s3.get_bucket_versioning(Bucket=bucket)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in {"AccessDenied", "NotImplemented", "MethodNotAllowed"}:
            return f"unknown ({code})"
        raise translate(e, bucket, "") from e
    except BotoCoreError as e:
        raise translate(e, bucket, "") from e
    return str(response.get("Status") or "Off")


# ---------------------------------------------------------------- judging


def versioning_warnings(versioning: str) -> list[str]:
    if versioning == "Enabled" or versioning.startswith("unknown"):
        return []
    return [
        f"bucket versioning is {versioning}: an item object keeps only its newest change "
        "(put-bucket-versioning Status=Enabled; docs/DEPLOY.md)"
    ]


def table_warnings(facts: TableFacts, limits: Thresholds, now_us: int) -> list[str]:
    """The thresholds this table misses, one line each (pure: no I/O, no clock)."""
    found = []
    event_us, source = facts.recovery_point
    written_us = facts.newest.written_at_us if facts.newest is not None else event_us
    quiet_limit = limits.max_quiet_hours * HOUR
    if facts.newest is not None and facts.newest.problem:
        found.append(f"newest journal object unreadable: {facts.newest.problem}")
    if written_us is None:
        found.append("no change is backed up yet (no journal, no snapshot)")
    elif now_us - written_us > quiet_limit:
        what = "written" if source == "journal" else "in the newest snapshot (no journal)"
        found.append(
            f"no change {what} for {duration(now_us - written_us)} (more than "
            f"{_hours(limits.max_quiet_hours)}, --max-quiet-hours): is the stream Lambda "
            "running?"
        )
    snapshot = facts.snapshot
    if snapshot is None:
        found.append("no snapshot yet (run `ddb-backup compact`)")
    elif now_us - snapshot.as_of_us > limits.max_snapshot_age_hours * HOUR and (
        event_us is None or event_us > snapshot.as_of_us
    ):
        found.append(
            f"newest snapshot {snapshot.id} is {duration(now_us - snapshot.as_of_us)} old "
            f"(more than {_hours(limits.max_snapshot_age_hours)}, --max-snapshot-age-hours) "
            "and newer changes wait: is the compaction schedule running?"
        )
    drill = facts.drill
    if drill is not None and drill.problem:
        found.append(f"last drill report {drill.report}: {drill.problem}")
    elif drill is not None and drill.passed is False:
        when = format_time_us(drill.started_at_us) if drill.started_at_us else drill.report
        found.append(f"last drill ({when}) failed: {'; '.join(drill.failures) or 'no reason'}")
    return found


def duration(micros: int) -> str:
    seconds = max(0, micros) / SEC
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _hours(value: float) -> str:
    return f"{value:g} h"


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_time_us(max(0, micros))


def _seconds(micros: int | None) -> float | None:
    return None if micros is None else round(micros / SEC, 3)


def table_report(
    facts: TableFacts, limits: Thresholds, warnings: list[str], now_us: int
) -> dict[str, Any]:
    event_us, source = facts.recovery_point
    newest = facts.newest
    snapshot = facts.snapshot
    drill = facts.drill
    return {
        "prefix": facts.prefix,
        "table": facts.table,
        "healthy": not warnings,
        "warnings": warnings,
        "newest_change": {
            "source": source,
            "event_time": _time(event_us),
            "lag_seconds": _seconds(None if event_us is None else now_us - event_us),
            "written_at": _time(newest.written_at_us) if newest else None,
            "quiet_seconds": _seconds(now_us - newest.written_at_us) if newest else None,
            "journal_object": newest.key if newest else None,
        },
        "snapshot": None
        if snapshot is None
        else {
            "id": snapshot.id,
            "as_of": _time(snapshot.as_of_us),
            "age_seconds": _seconds(now_us - snapshot.as_of_us),
            "built_at": _time(snapshot.built_at_us),
            "kind": snapshot.kind,
            "depth": snapshot.depth,
            "items": snapshot.items,
            "bytes": snapshot.bytes,
        },
        "journal": {
            "has_journal": newest is not None,
            "complete_from": _time(facts.journal_complete_from_us),
            "journal_only_since": _time(facts.journal_only_since_us),
        },
        "drill": None
        if drill is None
        else {
            "report": drill.report,
            "started_at": _time(drill.started_at_us),
            "age_seconds": _seconds(
                None if drill.started_at_us is None else now_us - drill.started_at_us
            ),
            "passed": drill.passed,
            "failures": list(drill.failures),
            "rpo_seconds": drill.rpo_seconds,
            "restore_seconds": drill.restore_seconds,
            "items": drill.items,
        },
        "thresholds": {
            "max_quiet_hours": limits.max_quiet_hours,
            "max_snapshot_age_hours": limits.max_snapshot_age_hours,
        },
    }
