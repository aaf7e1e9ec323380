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
from compaction.versions import put_json
from jobs.cli import config
from jobs.cli.args import positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json
from jobs.restore.restorer import RestoreOptions, Restorer


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
                as_of_us=as_of_us, create_table=True, verify=True, allow_empty=True
            ),
            announce=lambda text: None,
        ).run()
        report.restore_seconds = round(time.perf_counter() - started, 3)
        report.items = result.state_items
        report.snapshot = result.snapshot
        if result.newest_event_us is not None:
            report.newest_event_time = format_time_us(result.newest_event_us)
            report.rpo_seconds = round(max(0.0, as_of_us - result.newest_event_us) / 1e6, 3)

    def _drop(self, table: str) -> None:
        try:
            self._dynamodb.delete_table(TableName=table)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        except BotoCoreError:
            pass  # best effort; the report names the table

    def _write_report(self, report: DrillReport, stamp: str) -> None:
        key = f"{table_root(self._prefix, self._table)}v1/drills/{stamp}.json"
        report.report_key = key
        put_json(self._s3, self._bucket, key, asdict(report))


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
