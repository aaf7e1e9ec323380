"""Scheduled runs on moto: compaction of configured tables (handler and command), skips
of unchanged tables, failures of one table, and the scheduled drill."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from backup_lambda.errors import ConfigError
from compaction import catalog
from compaction.newchanges import has_versions_after
from jobs.demo.standin import FakeLambdaContext
from jobs.main import main
from jobs.ops.scheduled import (
    ScheduleConfig,
    ScheduledRunError,
    compaction_handler,
    drill_handler,
    run_compactions,
)
from tests.ops.conftest import SetClock
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    committed_ids,
    create_table,
    item,
    now_us,
    snapshot_items,
    whole_second_ago,
)

OTHER = "customers"


@pytest.fixture
def two_tables(s3: Any, bucket: str, s3_clock: SetClock) -> tuple[ChangeLog, ChangeLog]:
    """Backups of `orders` and `customers`, written (S3 time) an hour ago."""
    t0 = whole_second_ago(3600)
    s3_clock(t0 + 5 * SEC)
    orders = ChangeLog(s3, table=TABLE)
    customers = ChangeLog(s3, table=OTHER)
    for i in range(3):
        orders.put(item(f"o-{i}", v=i), t0 + i * SEC)
        customers.put(item(f"c-{i}", v=i), t0 + i * SEC)
    s3_clock(None)
    return orders, customers


def config(*tables: str, settle: int = 300) -> ScheduleConfig:
    return ScheduleConfig(BUCKET, tables, settle_seconds=settle)


def emitted(out: str) -> dict[str, dict[str, Any]]:
    """metric name -> its EMF document, from what the run printed."""
    metrics: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        if line.startswith('{"_aws"'):
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    metrics[metric["Name"]] = document
    return metrics


def test_compacts_then_skips_an_unchanged_table(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    capsys: pytest.CaptureFixture[str],
) -> None:
    orders, _ = two_tables
    capsys.readouterr()
    now = time.time()
    first = run_compactions(s3, dynamodb, config(TABLE), now=now)
    (outcome,) = first
    metrics = emitted(capsys.readouterr().out)
    assert set(metrics) == {
        "CompactionSeconds",
        "SnapshotItems",
        "VersionsRead",
        "SnapshotLagSeconds",
    }
    assert all(m["table"] == TABLE for m in metrics.values())
    assert metrics["SnapshotItems"]["SnapshotItems"] == [3]
    assert metrics["SnapshotLagSeconds"]["SnapshotLagSeconds"] == [300.0]
    assert outcome["status"] == "compacted"
    assert outcome["items"] == 3
    (manifest,) = catalog.committed_snapshots(s3, BUCKET, "", TABLE)
    assert manifest.id == outcome["snapshot"]
    assert snapshot_items(s3, manifest) == orders.expected(now_us())

    # nothing written since: skipped, no new snapshot
    (skipped,) = run_compactions(s3, dynamodb, config(TABLE), now=time.time() + 60)
    assert (skipped["status"], skipped["snapshot"], skipped["checked_by"]) == (
        "unchanged",
        manifest.id,
        "listing",
    )
    assert skipped["reason"] == (
        "nothing written since the snapshot (the table has no complete journal yet)"
    )
    assert set(emitted(capsys.readouterr().out)) == {"SnapshotLagSeconds"}
    assert committed_ids(s3) == [manifest.id]

    # a new version: compacted again, incrementally
    orders.put(item("o-new", v=7), now_us() - 400 * SEC)
    (again,) = run_compactions(s3, dynamodb, config(TABLE), now=time.time() + 120)
    assert again["status"] == "compacted"
    assert again["items"] == 4
    newest = catalog.committed_snapshots(s3, BUCKET, "", TABLE)[-1]
    assert newest.base == manifest.id
    assert snapshot_items(s3, newest) == orders.expected(newest.as_of_us)


def test_has_versions_after(s3: Any, two_tables: tuple[ChangeLog, ChangeLog]) -> None:
    hour_ago = now_us() - 3600 * SEC
    assert has_versions_after(s3, BUCKET, "", TABLE, hour_ago - 60 * SEC)
    assert not has_versions_after(s3, BUCKET, "", TABLE, hour_ago + 60 * SEC)
    assert not has_versions_after(s3, BUCKET, "", "nothing", 0)


def test_a_failing_table_is_reported_and_the_others_still_run(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(ScheduledRunError, match="missing") as raised:
        run_compactions(s3, dynamodb, config("missing", TABLE, OTHER), now=time.time())
    assert TABLE not in str(raised.value)
    assert len(committed_ids(s3, TABLE)) == 1
    assert len(committed_ids(s3, OTHER)) == 1
    failures = [r for r in caplog.records if r.getMessage() == "scheduled compaction failed"]
    assert len(failures) == 1
    assert "no backup of table 'missing'" in str(failures[0].__dict__)


def test_schedule_config_from_env() -> None:
    with pytest.raises(ConfigError, match="BACKUP_TABLES"):
        ScheduleConfig.from_env({"BACKUP_BUCKET": "b"})
    with pytest.raises(ConfigError, match="BACKUP_BUCKET"):
        ScheduleConfig.from_env({"BACKUP_TABLES": "a"})
    with pytest.raises(ConfigError):
        ScheduleConfig.from_env({"BACKUP_BUCKET": "b", "BACKUP_TABLES": " , "})
    with pytest.raises(ConfigError, match="setting"):
        ScheduleConfig.from_env({"BACKUP_BUCKET": "b", "BACKUP_TABLES": "a", "SETTLE_SECONDS": "x"})
    parsed = ScheduleConfig.from_env(
        {
            "BACKUP_BUCKET": " b ",
            "BACKUP_TABLES": " a , b,,",
            "BACKUP_PREFIX": "/backups/",
            "SETTLE_SECONDS": "60",
            "MAX_RPO_SECONDS": "900",
            "MAX_RESTORE_SECONDS": "",
        }
    )
    assert parsed == ScheduleConfig("b", ("a", "b"), "backups", 60, 900.0, None)
    assert (parsed.verify_journal_every, parsed.full_every) == (24, 0)
    every = {"BACKUP_BUCKET": "b", "BACKUP_TABLES": "a", "VERIFY_JOURNAL_EVERY": "3"}
    assert ScheduleConfig.from_env({**every, "FULL_EVERY": "5"}).full_every == 5
    assert ScheduleConfig.from_env(every).verify_journal_every == 3
    with pytest.raises(ConfigError, match="VERIFY_JOURNAL_EVERY: expected a whole number >= 0"):
        ScheduleConfig.from_env({**every, "VERIFY_JOURNAL_EVERY": "-1"})
    with pytest.raises(ConfigError, match="FULL_EVERY: expected a whole number"):
        ScheduleConfig.from_env({**every, "FULL_EVERY": "often"})


def test_compaction_handler_from_env(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKUP_TABLES", f"{TABLE},{OTHER}")
    monkeypatch.setenv("SETTLE_SECONDS", "0")
    result = compaction_handler({}, FakeLambdaContext())
    assert [(r["table"], r["status"]) for r in result["results"]] == [
        (TABLE, "compacted"),
        (OTHER, "compacted"),
    ]
    # the event overrides the tables; both unchanged since
    override = compaction_handler({"tables": [OTHER]}, FakeLambdaContext())
    assert [(r["table"], r["status"]) for r in override["results"]] == [(OTHER, "unchanged")]


def test_compaction_handler_without_tables_is_a_config_error(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    with pytest.raises(ConfigError):
        compaction_handler({}, FakeLambdaContext())


def test_drill_handler(
    s3: Any, dynamodb: Any, two_tables: tuple[ChangeLog, ChangeLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(dynamodb, TABLE)
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKUP_TABLES", TABLE)
    monkeypatch.setenv("MAX_RPO_SECONDS", "86400")
    result = drill_handler({}, FakeLambdaContext())
    (drill,) = result["drills"]
    assert drill["passed"] is True
    assert drill["report"].startswith(f"{TABLE}/v1/drills/")
    # the newest change is an hour old: a 60 s threshold fails the invocation
    monkeypatch.setenv("MAX_RPO_SECONDS", "60")
    with pytest.raises(ScheduledRunError, match="drill failed"):
        drill_handler({}, FakeLambdaContext())
    assert dynamodb.list_tables()["TableNames"] == [TABLE]


def logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The scheduled run's log lines (JSON on stdout, by powertools' Logger)."""
    records = [r for r in caplog.records if r.name == "ddb-backup-scheduled"]
    caplog.clear()
    return records


def test_cli_scheduled(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # --json: the machine lines (log JSON, EMF) and the result object last
    code = main(["scheduled", "--bucket", BUCKET, "--tables", f"{TABLE},{OTHER}", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.strip().splitlines()
    payload = json.loads(lines[-1])
    assert [(r["table"], r["status"]) for r in payload["results"]] == [
        (TABLE, "compacted"),
        (OTHER, "compacted"),
    ]
    assert set(emitted(out)) >= {"SnapshotItems", "SnapshotLagSeconds"}
    assert [r.getMessage() for r in logged(caplog)] == ["scheduled compaction"] * 2
    # people: one row per table, no machine lines
    code = main(["scheduled", "--bucket", BUCKET, "--tables", f"{TABLE},{OTHER}"])
    out = capsys.readouterr().out
    assert code == 0
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header == ["table", "outcome", "snapshot", "details"]
    assert [(r[0], r[1]) for r in rows] == [(TABLE, "unchanged"), (OTHER, "unchanged")]
    assert rows[0][3] == (
        "nothing written since the snapshot (the table has no complete journal yet)"
    )
    assert not [line for line in out.splitlines() if line.startswith("{")]
    assert logged(caplog) == []


def test_cli_scheduled_says_what_it_compacted(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scheduled", "--bucket", BUCKET, "--table", TABLE]) == 0
    (_, row) = capsys.readouterr().out.splitlines()
    table, outcome, snapshot, details = row.split("\t")
    assert (table, outcome) == (TABLE, "compacted")
    assert snapshot == committed_ids(s3, TABLE)[0]
    assert details.startswith("full, 3 items, as of ")
    assert "; 3 changed keys found by listing; " in details


def test_cli_scheduled_reads_the_lambdas_environment(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKUP_TABLES", f"{OTHER}")
    monkeypatch.setenv("FULL_EVERY", "x")
    assert main(["scheduled"]) == 2
    assert "FULL_EVERY" in capsys.readouterr().err
    monkeypatch.setenv("FULL_EVERY", "1")
    assert main(["scheduled", "--json"]) == 0
    (outcome,) = json.loads(capsys.readouterr().out.splitlines()[-1])["results"]
    assert (outcome["table"], outcome["status"]) == (OTHER, "compacted")
    assert committed_ids(s3, TABLE) == []


def test_cli_scheduled_errors(
    s3: Any,
    dynamodb: Any,
    two_tables: tuple[ChangeLog, ChangeLog],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert main(["scheduled", "--bucket", BUCKET]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--tables" in err
    # a missing table: one row and one error line, the other table still compacted
    assert main(["scheduled", "--bucket", BUCKET, "--tables", f"missing,{TABLE}"]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    assert err.startswith("ddb-backup: error: compaction failed for 1 of 2 tables: missing: ")
    assert "Traceback" not in out + err
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("missing", "failed"), (TABLE, "compacted")]
    assert rows[0][3] == f"no backup of table 'missing' in s3://{BUCKET}/"
    assert len(committed_ids(s3, TABLE)) == 1
    assert logged(caplog) == []
    # with --json: the failure's log line holds the error, and no traceback
    assert main(["scheduled", "--bucket", BUCKET, "--tables", "missing", "--json"]) == 1
    out, err = capsys.readouterr()
    (failure,) = logged(caplog)
    assert failure.getMessage() == "scheduled compaction failed"
    assert failure.__dict__["error"] == f"no backup of table 'missing' in s3://{BUCKET}/"
    assert failure.exc_info is None
    assert "Traceback" not in out + err
    assert json.loads(out.splitlines()[-1])["results"][0]["status"] == "failed"
