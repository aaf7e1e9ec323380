"""The snapshot manifest: a frozen, versioned record of one committed snapshot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from backup_lambda.errors import CorruptVersionError
from backup_lambda.layout import LAYOUT_VERSION, format_time_us

MANIFEST_FORMAT = "ddb-backup-snapshot"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class DataFile:
    key: str
    format: str  # "parquet" | "json.gz" | "tombstones"
    unit: str  # the hash prefix the file covers ("" = all)
    rows: int
    bytes: int
    sha256: str


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
class Counts:
    items: int
    versions_listed: int
    objects_read: int
    changed_keys: int
    carried_rows: int
    removed: int = 0  # tombstones: keys whose newest change as of the snapshot is a removal


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

    @property
    def item_count(self) -> int:
        return self.counts.items

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def files_of(self, fmt: str) -> list[DataFile]:
        return [f for f in self.files if f.format == fmt]

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            **asdict(self),
            "as_of": format_time_us(self.as_of_us),
            "built_at": format_time_us(self.built_at_us),
            "listing_watermark": format_time_us(self.listing_watermark_us),
        }
        return json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, body: bytes, where: str) -> Manifest:
        try:
            doc = json.loads(body)
            if doc.get("format") != MANIFEST_FORMAT or doc.get("version") != MANIFEST_VERSION:
                raise CorruptVersionError(
                    f"{where}: not a version-{MANIFEST_VERSION} ddb-backup manifest"
                )
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
            )
        except CorruptVersionError:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptVersionError(f"{where}: invalid manifest ({e})") from e


def snapshot_id(as_of_us: int) -> str:
    """Sortable id from the as-of time: 20261128T143000.000000Z."""
    iso = format_time_us(as_of_us).rstrip("Z")
    date, _, time = iso.partition("T")
    whole, _, fraction = time.partition(".")
    return f"{date.replace('-', '')}T{whole.replace(':', '')}.{fraction.ljust(6, '0')}Z"
