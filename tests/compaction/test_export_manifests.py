"""Every snapshot's export files get DynamoDB's manifests, which DynamoDB's format readers
(ours, strict) accept as they are."""

from __future__ import annotations

import gzip
import json
from typing import Any

from compaction import verified
from compaction.awsexport import (
    EXPORT_DIR,
    discover,
    md5_matches,
    parse_summary,
    read_files,
)
from compaction.exportmanifests import export_documents, export_root
from compaction.manifest import Counts, DataFile, Manifest
from tests.compaction.awsexports import md5_b64
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    Backup,
    backup,  # noqa: F401 - fixture
    mocked,  # noqa: F401 - fixture
    now_us,
)


def _fill(b: Backup) -> int:
    start = now_us() - 3600 * SECOND
    for sk in range(40):
        b.item(f"user#{sk}", sk, start + sk * SECOND, status="new", note="é")
    b.remove("user#3", 3, start + 50 * SECOND)
    return start + 60 * SECOND


def test_a_snapshot_export_is_a_dynamodb_full_export(backup: Backup) -> None:  # noqa: F811
    # GIVEN a compacted snapshot of 39 live items in 16 units
    as_of = _fill(backup)
    manifest = backup.compact(as_of, shard_digits=1)
    s3: Any = backup.s3
    root = export_root("", manifest)
    # WHEN its export folder is read as DynamoDB's exports are read
    found = discover(s3, BUCKET, root)
    (summary,) = found.summaries
    files = read_files(s3, summary)
    # THEN it is a full export as of the snapshot's time, listing every export file
    assert summary.export_type == "FULL_EXPORT"
    assert summary.export_time_us == as_of
    assert summary.item_count == 39
    assert summary.table_name == "orders"
    assert sorted(f.key for f in files) == sorted(f.key for f in manifest.files_of("json.gz"))
    for data_file in files:
        head = s3.head_object(Bucket=BUCKET, Key=data_file.key)
        body = s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
        assert data_file.md5 == md5_b64(body)
        assert data_file.etag == head["ETag"].strip('"')
        assert data_file.item_count == len(gzip.decompress(body).splitlines())
    folder = summary.folder
    assert folder.startswith(f"{root}{EXPORT_DIR}/")
    for name in ("manifest-summary", "manifest-files"):
        body = s3.get_object(Bucket=BUCKET, Key=f"{folder}{name}.json")["Body"].read()
        checksum = s3.get_object(Bucket=BUCKET, Key=f"{folder}{name}.md5")["Body"].read()
        assert md5_matches(checksum.decode(), body)
    assert s3.head_object(Bucket=BUCKET, Key=f"{folder}_started")["ContentLength"] == 0
    # AND the snapshot's manifest lists and pins them like its other files
    listed = {f.key: f for f in manifest.files_of("aws-export")}
    assert sorted(listed) == sorted(
        f"{folder}{name}"
        for name in (
            "_started",
            "manifest-files.json",
            "manifest-files.md5",
            "manifest-summary.json",
            "manifest-summary.md5",
        )
    )
    for data_file in listed.values():
        verified.verify(s3, BUCKET, data_file)


def _manifest(kind: str = "full") -> Manifest:
    data = DataFile(
        "t/v1/snapshots/s/run-abc/export/data/part-0.json.gz",
        "json.gz",
        "0",
        3,
        99,
        "x",
        "v1",
        md5_b64(b"z"),
    )
    return Manifest(
        id="20260101T000000.000000Z",
        table="t",
        as_of_us=1767225600000000,
        built_at_us=1767225700000000,
        listing_watermark_us=1767225650000000,
        base=None,
        shard_digits=1,
        key_schema=(),
        key_schema_source="recorded",
        columns=(),
        files=(data,),
        counts=Counts(3, 0, 0, 0, 0),
        newest_event_time_us=None,
        run_id="abcdef123456",
        kind=kind,
    )


def test_the_summary_carries_dynamodb_fields() -> None:
    documents = export_documents("b", "", _manifest())
    summary = json.loads(documents.bodies[documents.folder + "manifest-summary.json"])
    assert summary["version"] == "2020-06-30"
    assert summary["exportTime"] == "2026-01-01T00:00:00Z"
    assert summary["exportArn"] == "arn:aws:dynamodb:::table/t/export/01767225600000-abcdef12"
    assert summary["outputFormat"] == "DYNAMODB_JSON"
    assert summary["itemCount"] == 3
    assert summary["s3Prefix"] == "t/v1/snapshots/20260101T000000.000000Z/run-abcdef123456/export"
    (line,) = documents.bodies[documents.folder + "manifest-files.json"].splitlines()
    assert json.loads(line) == {
        "itemCount": 3,
        "md5Checksum": md5_b64(b"z"),
        "etag": __import__("hashlib").md5(b"z").hexdigest(),
        "dataFileS3Key": "t/v1/snapshots/s/run-abc/export/data/part-0.json.gz",
    }


def test_a_delta_snapshot_is_an_incremental_export() -> None:
    # GIVEN a delta snapshot whose parent is an hour older
    manifest = _manifest("delta")
    documents = export_documents(
        "b", "", manifest, parent_as_of_us=manifest.as_of_us - 3600 * SECOND
    )
    body = documents.bodies[documents.folder + "manifest-summary.json"]
    summary = json.loads(body)
    assert summary["exportType"] == "INCREMENTAL_EXPORT"
    assert "exportTime" not in summary
    # THEN our reader sees its window and view
    parsed = parse_summary(body, "b", documents.folder, export_root("", manifest))
    assert (parsed.from_us, parsed.to_us) == (manifest.as_of_us - 3600 * SECOND, manifest.as_of_us)
    assert parsed.output_view == "NEW_IMAGE"
