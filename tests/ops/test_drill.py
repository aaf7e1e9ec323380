"""The restore drill on moto: one that passes, one that misses its threshold."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from jobs.main import main
from jobs.ops.drill import Drill, DrillReport
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    compact,
    create_table,
    item,
    now_us,
    whole_second_ago,
)

DRILLS = f"{TABLE}/v1/drills/"


def stored_reports(s3: Any) -> list[dict[str, Any]]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=DRILLS).get("Contents", [])
    return [json.loads(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in listing]


@pytest.fixture
def backed_up(s3: Any, dynamodb: Any, log: ChangeLog) -> ChangeLog:
    """The live table `orders` and its backup: a snapshot plus changes after it."""
    create_table(dynamodb, TABLE)
    t0 = whole_second_ago(600)
    for i in range(6):
        log.put(item(f"item-{i}", v=i, text="x" * i), t0 + i * SEC)
    log.remove("item-2", t0 + 10 * SEC)
    compact(s3, t0 + 20 * SEC)
    log.put(item("item-1", v=100), t0 + 30 * SEC)
    log.put(item("item-9", v=9), t0 + 31 * SEC)
    return log


def test_drill_passes(s3: Any, dynamodb: Any, backed_up: ChangeLog) -> None:
    newest_event = max(c.event_time_us for c in backed_up.changes)
    now = now_us()
    expected_items = len(backed_up.expected(now))

    report = Drill(
        s3,
        dynamodb,
        BUCKET,
        TABLE,
        max_rpo_seconds=3600,
        max_restore_seconds=600,
        clock=lambda: now / SEC,
    ).run()

    assert report.passed, report.failures
    assert report.failures == []
    assert report.items == expected_items == 6
    assert report.rpo_seconds == round((now - newest_event) / SEC, 3)
    assert 0 <= report.restore_seconds < 600
    assert report.snapshot is not None
    assert report.scratch_table.startswith(f"{TABLE}-drill-")
    # the scratch table is gone, the source untouched
    assert dynamodb.list_tables()["TableNames"] == [TABLE]
    # the report is in the bucket
    assert report.report_key.startswith(DRILLS)
    (stored,) = stored_reports(s3)
    assert stored["passed"] is True
    assert stored["items"] == expected_items
    assert stored["rpo_seconds"] == report.rpo_seconds
    assert stored["restore_seconds"] == report.restore_seconds
    assert stored["scratch_table"] == report.scratch_table
    assert set(stored) >= set(DrillReport.__dataclass_fields__)


def test_drill_that_misses_its_rpo_fails_with_exit_5(
    s3: Any, dynamodb: Any, backed_up: ChangeLog, capsys: pytest.CaptureFixture[str]
) -> None:
    # the newest backed-up change is about ten minutes old; the threshold is a minute
    code = main(["drill", "--bucket", BUCKET, "--table", TABLE, "--max-rpo", "60"])
    captured = capsys.readouterr()
    assert code == 5
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("ddb-backup: error: drill failed: recovery point")
    assert "--max-rpo 60" in captured.err
    assert "Traceback" not in captured.err
    (stored,) = stored_reports(s3)
    assert stored["passed"] is False
    assert len(stored["failures"]) == 1
    assert "recovery point" in stored["failures"][0]
    assert stored["rpo_seconds"] > 60
    assert stored["items"] == 6  # the restore itself verified
    # the scratch table was dropped also on failure
    assert dynamodb.list_tables()["TableNames"] == [TABLE]


def test_drill_fails_on_a_fake_clock_far_after_the_newest_event(
    s3: Any, dynamodb: Any, backed_up: ChangeLog
) -> None:
    later = now_us() + 7200 * SEC
    report = Drill(
        s3, dynamodb, BUCKET, TABLE, max_rpo_seconds=3600, clock=lambda: later / SEC
    ).run()
    assert not report.passed
    assert report.rpo_seconds is not None
    assert report.rpo_seconds > 7200
    assert dynamodb.list_tables()["TableNames"] == [TABLE]


def test_cli_drill_json_passes(
    s3: Any, dynamodb: Any, backed_up: ChangeLog, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["drill", "--bucket", BUCKET, "--table", TABLE, "--max-rpo", "3600", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["passed"] is True
    assert payload["items"] == 6
    assert payload["report_key"].startswith(DRILLS)
    assert dynamodb.list_tables()["TableNames"] == [TABLE]


def test_drill_of_a_table_without_backup_reports_the_failed_restore(
    s3: Any, dynamodb: Any, bucket: str
) -> None:
    report = Drill(s3, dynamodb, BUCKET, "ghost", clock=time.time).run()
    assert not report.passed
    assert report.failures[0].startswith("restore failed")
    assert report.rpo_seconds is None
    assert dynamodb.list_tables()["TableNames"] == []
    stored = s3.get_object(Bucket=BUCKET, Key=report.report_key)["Body"].read()
    assert json.loads(stored)["passed"] is False


def test_drill_that_misses_its_restore_time_fails(
    s3: Any, dynamodb: Any, backed_up: ChangeLog
) -> None:
    # no restore takes under a microsecond
    report = Drill(s3, dynamodb, BUCKET, TABLE, max_restore_seconds=1e-6).run()
    assert not report.passed
    assert len(report.failures) == 1
    assert "--max-restore-seconds" in report.failures[0]
    assert report.items == 6
    assert dynamodb.list_tables()["TableNames"] == [TABLE]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=report.report_key)["Body"].read())
    assert stored["passed"] is False
    assert stored["max_restore_seconds"] == 1e-6
