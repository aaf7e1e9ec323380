"""End-state checks, the same exactness the functional tests use (the fold's definition in
`Backup.oracle`, every file of a snapshot against its manifest)."""

from __future__ import annotations

import hashlib
from typing import Any

from backup_lambda.ddbjson import Item
from compaction import catalog
from compaction.manifest import Manifest, snapshot_id
from tests.compaction.helpers import read_snapshot
from tests.jobs.restore.restore_fixtures import TABLE, Backup


def committed(b: Backup) -> list[Manifest]:
    return catalog.committed_snapshots(b.s3, b.bucket, "", TABLE)


def manifest_at(b: Backup, as_of_us: int) -> Manifest | None:
    return catalog.load_manifest(b.s3, b.bucket, "", TABLE, snapshot_id(as_of_us))


def assert_whole(s3: Any, bucket: str, manifest: Manifest) -> dict[str, Item]:
    """Every file the manifest lists exists in the version it pins, with its size and
    checksum, and the rows add up (tests/compaction/helpers.read_snapshot); its items."""
    for data_file in manifest.files:
        assert data_file.version_id, f"{data_file.key} pins no version"
        body = s3.get_object(Bucket=bucket, Key=data_file.key, VersionId=data_file.version_id)
        data = body["Body"].read()
        assert len(data) == data_file.bytes, data_file.key
        assert hashlib.sha256(data).hexdigest() == data_file.sha256, data_file.key
    return read_snapshot(s3, manifest, bucket).items()


def assert_every_snapshot_whole(b: Backup) -> None:
    """Nothing committed half: every visible snapshot is complete."""
    for manifest in committed(b):
        assert_whole(b.s3, b.bucket, manifest)


def snapshot_items(b: Backup, as_of_us: int) -> dict[str, Item]:
    manifest = manifest_at(b, as_of_us)
    assert manifest is not None, "no snapshot committed"
    return assert_whole(b.s3, b.bucket, manifest)
