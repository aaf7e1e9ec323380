"""`snapshots --verify`: every file of a snapshot read at its pinned version and checked
(issue 13, finding 1): a replaced Parquet file and a truncated export file are each named,
per snapshot, with exit status 6; sound snapshots say OK."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compaction.manifest import DataFile, Manifest
from jobs.main import EXIT_INTEGRITY, EXIT_NOT_FOUND, EXIT_USAGE, main
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    mocked,  # noqa: F401 - fixture
    now_us,
)


class Two:
    """A full snapshot and a newer one, each with Parquet and export files."""

    def __init__(self, b: Backup) -> None:
        base = now_us() - 3600 * SECOND
        for sk in range(6):
            b.item("a", sk, base + sk * SECOND, status="placed")
        self.older: Manifest = b.compact(base + 20 * SECOND)
        b.item("a", 10, base + 30 * SECOND, status="later")
        self.newest: Manifest = b.compact(base + 50 * SECOND, full=True)
        self.s3 = b.s3

    def replace_parquet(self) -> DataFile:
        """Rows dropped, written over the key; the pinned version deleted."""
        (data_file,) = self.newest.files_of("parquet")
        body = self.s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
        sink = io.BytesIO()
        pq.write_table(pq.read_table(pa.BufferReader(body)).slice(2), sink)
        self._overwrite(data_file, sink.getvalue())
        return data_file

    def truncate_export(self) -> DataFile:
        data_file = self.older.files_of("json.gz")[0]
        body = self.s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
        self._overwrite(data_file, body[: len(body) // 2])
        return data_file

    def _overwrite(self, data_file: DataFile, body: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=data_file.key, Body=body)
        self.s3.delete_object(Bucket=BUCKET, Key=data_file.key, VersionId=data_file.version_id)


@pytest.fixture
def two(backup: Backup) -> Two:  # noqa: F811
    return Two(backup)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["snapshots", "--bucket", BUCKET, "--table", TABLE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sound_snapshots_verify(capsys: pytest.CaptureFixture[str], two: Two) -> None:
    assert two.older.files_of("json.gz"), "the check must cover export files too"
    code, out, err = cli(capsys, "--verify")
    assert (code, err) == (0, "")
    assert out.startswith(f"{two.newest.id} OK ({len(two.newest.files)} files, ")
    code, out, _ = cli(capsys, "--verify", "--all", "--json")
    assert code == 0
    report = json.loads(out.splitlines()[-1])["verified"]
    assert [(r["id"], r["ok"], r["failures"]) for r in report] == [
        (two.older.id, True, []),
        (two.newest.id, True, []),
    ]


def test_a_replaced_file_fails_with_its_name(capsys: pytest.CaptureFixture[str], two: Two) -> None:
    replaced = two.replace_parquet()
    code, out, err = cli(capsys, "--verify", two.newest.id)
    assert code == EXIT_INTEGRITY
    lines = out.splitlines()
    assert lines[0] == f"{two.newest.id} FAILED (1 of {len(two.newest.files)} files)"
    assert f"s3://{BUCKET}/{replaced.key} (version {replaced.version_id})" in lines[1]
    assert "missing: the pinned version was deleted" in lines[1]
    assert err == (f"ddb-backup: error: 1 of 1 snapshots failed verification: {two.newest.id}\n")
    # The older snapshot is untouched.
    assert cli(capsys, "--verify", two.older.id)[0] == 0


def test_a_truncated_export_and_a_replaced_parquet_are_each_named(
    capsys: pytest.CaptureFixture[str], two: Two
) -> None:
    replaced = two.replace_parquet()
    truncated = two.truncate_export()
    code, out, err = cli(capsys, "--verify", "--all", "--json")
    assert code == EXIT_INTEGRITY
    report = {r["id"]: r for r in json.loads(out.splitlines()[-1])["verified"]}
    (older_failure,) = report[two.older.id]["failures"]
    (newest_failure,) = report[two.newest.id]["failures"]
    assert truncated.key in older_failure
    assert replaced.key in newest_failure
    assert "2 of 2 snapshots failed verification" in err


def test_a_changed_file_without_a_pinned_version(
    capsys: pytest.CaptureFixture[str],
    two: Two,
    mocked: tuple[Any, Any],  # noqa: F811
) -> None:
    """A manifest that pins no version (version 1 wrote none): the current object is read
    and checked, so an export file with a line dropped is named."""
    s3, _ = mocked
    data_file = two.older.files_of("json.gz")[0]
    lines = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read())
    _unpin(s3, two.older, data_file, gzip.compress(lines.split(b"\n", 1)[1]))
    code, out, _ = cli(capsys, "--verify", two.older.id)
    assert code == EXIT_INTEGRITY
    assert f"s3://{BUCKET}/{data_file.key} (version current version" in out


def _unpin(s3: Any, manifest: Manifest, changed: DataFile, body: bytes) -> None:
    """Rewrite the manifest without version ids (as version 1 wrote it) and put `body`
    over the file."""
    from compaction.catalog import manifest_key

    key = manifest_key("", TABLE, manifest.id)
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    for entry in document["files"]:
        entry["version_id"] = None
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())
    s3.put_object(Bucket=BUCKET, Key=changed.key, Body=body)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--verify", "20200101T000000.000000Z"], EXIT_NOT_FOUND, "no committed snapshot"),
        (["--all"], EXIT_USAGE, "--all goes with --verify"),
        (["--verify", "X", "--all"], EXIT_USAGE, "a snapshot ID or --all, not both"),
    ],
)
def test_bad_requests_are_one_line(
    capsys: pytest.CaptureFixture[str], two: Two, args: list[str], code: int, message: str
) -> None:
    actual, out, err = cli(capsys, *args)
    assert (actual, out) == (code, "")
    assert message in err
    assert err.count("\n") == 1
