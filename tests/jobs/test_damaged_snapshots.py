"""Every reader of snapshot files, fed a damaged snapshot (issue 13, findings 1 and 7).

The newest snapshot's Parquet file is truncated, replaced, removed, or replaced by
something that is no Parquet at all (its pinned version deleted each time, so the damage
is what a reader meets). Every command that reads it (query, query --as-of, restore,
restore --dry-run, compact, drill) stops with one line that names the file and the older
snapshot to use instead; none prints a traceback or a wrong answer. With `--snapshot` (the
older one) or `compact --rebuild`, the right answer comes back. A file overwritten while
its pinned version survives still gives the right answer.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backup_lambda.layout import object_key
from compaction.manifest import DataFile, Manifest
from jobs.main import EXIT_DRILL_FAILED, EXIT_INTEGRITY, main
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)
from tests.support import answered


def iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / SECOND, dt.UTC).isoformat().replace("+00:00", "Z")


class History:
    def __init__(self, b: Backup) -> None:
        base = now_us() - 3600 * SECOND
        for sk in range(10):
            b.item("a", sk, base + sk * SECOND, status="placed")
        self.older: Manifest = b.compact(base + 20 * SECOND)
        for sk in range(10, 14):
            b.item("a", sk, base + 30 * SECOND + sk, status="placed")
        b.remove("a", 0, base + 40 * SECOND)
        self.newest: Manifest = b.compact(base + 50 * SECOND)
        assert self.newest.base == self.older.id
        b.item("a", 99, base + 60 * SECOND, status="after")
        self.later = base + 70 * SECOND
        self.items = len(b.oracle(self.later))  # 14 of them
        self.backup = b

    @property
    def damaged_file(self) -> DataFile:
        (data_file,) = self.newest.files_of("parquet")
        return data_file


@pytest.fixture
def history(backup: Backup) -> History:  # noqa: F811
    return History(backup)


def _rows_dropped(body: bytes) -> bytes:
    table = pq.read_table(pa.BufferReader(body))
    sink = io.BytesIO()
    pq.write_table(table.slice(2), sink)
    return sink.getvalue()


DAMAGE: dict[str, Callable[[bytes], bytes | None]] = {
    "truncated": lambda body: body[: len(body) // 2],
    "replaced": _rows_dropped,
    "missing": lambda body: None,
    "not-parquet": lambda body: b"<Error>this is no parquet</Error>",
}


def damage(s3: Any, data_file: DataFile, how: str) -> None:
    """Overwrite (or remove) the file, and delete the version its manifest pins."""
    body = s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
    replacement = DAMAGE[how](body)
    if replacement is not None:
        s3.put_object(Bucket=BUCKET, Key=data_file.key, Body=replacement)
    s3.delete_object(Bucket=BUCKET, Key=data_file.key, VersionId=data_file.version_id)


def cli(capsys: pytest.CaptureFixture[str], command: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([command, "--bucket", BUCKET, "--table", TABLE, *args])
    out, err = capsys.readouterr()
    return code, out, err


READERS: dict[str, Callable[[History], list[str]]] = {
    "query": lambda h: ["query", "SELECT count(*) FROM items"],
    "query --as-of": lambda h: ["query", "--as-of", iso(h.later), "SELECT count(*) FROM items"],
    "restore": lambda h: ["restore", "--to", "copy", "--create-table"],
    "restore --dry-run": lambda h: [
        "restore",
        "--to",
        "copy",
        "--dry-run",
        "--as-of",
        iso(h.later),
    ],
    "compact": lambda h: ["compact", "--as-of", iso(h.later)],
    "drill": lambda h: ["drill"],
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_each_reader_names_the_damaged_file_and_the_fallback(
    history: History, capsys: pytest.CaptureFixture[str], reader: str, how: str
) -> None:
    damage(history.backup.s3, history.damaged_file, how)
    argv = READERS[reader](history)
    code, out, err = cli(capsys, *argv)
    assert code == (EXIT_DRILL_FAILED if reader == "drill" else EXIT_INTEGRITY)
    assert err.startswith("ddb-backup: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert history.damaged_file.key in err
    assert f"--snapshot {history.older.id}" in err
    assert "count_star" not in out  # no answer at all, let alone a wrong one


def test_nothing_is_written_to_the_target_from_a_damaged_snapshot(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "truncated")
    code, _, _ = cli(capsys, "restore", "--to", "copy", "--create-table")
    assert code == EXIT_INTEGRITY
    tables = history.backup.dynamodb.list_tables()["TableNames"]
    assert "copy" not in tables or history.backup.target_items("copy") == {}


def test_no_snapshot_is_committed_on_a_damaged_base(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "replaced")
    cli(capsys, "compact", "--as-of", iso(history.later))
    code, out, _ = cli(capsys, "snapshots", "--json")
    assert code == 0
    ids = [s["id"] for s in json.loads(out)["snapshots"]]
    assert ids == [history.older.id, history.newest.id]


def test_the_error_says_when_no_older_snapshot_is_sound(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "missing")
    (older_file,) = history.older.files_of("parquet")
    damage(history.backup.s3, older_file, "missing")
    code, _, err = cli(capsys, "query", "SELECT count(*) FROM items")
    assert code == EXIT_INTEGRITY
    assert "no older snapshot has all its files" in err
    assert "compact --rebuild" in err


def count(out: str) -> int:
    return int(json.loads(out.splitlines()[-1])["count_star()"])


def test_query_can_use_the_older_snapshot(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "truncated")
    sql = "SELECT count(*) FROM items"
    code, out, err = cli(capsys, "query", "--format", "jsonl", "--snapshot", history.older.id, sql)
    assert (code, answered(err)) == (0, "")
    assert count(out) == 10


def test_query_as_of_can_start_from_the_older_snapshot(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "truncated")
    args = ["--format", "jsonl", "--snapshot", history.older.id, "--as-of", iso(history.later)]
    code, out, err = cli(capsys, "query", *args, "SELECT count(*) FROM items")
    assert (code, answered(err)) == (0, "")
    assert count(out) == history.items


def test_restore_can_start_from_the_older_snapshot(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "not-parquet")
    args = ["--to", "copy", "--create-table", "--snapshot", history.older.id, "--json"]
    code, out, err = cli(capsys, "restore", *args)
    assert (code, err) == (0, "")
    assert json.loads(out.splitlines()[-1])["snapshot"] == history.older.id
    assert history.backup.target_items("copy") == history.backup.oracle(now_us())


def test_compact_rebuild_writes_a_full_snapshot(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "missing")
    code, out, err = cli(capsys, "compact", "--as-of", iso(history.later), "--rebuild", "--json")
    assert (code, err) == (0, "")
    summary = json.loads(out.splitlines()[-1])
    assert summary["base"] is None
    assert summary["items"] == history.items


def test_compact_can_build_on_the_older_snapshot(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    damage(history.backup.s3, history.damaged_file, "missing")
    args = ["--as-of", iso(history.later), "--snapshot", history.older.id, "--json"]
    code, out, err = cli(capsys, "compact", *args)
    assert (code, err) == (0, "")
    summary = json.loads(out.splitlines()[-1])
    assert summary["base"] == history.older.id
    assert summary["items"] == history.items


def test_a_snapshot_id_that_does_not_exist_is_named(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "query", "--snapshot", "20200101T000000.000000Z", "SELECT 1")
    assert code == 3
    assert "--snapshot 20200101T000000.000000Z: no committed snapshot" in err


def test_a_snapshot_after_the_as_of_is_refused(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    before = iso(history.older.as_of_us - SECOND)
    code, _, err = cli(
        capsys, "restore", "--to", "copy", "--snapshot", history.newest.id, "--as-of", before
    )
    assert code == 2
    assert "choose an earlier snapshot" in err


@pytest.mark.parametrize("reader", ["query", "query --as-of", "restore"])
def test_an_overwritten_file_with_its_pinned_version_gives_the_right_answer(
    history: History, capsys: pytest.CaptureFixture[str], reader: str
) -> None:
    """The issue's reproduction: a PutObject over the snapshot's Parquet with rows dropped."""
    data_file = history.damaged_file
    body = history.backup.s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
    history.backup.s3.put_object(Bucket=BUCKET, Key=data_file.key, Body=_rows_dropped(body))
    if reader == "restore":
        code, out, _ = cli(capsys, "restore", "--to", "copy", "--create-table", "--json")
        assert code == 0
        assert json.loads(out.splitlines()[-1])["puts"] == history.items
        return
    as_of = ["--as-of", iso(history.later)] if reader == "query --as-of" else []
    code, out, _ = cli(capsys, "query", "--format", "jsonl", *as_of, "SELECT count(*) FROM items")
    assert code == 0
    assert count(out) == (history.items if as_of else history.newest.counts.items)


# A stray object under items/ that is no change document (finding 7)


@pytest.fixture
def stray(history: History) -> str:
    key = object_key("", TABLE, key_of("stray", 1))
    history.backup.s3.put_object(Bucket=BUCKET, Key=key, Body=b"not json at all")
    return key


@pytest.mark.parametrize(
    "argv",
    [
        ["restore", "--to", "copy", "--create-table"],
        ["query", "--as-of", "now", "SELECT count(*) FROM items"],
    ],
    ids=["restore", "query --as-of"],
)
def test_a_stray_object_is_named_with_the_flag_that_skips_it(
    history: History, stray: str, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    argv = [iso(now_us()) if a == "now" else a for a in argv]
    code, _, err = cli(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1
    assert stray in err
    assert "--skip-corrupt" in err


def test_restore_skip_corrupt_skips_and_reports_the_stray_object(
    history: History, stray: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(
        capsys, "restore", "--to", "copy", "--create-table", "--skip-corrupt", "--json"
    )
    assert (code, err) == (0, "")
    result = json.loads(out.splitlines()[-1])
    assert [s["key"] for s in result["skipped_versions"]] == [stray]
    assert history.backup.target_items("copy") == history.backup.oracle(now_us())


def test_query_skip_corrupt_skips_and_reports_the_stray_object(
    history: History, stray: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--format", "jsonl", "--skip-corrupt", "--as-of", iso(now_us())]
    code, out, err = cli(capsys, "query", *args, "SELECT count(*) FROM items")
    assert code == 0
    assert count(out) == history.items
    assert err.splitlines()[0] == "skipped 1 unreadable item versions:"
    assert stray in err
