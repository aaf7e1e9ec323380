"""`ddb-backup status`: one look at whether every table's backup is healthy.

Per table, from a handful of requests (jobs/ops/health.py): the newest change written and
its lag (the recovery point), the newest snapshot, the journal's coverage, and the last
drill; for the bucket, its versioning. Thresholds missed are warnings, and the exit status
is 5 when there is any (for cron and monitoring).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backup_lambda.errors import NotFoundError
from backup_lambda.layout import format_time_us
from compaction.discovery import find_tables
from compaction.versions import table_has_backup
from jobs.cli import config
from jobs.cli.args import positive_number
from jobs.cli.clients import make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json, note, print_table, warn
from jobs.ops.health import (
    SEC,
    Thresholds,
    bucket_versioning,
    duration,
    gather,
    table_report,
    table_warnings,
    versioning_warnings,
)

EXIT_THRESHOLD_MISSED = 5  # jobs.main's status for a drill or health check that missed


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
        checked = format_time_us(now_us - now_us % SEC)
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
