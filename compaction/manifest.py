"""The snapshot manifest: a frozen, versioned record of one committed snapshot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from backup_lambda.errors import CorruptSnapshotError, CorruptVersionError
from backup_lambda.layout import LAYOUT_VERSION, format_time_us
from compaction.clock import ClockReading

MANIFEST_FORMAT = "ddb-backup-snapshot"
# 2: files pin their S3 version id (and MD5); kind/parent/depth (delta chains); column
# statistics; the clocks the run used; how changes after the base were found. Version 1
# manifests are still read (their new fields take the defaults below).
MANIFEST_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})


@dataclass(frozen=True)
class DataFile:
    key: str
    format: str  # "parquet" | "json.gz" | "tombstones"
    unit: str  # the hash prefix the file covers ("" = all)
    rows: int
    bytes: int
    sha256: str  # hex SHA-256 of the file's bytes
    # The S3 version the manifest pins: readers GET exactly this version. None: written by
    # a version-1 manifest or to an unversioned bucket (readers then check size and sha256).
    version_id: str | None = None
    md5: str | None = None  # base64 MD5 of the file (DynamoDB export manifests carry it)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # varchar | boolean | blob | json | double | decimal(38,s)


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    attribute_type: str  # S | N | B
    key_type: str | None  # HASH | RANGE | None when unknown


@dataclass(frozen=True)
class SkippedVersion:
    key: str
    version_id: str
    reason: str


@dataclass(frozen=True)
class ColumnStats:
    """What one attribute's values look like across the rows a snapshot holds (mergeable,
    so a delta can type its columns like its chain)."""

    name: str
    tags: tuple[str, ...]  # DynamoDB type tags seen, NULL aside
    max_integer_digits: int = 0
    max_scale: int = 0
    count: int = 0


@dataclass(frozen=True)
class Counts:
    items: int
    versions_listed: int
    objects_read: int
    changed_keys: int
    carried_rows: int
    removed: int = 0  # tombstones: keys whose newest change as of the snapshot is a removal
    journal_objects: int = 0  # journal objects read (change_source journal or listing+journal)
    journal_changes: int = 0  # changes read from them


@dataclass(frozen=True)
class Manifest:
    id: str
    table: str
    as_of_us: int
    built_at_us: int
    listing_watermark_us: int
    base: str | None
    shard_digits: int
    key_schema: tuple[KeyAttribute, ...]
    key_schema_source: str  # "describe_table" | "recorded"
    columns: tuple[Column, ...]
    files: tuple[DataFile, ...]
    counts: Counts
    newest_event_time_us: int | None
    run_id: str
    skipped: tuple[SkippedVersion, ...] = field(default_factory=tuple)
    layout_version: int = LAYOUT_VERSION
    kind: str = "full"  # "full": every live item; "delta": only what changed since `parent`
    parent: str | None = None  # a delta's parent snapshot (its chain runs back to a full)
    depth: int = 0  # 0 for a full; a delta's parent's depth + 1
    column_stats: tuple[ColumnStats, ...] = field(default_factory=tuple)
    clock: ClockReading | None = None
    # How changes after the base were found: listing | journal | listing+journal.
    change_source: str = "listing"
    origin: str = "compaction"  # what built it: compaction | import-export
    # How rows are stored in its Parquet files: 1 (release 1: key hash, whole item, version
    # id per row) or 2 (canonical key text, typed columns plus the rest of the item; FORMAT.md).
    data_layout: int = 1
    policy_reason: str | None = None  # why the compaction wrote this kind of snapshot
    manifest_version: int = MANIFEST_VERSION  # the version this manifest was read as

    @property
    def item_count(self) -> int:
        return self.counts.items

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def files_of(self, fmt: str) -> list[DataFile]:
        return [f for f in self.files if f.format == fmt]

    def to_json(self) -> bytes:
        fields = asdict(self)
        fields.pop("manifest_version")
        document: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            **fields,
            "as_of": format_time_us(self.as_of_us),
            "built_at": format_time_us(self.built_at_us),
            "listing_watermark": format_time_us(self.listing_watermark_us),
        }
        return json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, body: bytes, where: str) -> Manifest:
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
                raise CorruptSnapshotError(f"{where}: not a ddb-backup manifest")
            if doc.get("version") not in READABLE_VERSIONS:
                raise CorruptVersionError(
                    f"{where}: manifest version {doc.get('version')!r} is newer than this "
                    f"ddb-backup reads ({max(READABLE_VERSIONS)}); upgrade ddb-backup"
                )
            clock = doc.get("clock")
            return cls(
                id=doc["id"],
                table=doc["table"],
                as_of_us=int(doc["as_of_us"]),
                built_at_us=int(doc["built_at_us"]),
                listing_watermark_us=int(doc["listing_watermark_us"]),
                base=doc["base"],
                shard_digits=int(doc["shard_digits"]),
                key_schema=tuple(KeyAttribute(**k) for k in doc["key_schema"]),
                key_schema_source=doc["key_schema_source"],
                columns=tuple(Column(**c) for c in doc["columns"]),
                files=tuple(DataFile(**f) for f in doc["files"]),
                counts=Counts(**doc["counts"]),
                newest_event_time_us=doc["newest_event_time_us"],
                run_id=doc["run_id"],
                skipped=tuple(SkippedVersion(**s) for s in doc.get("skipped", [])),
                layout_version=int(doc.get("layout_version", LAYOUT_VERSION)),
                kind=doc.get("kind", "full"),
                parent=doc.get("parent"),
                depth=int(doc.get("depth", 0)),
                column_stats=tuple(
                    ColumnStats(**{**s, "tags": tuple(s["tags"])})
                    for s in doc.get("column_stats", [])
                ),
                clock=ClockReading(**clock) if clock else None,
                change_source=doc.get("change_source", "listing"),
                origin=doc.get("origin", "compaction"),
                data_layout=int(doc.get("data_layout", 1)),
                policy_reason=doc.get("policy_reason"),
                manifest_version=int(doc["version"]),
            )
        except (CorruptVersionError, CorruptSnapshotError):
            raise
        except (ValueError, KeyError, TypeError) as e:
            # A committed manifest that does not parse is stored data that failed
            # verification (exit 6), like a snapshot file that does not match it.
            raise CorruptSnapshotError(f"{where}: invalid manifest ({e})") from e


def snapshot_id(as_of_us: int) -> str:
    """Sortable id from the as-of time: 20261128T143000.000000Z."""
    iso = format_time_us(as_of_us).rstrip("Z")
    date, _, time = iso.partition("T")
    whole, _, fraction = time.partition(".")
    return f"{date.replace('-', '')}T{whole.replace(':', '')}.{fraction.ljust(6, '0')}Z"
