"""`ddb-backup drill`: prove the backup restores, and measure recovery point and time."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import BackupError
from backup_lambda.layout import format_time_us, table_root
from compaction.settingsstore import settings_at
from compaction.tablesettings import TABLE, TIME_TO_LIVE, TableSettings, capture_settings
from compaction.versions import put_json
from jobs.cli import config
from jobs.cli.args import positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json
from jobs.restore.restorer import RestoreOptions, Restorer
from jobs.restore.tablesettings import SettingsOverrides

# The scratch table gets the source's indexes, TTL, encryption, class and tags, but is
# on-demand (no capacity to size or scale), without stream, PITR or deletion protection
# (it is dropped at the end); what cannot be applied is reported, not fatal.
DRILL_SETTINGS = SettingsOverrides(
    billing_mode="PAY_PER_REQUEST",
    no_stream=True,
    no_pitr=True,
    no_auto_scaling=True,
    no_deletion_protection=True,
    skip_unapplicable=True,
)
_TTL_ON = frozenset({"ENABLED", "ENABLING"})


def drills_prefix(prefix: str, table: str) -> str:
    """Where drill reports go: <prefix>/<table>/v1/drills/<yyyymmddThhmmssZ>.json (FORMAT.md)."""
    return f"{table_root(prefix, table)}v1/drills/"


class DrillFailedError(BackupError):
    """The drill ran but missed a threshold, or the restore did not verify."""


@dataclass
class DrillReport:
    table: str
    scratch_table: str
    started_at: str
    passed: bool = False
    items: int = 0
    restore_seconds: float = 0.0
    rpo_seconds: float | None = None
    newest_event_time: str | None = None
    snapshot: str | None = None
    max_rpo_seconds: float | None = None
    max_restore_seconds: float | None = None
    failures: list[str] = field(default_factory=list)
    report_key: str = ""
    # Indexes and TTL of the drilled table against the source's: what they were compared
    # with ("the source table" live, or the recorded settings), and what was compared.
    settings_compared_with: str | None = None
    settings_checked: list[str] = field(default_factory=list)
    settings_unapplied: list[str] = field(default_factory=list)


class Drill:
    def __init__(
        self,
        s3: Any,
        dynamodb: Any,
        bucket: str,
        table: str,
        prefix: str = "",
        max_rpo_seconds: float | None = None,
        max_restore_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s3 = s3
        self._dynamodb = dynamodb
        self._bucket = bucket
        self._table = table
        self._prefix = prefix
        self._max_rpo = max_rpo_seconds
        self._max_restore = max_restore_seconds
        self._clock = clock

    def run(self) -> DrillReport:
        now = self._clock()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        report = DrillReport(
            table=self._table,
            scratch_table=f"{self._table}-drill-{stamp}"[:255],
            started_at=format_time_us(int(now * 1_000_000)),
            max_rpo_seconds=self._max_rpo,
            max_restore_seconds=self._max_restore,
        )
        try:
            self._restore(report, int(now * 1_000_000))
        except BackupError as e:
            report.failures.append(f"restore failed: {e}")
        finally:
            self._drop(report.scratch_table)
        if self._max_rpo is not None and (
            report.rpo_seconds is None or report.rpo_seconds > self._max_rpo
        ):
            report.failures.append(
                f"recovery point {report.rpo_seconds} s exceeds --max-rpo {self._max_rpo} s"
            )
        if self._max_restore is not None and report.restore_seconds > self._max_restore:
            report.failures.append(
                f"restore took {report.restore_seconds:.1f} s, over --max-restore-seconds "
                f"{self._max_restore} s"
            )
        report.passed = not report.failures
        self._write_report(report, stamp)
        return report

    def _restore(self, report: DrillReport, as_of_us: int) -> None:
        started = time.perf_counter()
        result = Restorer(
            self._s3,
            self._dynamodb,
            self._bucket,
            self._table,
            report.scratch_table,
            prefix=self._prefix,
            # the latest state: an empty one is what the backup holds, not a mistaken time
            options=RestoreOptions(
                as_of_us=as_of_us,
                create_table=True,
                verify=True,
                allow_empty=True,
                settings=DRILL_SETTINGS,
            ),
            announce=lambda text: None,
        ).run()
        report.settings_unapplied = list(result.settings.get("unapplied", []))
        self._check_settings(report, as_of_us)
        report.restore_seconds = round(time.perf_counter() - started, 3)
        report.items = result.state_items
        report.snapshot = result.snapshot
        if result.newest_event_us is not None:
            report.newest_event_time = format_time_us(result.newest_event_us)
            report.rpo_seconds = round(max(0.0, as_of_us - result.newest_event_us) / 1e6, 3)

    def _check_settings(self, report: DrillReport, as_of_us: int) -> None:
        """The drilled table's indexes and TTL must be the source's: the live source table's
        when it can be described, else the settings recorded with the backup."""
        parts = (TABLE, TIME_TO_LIVE)
        source: TableSettings | None = capture_settings(self._dynamodb, self._table, parts=parts)
        report.settings_compared_with = "the source table"
        if source is None or not source.captured(TABLE):
            source = settings_at(self._s3, self._bucket, self._prefix, self._table, as_of_us)
            report.settings_compared_with = "the recorded settings"
        if source is None or not source.captured(TABLE):
            report.settings_compared_with = None  # nothing to compare with: not a failure
            return
        drilled = capture_settings(self._dynamodb, report.scratch_table, parts=parts)
        report.failures += compare_indexes_and_ttl(source, drilled, report.settings_checked)

    def _drop(self, table: str) -> None:
        try:
            self._dynamodb.delete_table(TableName=table)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        except BotoCoreError:
            pass  # best effort; the report names the table

    def _write_report(self, report: DrillReport, stamp: str) -> None:
        key = f"{drills_prefix(self._prefix, self._table)}{stamp}.json"
        report.report_key = key
        put_json(self._s3, self._bucket, key, asdict(report))


def _indexes(settings: TableSettings) -> dict[str, Any]:
    table = settings.value(TABLE) or {}
    return {
        f"{kind} index {index['IndexName']}": (index["KeySchema"], index["Projection"])
        for kind, key in (("global", "GlobalSecondaryIndexes"), ("local", "LocalSecondaryIndexes"))
        for index in table.get(key) or []
    }


def _ttl(settings: TableSettings) -> str | None:
    """The TTL attribute when TTL is on, else None."""
    ttl = settings.value(TIME_TO_LIVE) or {}
    return ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in _TTL_ON else None


def compare_indexes_and_ttl(
    source: TableSettings, drilled: TableSettings, checked: list[str]
) -> list[str]:
    """Failures where the drilled table's indexes or TTL differ from the source's; `checked`
    gets what was compared."""
    failures = []
    want, have = _indexes(source), _indexes(drilled)
    for name in sorted(set(want) | set(have)):
        checked.append(name)
        if name not in have:
            failures.append(f"{name}: missing in the drilled table")
        elif name not in want:
            failures.append(f"{name}: in the drilled table, not in the source")
        elif have[name] != want[name]:
            failures.append(f"{name}: keys or projection differ from the source's")
    if source.captured(TIME_TO_LIVE) and drilled.captured(TIME_TO_LIVE):
        checked.append("time to live")
        if _ttl(source) != _ttl(drilled):
            failures.append(
                f"time to live: the source's is {_ttl(source) or 'off'}, the drilled "
                f"table's {_ttl(drilled) or 'off'}"
            )
    return failures


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "drill",
        parents=[common],
        help="restore the latest state into a scratch table, verify it, measure RPO and time",
        description="Restores the latest state into <table>-drill-<time>, verifies count "
        "and per-item checksums, measures the recovery point (now minus the newest "
        "backed-up event time) and the restore time, writes a JSON report to the bucket "
        "under <table>/v1/drills/, drops the scratch table, and exits 5 when a threshold "
        "is missed.",
    )
    add_setting(
        parser,
        config.MAX_RPO,
        "--max-rpo",
        type=positive_int,
        metavar="SECONDS",
        help="fail when now minus the newest backed-up event time is longer",
        none_means="no limit",
    )
    add_setting(
        parser,
        config.MAX_RESTORE_SECONDS,
        "--max-restore-seconds",
        type=positive_int,
        metavar="SECONDS",
        help="fail when the restore takes longer",
        none_means="no limit",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = Drill(
        make_client("s3", settings),
        make_client("dynamodb", settings),
        args.bucket,
        args.table,
        prefix=args.prefix,
        max_rpo_seconds=args.max_rpo,
        max_restore_seconds=args.max_restore_seconds,
    ).run()
    if args.json:
        emit_json(asdict(report))
    else:
        print(
            f"drill {'PASSED' if report.passed else 'FAILED'}: {report.items} items restored "
            f"into {report.scratch_table} (dropped) and verified in {report.restore_seconds}s; "
            f"recovery point {report.rpo_seconds}s; report s3://{args.bucket}/{report.report_key}"
        )
    if not report.passed:
        raise DrillFailedError("; ".join(report.failures))
    return 0
