"""Verified reads of snapshot files: the pinned version, checked against the manifest.

Each damage a file can suffer (missing, pinned version deleted, replaced, truncated, not
Parquet, wrong row count) is one `CorruptSnapshotError` line naming the file; a file that
was overwritten while its pinned version survives still reads as the original."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ResponseStreamingError

from backup_lambda.errors import CorruptSnapshotError
from compaction import verified
from compaction.manifest import DataFile
from compaction.snapshot_io import upload

KEY = "orders/v1/snapshots/20261128T143000.000000Z/run-abc/parquet/part-all.parquet"
EXPORT_KEY = "orders/v1/snapshots/20261128T143000.000000Z/run-abc/export/data/part-all.json.gz"


def parquet_bytes(rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"__key_hash": [f"{i:064x}" for i in range(rows)]}), sink)
    return sink.getvalue()


def export_bytes(lines: int) -> bytes:
    return gzip.compress(b"".join(b'{"Item":{"pk":{"S":"%d"}}}\n' % i for i in range(lines)))


def put(s3: Any, bucket: str, key: str, body: bytes, fmt: str, rows: int, tmp: Path) -> DataFile:
    path = tmp / "upload"
    path.write_bytes(body)
    return upload(s3, bucket, path, key, fmt, "", rows)


@pytest.fixture
def parquet_file(s3: Any, bucket: str, tmp_path: Path) -> DataFile:
    return put(s3, bucket, KEY, parquet_bytes(10), "parquet", 10, tmp_path)


def damaged(s3: Any, bucket: str, data_file: DataFile) -> str:
    with pytest.raises(CorruptSnapshotError) as caught:
        verified.fetch(s3, bucket, data_file)
    message = str(caught.value)
    assert "\n" not in message
    assert f"s3://{bucket}/{data_file.key}" in message
    return message


def test_a_sound_file_reads_back_exactly(s3: Any, bucket: str, parquet_file: DataFile) -> None:
    assert verified.fetch(s3, bucket, parquet_file) == parquet_bytes(10)


def test_upload_pins_the_version_it_wrote(s3: Any, bucket: str, parquet_file: DataFile) -> None:
    current = s3.head_object(Bucket=bucket, Key=KEY)["VersionId"]
    assert parquet_file.version_id == current


def test_an_overwritten_file_still_reads_its_pinned_version(
    s3: Any, bucket: str, parquet_file: DataFile
) -> None:
    s3.put_object(Bucket=bucket, Key=KEY, Body=parquet_bytes(9))
    assert verified.fetch(s3, bucket, parquet_file) == parquet_bytes(10)


def test_a_missing_file_is_named(s3: Any, bucket: str, parquet_file: DataFile) -> None:
    s3.delete_object(Bucket=bucket, Key=KEY, VersionId=parquet_file.version_id)
    message = damaged(s3, bucket, parquet_file)
    assert "missing" in message


def test_a_deleted_pinned_version_names_what_replaced_it(
    s3: Any, bucket: str, parquet_file: DataFile
) -> None:
    replacement = s3.put_object(Bucket=bucket, Key=KEY, Body=parquet_bytes(9))["VersionId"]
    s3.delete_object(Bucket=bucket, Key=KEY, VersionId=parquet_file.version_id)
    message = damaged(s3, bucket, parquet_file)
    assert f"now holds version {replacement}" in message


def test_a_replaced_file_of_a_v1_manifest_fails_its_checksum(
    s3: Any, bucket: str, parquet_file: DataFile
) -> None:
    v1 = dataclasses.replace(parquet_file, version_id=None)
    body = bytearray(parquet_bytes(10))
    body[10] ^= 0xFF  # same size, other bytes
    s3.put_object(Bucket=bucket, Key=KEY, Body=bytes(body))
    message = damaged(s3, bucket, v1)
    assert "replaced: sha256" in message


def test_a_truncated_file_is_named_with_both_sizes(
    s3: Any, bucket: str, parquet_file: DataFile
) -> None:
    v1 = dataclasses.replace(parquet_file, version_id=None)
    s3.put_object(Bucket=bucket, Key=KEY, Body=parquet_bytes(10)[:100])
    message = damaged(s3, bucket, v1)
    assert f"truncated: 100 bytes, the manifest pins {parquet_file.bytes}" in message


def test_a_file_that_is_no_parquet_at_all_says_so(
    s3: Any, bucket: str, parquet_file: DataFile
) -> None:
    v1 = dataclasses.replace(parquet_file, version_id=None)
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"<html>oops</html>")
    message = damaged(s3, bucket, v1)
    assert "not a Parquet file" in message


def test_a_manifest_recording_a_non_parquet_file_fails_the_footer_check(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    data_file = put(s3, bucket, KEY, b"this is no parquet", "parquet", 1, tmp_path)
    message = damaged(s3, bucket, data_file)
    assert "not a readable Parquet file" in message


def test_a_row_count_other_than_the_manifests_is_named(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    data_file = put(s3, bucket, KEY, parquet_bytes(10), "parquet", 11, tmp_path)
    message = damaged(s3, bucket, data_file)
    assert "holds 10 rows, the manifest says 11" in message


def test_download_writes_the_verified_file(
    s3: Any, bucket: str, parquet_file: DataFile, tmp_path: Path
) -> None:
    target = tmp_path / "cache" / "part.parquet"
    verified.download(s3, bucket, parquet_file, target)
    assert target.read_bytes() == parquet_bytes(10)


def test_a_failed_download_leaves_no_file_behind(
    s3: Any, bucket: str, parquet_file: DataFile, tmp_path: Path
) -> None:
    v1 = dataclasses.replace(parquet_file, version_id=None)
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"short")
    folder = tmp_path / "cache"
    with pytest.raises(CorruptSnapshotError):
        verified.download(s3, bucket, v1, folder / "part.parquet")
    assert list(folder.iterdir()) == []


def test_a_connection_broken_mid_body_is_read_again(
    s3: Any, bucket: str, parquet_file: DataFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = s3.get_object
    calls: list[int] = []

    class Broken:
        def iter_chunks(self, size: int) -> Any:
            yield b"PAR1"
            raise ResponseStreamingError(error="connection reset")

    def get_object(**kwargs: Any) -> Any:
        calls.append(1)
        return {"Body": Broken()} if len(calls) == 1 else real(**kwargs)

    monkeypatch.setattr(s3, "get_object", get_object)
    assert verified.fetch(s3, bucket, parquet_file) == parquet_bytes(10)
    assert len(calls) == 2


def test_export_lines_are_counted(s3: Any, bucket: str, tmp_path: Path) -> None:
    data_file = put(s3, bucket, EXPORT_KEY, export_bytes(7), "json.gz", 7, tmp_path)
    verified.verify(s3, bucket, data_file)  # no error


def test_an_export_with_fewer_lines_than_rows_is_named(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    data_file = put(s3, bucket, EXPORT_KEY, export_bytes(6), "json.gz", 7, tmp_path)
    with pytest.raises(CorruptSnapshotError, match="holds 6 lines, the manifest says 7 rows"):
        verified.verify(s3, bucket, data_file)


def test_an_export_that_is_not_gzip_is_named(s3: Any, bucket: str, tmp_path: Path) -> None:
    data_file = put(s3, bucket, EXPORT_KEY, b'{"Item": {}}\n', "json.gz", 1, tmp_path)
    with pytest.raises(CorruptSnapshotError, match="not gzip JSON lines"):
        verified.verify(s3, bucket, data_file)


def test_a_truncated_export_of_a_v1_manifest_is_named(s3: Any, bucket: str, tmp_path: Path) -> None:
    data_file = put(s3, bucket, EXPORT_KEY, export_bytes(7), "json.gz", 7, tmp_path)
    s3.put_object(Bucket=bucket, Key=EXPORT_KEY, Body=export_bytes(7)[:20])
    v1 = dataclasses.replace(data_file, version_id=None)
    with pytest.raises(CorruptSnapshotError, match="truncated: 20 bytes"):
        verified.verify(s3, bucket, v1)


def test_a_local_copy_is_checked_against_its_record(parquet_file: DataFile, tmp_path: Path) -> None:
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(parquet_bytes(10))
    verified.check_local(copy, parquet_file, "cached")  # no error
    body = bytearray(copy.read_bytes())
    body[20] ^= 1
    copy.write_bytes(bytes(body))
    with pytest.raises(CorruptSnapshotError, match="does not match its sha256"):
        verified.check_local(copy, parquet_file, "cached")


def test_the_digest_recorded_is_the_files_sha256(parquet_file: DataFile) -> None:
    assert parquet_file.sha256 == hashlib.sha256(parquet_bytes(10)).hexdigest()
