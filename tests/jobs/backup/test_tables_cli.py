"""`ddb-backup tables`: tables found from the layout with delimiter LISTs, on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup_lambda.layout import Change
from backup_lambda.writer import ChangeWriter
from compaction.discovery import BackedUpTable, find_tables
from compaction.versions import put_json
from jobs.main import main
from tests.support import BUCKET


def change(table: str, pk: str) -> Change:
    return Change(
        table=table,
        keys={"pk": {"S": pk}},
        event_name="INSERT",
        event_id="e1",
        sequence_number="100",
        event_time_us=1_795_824_000_000_000,
        new_image={"pk": {"S": pk}},
    )


@pytest.fixture
def backups(s3: Any, bucket: str) -> None:
    """Tables at the root, under prod/ and prod/eu/, one journal-only, a prefix named like a
    table (orders/x), and folders that are not backups."""
    for prefix, table, journal_only, coverage in [
        ("", "orders", False, True),
        ("prod", "users", False, False),
        ("prod/eu", "orders", True, False),
        ("orders", "x", False, False),
    ]:
        writer = ChangeWriter(
            s3, bucket, prefix, journal_only=journal_only, claim_coverage=coverage
        )
        assert not writer.write([change(table, "a"), change(table, "b")]).failed
    put_json(s3, bucket, "prod/users/v1/drills/20261128T000000Z.json", {"passed": True})
    s3.put_object(Bucket=bucket, Key="misc/notes/readme.txt", Body=b"not a backup")
    s3.put_object(Bucket=bucket, Key="prod/tmp/v1/other/file", Body=b"no data folder")


def test_find_tables_walks_folders_with_delimiter_lists_only(s3: Any, backups: None) -> None:
    # GIVEN every ListObjectsV2 the discovery sends is recorded
    calls: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: calls.append(params)
    )
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectVersions", lambda params, **_: calls.append(params)
    )
    # WHEN the tables of the bucket are found
    tables = find_tables(s3, BUCKET)
    # THEN every table is found with its prefix and what it holds, nothing else
    assert tables == [
        BackedUpTable("", "orders", ("items", "journal", "journal-coverage")),
        BackedUpTable("orders", "x", ("items", "journal")),
        BackedUpTable("prod", "users", ("drills", "items", "journal")),
        BackedUpTable("prod/eu", "orders", ("journal", "journal-coverage", "journal-only")),
    ]
    # AND only delimiter LISTs were sent, none inside a table's v1/ data folders
    assert calls
    assert all(c.get("Delimiter") == "/" for c in calls)
    prefixes = [c.get("Prefix", "") for c in calls]
    layouts = [f"{t.prefix}/{t.table}/v1/".lstrip("/") for t in tables]
    assert [p for p in prefixes if any(p.startswith(v) and p != v for v in layouts)] == []
    assert len(calls) == len(set(prefixes)) <= 20


def test_find_tables_under_a_prefix(s3: Any, backups: None) -> None:
    assert [(t.prefix, t.table) for t in find_tables(s3, BUCKET, "/prod/")] == [
        ("prod", "users"),
        ("prod/eu", "orders"),
    ]
    assert find_tables(s3, BUCKET, "misc") == []


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["tables", "--bucket", BUCKET, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_tables_piped_is_tab_separated(backups: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "PREFIX\tTABLE\tHOLDS",
        "-\torders\titems,journal,journal-coverage",
        "orders\tx\titems,journal",
        "prod\tusers\tdrills,items,journal",
        "prod/eu\torders\tjournal,journal-coverage,journal-only",
    ]


def test_tables_on_a_terminal_is_aligned(
    backups: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    capsys.readouterr()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    code, out, _ = run(capsys, "--prefix", "prod")
    assert code == 0
    assert out.splitlines() == [
        "PREFIX   TABLE   HOLDS",
        "prod     users   drills,items,journal",
        "prod/eu  orders  journal,journal-coverage,journal-only",
    ]


def test_tables_json(backups: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--prefix", "prod/eu", "--json")
    assert code == 0
    assert json.loads(out.splitlines()[-1]) == {
        "bucket": BUCKET,
        "prefix": "prod/eu",
        "tables": [
            {
                "prefix": "prod/eu",
                "table": "orders",
                "holds": ["journal", "journal-coverage", "journal-only"],
            }
        ],
    }


def test_no_tables_is_a_note_not_an_error(bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert (code, out) == (0, "")
    assert err == f"ddb-backup: no backed-up tables under s3://{BUCKET}/\n"


def test_missing_bucket_is_not_found(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert (code, out) == (3, "")
    assert err.startswith("ddb-backup: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
