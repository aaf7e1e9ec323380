"""`ddb-backup status` on moto: healthy, lagging, a stale or missing snapshot, a failed
drill, versioning off; and that it stays cheap (no listing of the journal or the items)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backup_lambda.journal import journal_key
from backup_lambda.layout import Change
from backup_lambda.writer import ChangeWriter
from compaction.versions import put_json
from jobs.main import main
from jobs.ops.drill import Drill, DrillReport, drills_prefix
from jobs.ops.health import (
    TableFacts,
    Thresholds,
    bucket_versioning,
    gather,
    table_warnings,
    versioning_warnings,
)
from tests.ops.conftest import SetClock
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    compact,
    create_table,
    item,
    key,
    now_us,
    whole_second_ago,
)

HOUR = 3600 * SEC


class Stream:
    """Writes changes as the stream Lambda does (journal, coverage marker, item objects),
    at a chosen write time: the writer's clock and S3's LastModified."""

    def __init__(self, s3: Any, s3_clock: SetClock, table: str = TABLE) -> None:
        self._s3 = s3
        self._s3_clock = s3_clock
        self._table = table
        self._sequence = 100

    def write(self, written_us: int, *pks: str) -> None:
        self._s3_clock(written_us)
        writer = ChangeWriter(self._s3, BUCKET, claim_coverage=True, clock=lambda: written_us / SEC)
        changes = []
        for pk in pks:
            self._sequence += 1
            changes.append(
                Change(
                    table=self._table,
                    keys=key(pk),
                    event_name="INSERT",
                    event_id=f"e{self._sequence}",
                    sequence_number=str(self._sequence),
                    event_time_us=written_us - 2 * SEC,  # the stream is 2 s behind
                    new_image=item(pk, v=self._sequence),
                )
            )
        assert not writer.write(changes).failed
        self._s3_clock(None)


@pytest.fixture
def stream(s3: Any, bucket: str, s3_clock: SetClock) -> Stream:
    return Stream(s3, s3_clock)


def passed_drill(s3: Any, at_us: int, passed: bool = True) -> None:
    """A drill report as `ddb-backup drill` writes it."""
    stamp = whole_second_stamp(at_us)
    report = DrillReport(TABLE, f"{TABLE}-drill-{stamp}", "", passed=passed, items=3)
    if not passed:
        report.failures.append("restore took 9.0 s, over --max-restore-seconds 1 s")
    put_json(s3, BUCKET, f"{drills_prefix('', TABLE)}{stamp}.json", asdict(report))


def whole_second_stamp(micros: int) -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(micros // SEC))


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main(["status", "--bucket", BUCKET, "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out.splitlines()[-1]), err


def test_healthy(s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN changes 10 minutes ago, a snapshot of them and a passed drill
    written = whole_second_ago(600)
    stream.write(written, "a", "b", "c")
    compact(s3, written + 60 * SEC)
    passed_drill(s3, now_us() - HOUR)
    # WHEN status runs
    code, payload, err = status(capsys)
    # THEN everything is reported and nothing is missed
    assert code == 0, err
    assert "warning" not in err
    assert payload["healthy"] is True
    assert payload["versioning"] == "Enabled"
    assert payload["warnings"] == []
    (table,) = payload["tables"]
    assert (table["prefix"], table["table"], table["healthy"]) == ("", TABLE, True)
    change = table["newest_change"]
    assert change["source"] == "journal"
    assert change["event_time"] is not None
    assert 600 <= change["lag_seconds"] < 700  # written 600 s ago, its events 2 s before
    assert 598 <= change["quiet_seconds"] < 700
    assert change["journal_object"].startswith(f"{TABLE}/v1/journal/")
    snapshot = table["snapshot"]
    assert (snapshot["kind"], snapshot["depth"], snapshot["items"]) == ("full", 0, 3)
    assert snapshot["bytes"] > 0
    assert 530 <= snapshot["age_seconds"] < 640
    assert table["journal"]["has_journal"] is True
    assert table["journal"]["complete_from"] is not None  # the Lambda's coverage marker
    assert table["journal"]["journal_only_since"] is None
    drill = table["drill"]
    assert drill["passed"] is True
    assert 3590 <= drill["age_seconds"] < 3700
    assert table["thresholds"] == {"max_quiet_hours": 24.0, "max_snapshot_age_hours": 26.0}


def test_lagging_stream_misses_max_quiet_hours(
    s3: Any,
    stream: Stream,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the newest change was written 30 hours ago (and is in a snapshot)
    written = whole_second_ago(30 * 3600)
    stream.write(written, "a")
    compact(s3, written + 60 * SEC)
    # WHEN status runs with the default 24 hours
    code, payload, err = status(capsys)
    # THEN exit 5, one warning: no stream activity; the old snapshot is not stale, as
    # nothing newer waits
    assert code == 5
    (table,) = payload["tables"]
    (warning,) = table["warnings"]
    assert warning.startswith("no change written for 30.0h (more than 24 h, --max-quiet-hours)")
    assert table["newest_change"]["lag_seconds"] > 30 * 3600
    assert payload["healthy"] is False
    assert f"ddb-backup: warning: {TABLE}: no change written for 30.0h" in err
    assert err.splitlines()[-1].startswith("ddb-backup: error: 1 warning(s): 1 of 1 table(s)")
    # AND a longer limit, by flag or in the table's config section, passes
    assert status(capsys, "--max-quiet-hours", "48")[0] == 0
    config = tmp_path / "ddb-backup.toml"
    config.write_text(f"max_quiet_hours = 1\n[tables.{TABLE}]\nmax_quiet_hours = 36\n")
    monkeypatch.setenv("DDB_BACKUP_CONFIG", str(config))
    code, payload, _ = status(capsys)
    assert code == 0
    assert payload["tables"][0]["thresholds"]["max_quiet_hours"] == 36.0


def test_stale_snapshot_while_changes_wait(
    s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a snapshot 29 hours old and changes written an hour ago
    old = whole_second_ago(30 * 3600)
    stream.write(old, "a")
    manifest = compact(s3, old + HOUR)
    stream.write(whole_second_ago(3600), "b")
    code, payload, _ = status(capsys)
    assert code == 5
    (warning,) = payload["tables"][0]["warnings"]
    assert warning.startswith(
        f"newest snapshot {manifest.id} is 29.0h old (more than 26 h, "
        "--max-snapshot-age-hours) and newer changes wait"
    )


def test_no_snapshot(s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str]) -> None:
    stream.write(whole_second_ago(600), "a", "b")
    code, payload, err = status(capsys)
    assert code == 5
    (table,) = payload["tables"]
    assert table["snapshot"] is None
    assert table["warnings"] == ["no snapshot yet (run `ddb-backup compact`)"]
    assert table["newest_change"]["source"] == "journal"
    assert "Traceback" not in err


def test_failed_drill(
    s3: Any, dynamodb: Any, stream: Stream, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a healthy backup whose last drill (a real one) missed its restore time
    create_table(dynamodb, TABLE)
    written = whole_second_ago(600)
    stream.write(written, "a", "b")
    compact(s3, written + 60 * SEC)
    report = Drill(s3, dynamodb, BUCKET, TABLE, max_restore_seconds=1e-6).run()
    assert not report.passed
    # WHEN status runs
    code, payload, err = status(capsys, "--table", TABLE)
    # THEN the failed drill is the one warning, and the exit status is 5
    assert code == 5
    (table,) = payload["tables"]
    drill = table["drill"]
    assert drill["report"] == report.report_key
    assert drill["passed"] is False
    assert drill["items"] == 2
    (warning,) = table["warnings"]
    assert warning.startswith("last drill (")
    assert "failed: restore took" in warning
    assert "--max-restore-seconds" in warning
    assert f"ddb-backup: warning: {TABLE}: last drill (" in err


def test_newest_drill_wins(s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str]) -> None:
    written = whole_second_ago(600)
    stream.write(written, "a")
    compact(s3, written + 60 * SEC)
    passed_drill(s3, now_us() - 40 * 24 * HOUR, passed=False)  # long ago, before the window
    assert status(capsys)[0] == 5
    passed_drill(s3, now_us() - 50 * 24 * HOUR, passed=True)  # older still: not the last
    assert status(capsys)[0] == 5
    passed_drill(s3, now_us() - HOUR, passed=True)
    code, payload, _ = status(capsys)
    assert code == 0
    assert payload["tables"][0]["drill"]["passed"] is True


def test_versioning_off(s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str]) -> None:
    written = whole_second_ago(600)
    stream.write(written, "a")
    compact(s3, written + 60 * SEC)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    code, payload, err = status(capsys)
    assert code == 5
    assert payload["versioning"] == "Suspended"
    (warning,) = payload["warnings"]
    assert warning.startswith("bucket versioning is Suspended")
    assert payload["tables"][0]["healthy"] is True  # the table's own checks pass
    assert f"ddb-backup: warning: s3://{BUCKET}: bucket versioning is Suspended" in err
    assert "bucket versioning off" in err.splitlines()[-1]


def test_versioning_never_enabled_is_off(s3: Any, aws: None) -> None:
    s3.create_bucket(Bucket="plain")
    assert bucket_versioning(s3, "plain") == "Off"


def test_table_without_journal_uses_its_newest_snapshot(
    s3: Any, log: ChangeLog, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN item objects written by a Lambda of release 1 (no journal) and a snapshot
    t0 = whole_second_ago(900)
    log.put(item("a", v=1), t0)
    log.put(item("b", v=2), t0 + SEC)
    compact(s3, t0 + 60 * SEC)
    code, payload, _ = status(capsys)
    assert code == 0
    (table,) = payload["tables"]
    assert table["newest_change"]["source"] == "snapshot"
    assert table["newest_change"]["event_time"] is not None
    assert table["newest_change"]["journal_object"] is None
    assert table["journal"] == {
        "has_journal": False,
        "complete_from": None,
        "journal_only_since": None,
    }


def test_gather_finds_the_newest_journal_object_with_few_lists(s3: Any, stream: Stream) -> None:
    # GIVEN journal objects in hour partitions over three days, none in the last 15 min
    now = now_us()
    for hours in (50, 49, 26, 3):
        stream.write(whole_second_ago(hours * 3600), f"k{hours}")
    calls: list[dict[str, Any]] = []
    version_lists: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(params)
    )
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectVersions",
        lambda params, **_: version_lists.append(params),
    )
    # WHEN the table's facts are gathered
    facts = gather(s3, BUCKET, "", TABLE, now)
    # THEN the newest object is the one written 3 hours ago
    assert facts.newest is not None
    assert 3 * 3600 - 5 <= (now - facts.newest.written_at_us) / SEC <= 3 * 3600 + 5
    assert facts.newest.changes == 1
    # AND the journal was found by walking its newest partitions, not by listing it
    journal = [c for c in calls if "/v1/journal/" in c.get("Prefix", "")]
    assert len(journal) <= 6
    assert len([c for c in journal if "Delimiter" not in c]) <= 2  # the recent and hour lists
    assert version_lists == []
    assert len(calls) <= 11  # snapshots, coverage, journal-only, 6 journal, 2 drills


def test_named_table_without_backup_is_not_found(
    stream: Stream, capsys: pytest.CaptureFixture[str]
) -> None:
    stream.write(whole_second_ago(60), "a")
    code = main(["status", "--bucket", BUCKET, "--table", TABLE, "--table", "ghost"])
    err = capsys.readouterr().err
    assert code == 3
    assert err == f"ddb-backup: error: no backup of table 'ghost' in s3://{BUCKET}/\n"


def test_empty_bucket_is_not_found(bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--bucket", BUCKET]) == 3
    assert "no backed-up tables under" in capsys.readouterr().err


def test_bad_threshold_is_a_usage_error(bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["status", "--bucket", BUCKET, "--max-quiet-hours", "0"])
    assert done.value.code == 2
    assert "expected a number > 0, got '0'" in capsys.readouterr().err


def test_human_table(
    s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    written = whole_second_ago(600)
    stream.write(written, "a", "b")
    compact(s3, written + 60 * SEC)
    passed_drill(s3, now_us() - 2 * HOUR)
    capsys.readouterr()
    assert main(["status", "--bucket", BUCKET]) == 0
    out, err = capsys.readouterr()
    header, row = out.splitlines()
    assert header.split("\t") == [
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
    ]
    cells = row.split("\t")
    assert cells[:2] == ["-", TABLE]
    assert cells[3] == "10m"
    assert (cells[5], cells[6]) == ("full", "2")
    assert cells[8].startswith("complete from ")
    assert cells[9] == "passed 2.0h ago"
    assert cells[10] == "ok"
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(f"ddb-backup: s3://{BUCKET}: versioning Enabled; checked at {when}\n", err)
    # on a terminal the same table is aligned
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["status", "--bucket", BUCKET, "--quiet"]) == 0
    out, err = capsys.readouterr()
    header, row = out.splitlines()
    assert header.startswith("PREFIX  TABLE   NEWEST CHANGE")
    assert row.index("ok") == header.index("HEALTH")
    assert err == ""


def test_warnings_are_pure() -> None:
    # a table whose facts say nothing at all: each missing piece is named
    facts = TableFacts("", TABLE, None, None, None, None, None)
    assert table_warnings(facts, Thresholds(24, 26), now_us()) == [
        "no change is backed up yet (no journal, no snapshot)",
        "no snapshot yet (run `ddb-backup compact`)",
    ]


def test_unreadable_journal_object_and_drill_report_are_warnings(
    s3: Any, stream: Stream, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a healthy backup, then a journal object and a drill report that are not what
    # their names say
    written = whole_second_ago(600)
    stream.write(written, "a")
    compact(s3, written + 60 * SEC)
    garbage = journal_key("", TABLE, now_us(), "garbage")
    s3.put_object(Bucket=BUCKET, Key=garbage, Body=b"not gzip")
    report = f"{drills_prefix('', TABLE)}{whole_second_stamp(now_us())}.json"
    s3.put_object(Bucket=BUCKET, Key=report, Body=b"{not json")
    # WHEN status runs THEN both are named, and the exit status is 5
    code, payload, err = status(capsys)
    assert code == 5
    (table,) = payload["tables"]
    assert table["newest_change"]["journal_object"] == garbage
    assert table["drill"]["passed"] is None
    first, second = table["warnings"]
    assert first.startswith(f"newest journal object unreadable: s3://{BUCKET}/{garbage}")
    assert second.startswith(f"last drill report {report}: not a drill report")
    assert "Traceback" not in err


def test_versioning_that_cannot_be_read_is_unknown_not_a_warning() -> None:
    class Denied:
        def get_bucket_versioning(self, Bucket: str) -> None:  # noqa: N803 - boto3's name
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetBucketVersioning"
            )

    versioning = bucket_versioning(Denied(), BUCKET)
    assert versioning == "unknown (AccessDenied)"
    assert versioning_warnings(versioning) == []
    assert versioning_warnings("Off")[0].startswith("bucket versioning is Off")
