"""`ddb-backup status`: one look at whether every table's backup is healthy.

Per table, from a handful of requests (no listing of items or of the journal): the newest
change written and its lag (the recovery point), the newest snapshot, the journal's
coverage, and the last drill; for the bucket, its versioning. Thresholds missed are
warnings, and the exit status is 5 when there is any (for cron and monitoring).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import NotFoundError
from backup_lambda.layout import format_time_us, normalize_prefix
from compaction.catalog import newest_at_or_before
from compaction.discovery import find_tables
from compaction.journal import complete_from, journal_only_since
from compaction.recency import NewestWrite, newest_write
from compaction.s3errors import translate
from compaction.s3read import get_bytes
from compaction.versions import table_has_backup
from jobs.cli import config
from jobs.cli.args import positive_number
from jobs.cli.clients import make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json, note, print_table, warn
from jobs.ops.drill import drills_prefix

EXIT_THRESHOLD_MISSED = 5  # jobs.main's status for a drill or health check that missed
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


# ---------------------------------------------------------------- the command


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "status",
        parents=[common],
        help="health of every table's backup: recovery point, snapshot, journal, drill",
        description="For every table backed up under --prefix (or each --table): the newest "
        "change written and its lag (the recovery point; from the journal's newest object, "
        "else the newest snapshot), the newest snapshot (age, kind, items, bytes), the "
        "journal's coverage, the last drill and its result, and the bucket's versioning. "
        "Warnings when no change was written for --max-quiet-hours, when the newest "
        "snapshot is older than --max-snapshot-age-hours while newer changes wait, when the "
        "last drill failed, or when versioning is off; the exit status is then 5.",
    )
    add_setting(
        parser,
        config.MAX_QUIET_HOURS,
        "--max-quiet-hours",
        type=positive_number,
        metavar="HOURS",
        help="warn when no change was written for longer",
    )
    add_setting(
        parser,
        config.MAX_SNAPSHOT_AGE_HOURS,
        "--max-snapshot-age-hours",
        type=positive_number,
        metavar="HOURS",
        help="warn when the newest snapshot is older and newer changes wait",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    s3 = make_client("s3", settings_from(args))
    now_us = int(clock() * SEC)
    targets = _targets(s3, args)
    versioning = bucket_versioning(s3, args.bucket)
    with ThreadPoolExecutor(min(8, len(targets)), thread_name_prefix="status") as pool:
        facts = list(pool.map(lambda t: gather(s3, args.bucket, t[0], t[1], now_us), targets))
    bucket_warnings = versioning_warnings(versioning)
    reports = []
    for one in facts:
        limits = _thresholds(args, one.table)
        reports.append(table_report(one, limits, table_warnings(one, limits, now_us), now_us))
    missed = bucket_warnings + [w for r in reports for w in r["warnings"]]
    if args.json:
        emit_json(
            {
                "bucket": args.bucket,
                "versioning": versioning,
                "checked_at": format_time_us(now_us),
                "healthy": not missed,
                "warnings": bucket_warnings,
                "tables": reports,
            }
        )
    else:
        checked = _time(now_us - now_us % SEC)
        note(args, f"s3://{args.bucket}: versioning {versioning}; checked at {checked}")
        _print(reports)
    for text in bucket_warnings:
        warn(f"s3://{args.bucket}: {text}")
    for report in reports:
        for text in report["warnings"]:
            warn(f"{_name(report)}: {text}")
    if missed:
        unhealthy = sum(1 for r in reports if not r["healthy"])
        print(
            f"ddb-backup: error: {len(missed)} warning(s): {unhealthy} of {len(reports)} "
            f"table(s) unhealthy{', bucket versioning off' if bucket_warnings else ''}",
            file=sys.stderr,
        )
        return EXIT_THRESHOLD_MISSED
    return 0


def _targets(s3: Any, args: argparse.Namespace) -> list[tuple[str, str]]:
    """(prefix, table) of each named table (that must have a backup), else of every table
    found under --prefix."""
    named: Sequence[str] = args.table or ()
    if named:
        for table in named:
            if not table_has_backup(s3, args.bucket, args.prefix, table):
                raise NotFoundError(
                    f"no backup of table {table!r} in s3://{args.bucket}/{args.prefix}"
                )
        return [(args.prefix, table) for table in dict.fromkeys(named)]
    found = find_tables(s3, args.bucket, args.prefix)
    if not found:
        raise NotFoundError(f"no backed-up tables under s3://{args.bucket}/{args.prefix}")
    return [(t.prefix, t.table) for t in found]


def _thresholds(args: argparse.Namespace, table: str) -> Thresholds:
    """The flag's value, else the table's own setting (environment, [tables.<name>])."""
    sources: dict[str, config.Resolved] = getattr(args, "setting_sources", {})
    loaded: config.Config | None = None
    values = []
    for setting in (config.MAX_QUIET_HOURS, config.MAX_SNAPSHOT_AGE_HOURS):
        given = sources.get(setting.name)
        if given is None or given.source == "flag":
            values.append(float(getattr(args, setting.name) or setting.default))
            continue
        loaded = loaded or config.Config.load()
        values.append(float(loaded.resolve(setting, table).value))
    return Thresholds(*values)


def _name(report: dict[str, Any]) -> str:
    return f"{report['prefix']}/{report['table']}" if report["prefix"] else report["table"]


def _print(reports: list[dict[str, Any]]) -> None:
    rows = []
    for r in reports:
        change, snapshot, journal, drill = (
            r["newest_change"],
            r["snapshot"],
            r["journal"],
            r["drill"],
        )
        rows.append(
            [
                r["prefix"] or "-",
                r["table"],
                change["event_time"],
                _ago(change["lag_seconds"]),
                _ago(snapshot["age_seconds"]) if snapshot else None,
                _kind(snapshot),
                snapshot["items"] if snapshot else None,
                snapshot["bytes"] if snapshot else None,
                _journal(journal),
                _drill(drill),
                "ok" if r["healthy"] else f"WARN ({len(r['warnings'])})",
            ]
        )
    print_table(
        [
            "PREFIX",
            "TABLE",
            "NEWEST CHANGE",
            "LAG",
            "SNAPSHOT AGE",
            "KIND",
            "ITEMS",
            "BYTES",
            "JOURNAL",
            "LAST DRILL",
            "HEALTH",
        ],
        rows,
        right=(3, 4, 6, 7),
    )


def _ago(seconds: float | None) -> str | None:
    return None if seconds is None else duration(int(seconds * SEC))


def _kind(snapshot: dict[str, Any] | None) -> str | None:
    if snapshot is None:
        return None
    return f"delta:{snapshot['depth']}" if snapshot["kind"] == "delta" else snapshot["kind"]


def _journal(journal: dict[str, Any]) -> str:
    if journal["complete_from"] is None:
        return "partial" if journal["has_journal"] else "none"
    only = " (journal-only)" if journal["journal_only_since"] else ""
    return f"complete from {journal['complete_from']}{only}"


def _drill(drill: dict[str, Any] | None) -> str | None:
    if drill is None:
        return None
    verdict = {True: "passed", False: "FAILED", None: "unreadable"}[drill["passed"]]
    return f"{verdict} {_ago(drill['age_seconds']) or '?'} ago"
