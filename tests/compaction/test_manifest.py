"""The manifest's JSON: version 2 round-trips, version 1 (as earlier releases wrote it) is
still read, and anything else is refused with one clear line."""

from __future__ import annotations

import dataclasses
import json

import pytest

from backup_lambda.errors import CorruptSnapshotError, CorruptVersionError
from compaction.manifest import (
    MANIFEST_VERSION,
    ClockReading,
    Column,
    ColumnStats,
    Counts,
    DataFile,
    KeyAttribute,
    Manifest,
)
from tests.support import FIXTURES


def _manifest(**changes: object) -> Manifest:
    base = Manifest(
        id="20261204T120000.000000Z",
        table="orders",
        as_of_us=1796385600000000,
        built_at_us=1796385660000000,
        listing_watermark_us=1796385601000000,
        base="20261204T110000.000000Z",
        shard_digits=1,
        key_schema=(KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE")),
        key_schema_source="describe_table",
        columns=(Column("pk", "varchar"), Column("amount", "decimal(38,2)")),
        files=(
            DataFile("t/p.parquet", "parquet", "0", 3, 100, "ab" * 32, "v-123", "bWQ1"),
            DataFile("t/e.json.gz", "json.gz", "0", 3, 50, "cd" * 32, None, None),
        ),
        counts=Counts(3, 4, 4, 3, 0, 1),
        newest_event_time_us=1796385590000000,
        run_id="0123456789ab",
        kind="delta",
        parent="20261204T110000.000000Z",
        depth=2,
        column_stats=(ColumnStats("amount", ("N",), 3, 2, 3), ColumnStats("pk", ("S",), 0, 0, 3)),
        clock=ClockReading(1796385660000000, 1796385660400000, "s3"),
        change_source="journal",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_version_two_round_trips_every_field() -> None:
    # GIVEN a manifest using every version-2 field WHEN written and read back THEN equal
    manifest = _manifest()
    document = json.loads(manifest.to_json())
    assert document["version"] == MANIFEST_VERSION == 2
    assert "manifest_version" not in document
    assert Manifest.from_json(manifest.to_json(), "m") == manifest


def test_version_one_manifest_is_read_with_defaults() -> None:
    # GIVEN a manifest exactly as release 1 wrote it WHEN read THEN its fields are kept and
    # the version-2 fields take the defaults a full, listing-built snapshot has
    body = (FIXTURES / "manifest_v1.json").read_bytes()
    manifest = Manifest.from_json(body, "v1")
    assert manifest.manifest_version == 1
    assert manifest.id == "20261128T143000.000000Z"
    assert manifest.counts.removed == 1
    assert [f.format for f in manifest.files] == ["json.gz", "parquet", "tombstones"]
    assert all(f.version_id is None and f.md5 is None for f in manifest.files)
    assert (manifest.kind, manifest.parent, manifest.depth) == ("full", None, 0)
    assert manifest.column_stats == ()
    assert manifest.clock is None
    assert manifest.change_source == "listing"
    assert manifest.skipped[0].version_id == "v9"


def test_newer_manifest_version_is_refused_with_upgrade_hint() -> None:
    document = json.loads(_manifest().to_json())
    document["version"] = 99
    with pytest.raises(CorruptVersionError, match="newer than this ddb-backup reads"):
        Manifest.from_json(json.dumps(document).encode(), "s3://b/m.json")


@pytest.mark.parametrize(
    "body",
    [b"[]", b"{", b'{"format": "other"}', b'{"format": "ddb-backup-snapshot", "version": 2}'],
)
def test_malformed_manifest_is_one_clear_error(body: bytes) -> None:
    # stored data that failed verification: exit status 6, like a damaged snapshot file
    with pytest.raises(CorruptSnapshotError, match=r"s3://b/m\.json"):
        Manifest.from_json(body, "s3://b/m.json")
