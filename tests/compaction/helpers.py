"""Helpers for the compaction tests on moto: a simulated clock, a change store, snapshot reads.

S3 LastModified comes from moto's clock, which the `sim_clock` fixture drives, so that a
test decides when each version was written (to the second, as S3 reports it) and when each
change happened (its event time, in the body). The compactor gets the same clock.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backup_lambda.ddbjson import Item
from backup_lambda.journal import COVERAGE, JOURNAL_ONLY, encode_journal, journal_key, write_marker
from backup_lambda.layout import Change, encode_change, key_hash, object_key
from compaction.chain import load_chain
from compaction.compactor import CompactionConfig, CompactionResult, Compactor
from compaction.manifest import Manifest
from compaction.rowformat import decode_items, item_text
from compaction.tablesettings import TableSettings

SEC = 1_000_000
BUCKET = "compaction-tests"
TABLE = "orders"


class SimClock:
    """Epoch microseconds; offsets in seconds from `start_us` (a whole second, in the past)."""

    def __init__(self, start_us: int) -> None:
        self.start_us = start_us
        self.now_us = start_us

    def at(self, offset_s: float) -> int:
        return self.start_us + round(offset_s * SEC)

    def set(self, offset_s: float) -> None:
        moment = self.at(offset_s)
        assert moment >= self.now_us, "the simulated clock only moves forward"
        self.now_us = moment

    def time(self) -> float:
        """`time.time()` for the compactor."""
        return self.now_us / SEC

    def utcnow(self) -> dt.datetime:
        """moto's clock: a naive UTC datetime."""
        return dt.datetime.fromtimestamp(self.now_us / SEC, dt.UTC).replace(tzinfo=None)


@dataclass
class Stored:
    change: Change | None  # None for a corrupt body
    key: str
    version_id: str
    written_us: int


# How a Store writes: item objects only (as before the journal), the journal beside them
# (the Lambda's default), or the journal only (journal-only mode).
ITEMS = "items"
BESIDE = "journal"
ONLY = "journal-only"
MODES = [ITEMS, BESIDE, ONLY]


@dataclass
class Store:
    """Writes change documents as the backup Lambda does: each change's journal object
    first (unless `mode` is ITEMS), then its item version (unless `mode` is ONLY)."""

    s3: Any
    bucket: str
    clock: SimClock
    table: str = TABLE
    prefix: str = ""
    changes: list[Change] = field(default_factory=list)
    stored: list[Stored] = field(default_factory=list)
    mode: str = ITEMS
    journal_keys: list[str] = field(default_factory=list)
    _sequence: int = 0

    def declare(self, complete_from_us: int = 0, journal_only_since_us: int | None = None) -> None:
        """The journal's markers: complete from `complete_from_us` (0: from the start),
        journal-only from `journal_only_since_us`."""
        if journal_only_since_us is not None:
            write_marker(
                self.s3,
                self.bucket,
                self.prefix,
                self.table,
                JOURNAL_ONLY,
                journal_only_since_us,
                "tests",
            )
        write_marker(
            self.s3, self.bucket, self.prefix, self.table, COVERAGE, complete_from_us, "tests"
        )

    def journal(self, changes: list[Change], write_s: float) -> str:
        """One journal object holding `changes`, written at `write_s` (no item object)."""
        self.clock.set(write_s)
        key = journal_key(
            self.prefix, self.table, self.clock.now_us, f"{len(self.journal_keys):06d}"
        )
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=encode_journal(changes))
        self.journal_keys.append(key)
        return key

    def next_sequence(self) -> str:
        # Grows from 1 digit to many, so that string order != integer order ("9" < "10").
        self._sequence += 1
        return str(self._sequence)

    def put(
        self,
        keys: Item,
        image: Item | None = None,
        *,
        event_s: float,
        write_s: float | None = None,
        name: str | None = None,
        sequence: str | None = None,
        ttl: bool = False,
    ) -> Change:
        """A change of `keys` at event time `event_s`, written at `write_s` (default: then);
        `ttl`: a removal by DynamoDB's TTL (userIdentity: the service)."""
        event_name = name or ("REMOVE" if image is None else "INSERT")
        sequence = sequence or self.next_sequence()
        change = Change(
            table=self.table,
            keys=keys,
            event_name=event_name,  # type: ignore[arg-type]
            event_id=f"event-{sequence}",
            sequence_number=sequence,
            event_time_us=self.clock.at(event_s),
            new_image=None if event_name == "REMOVE" else {**(image or {}), **keys},
            ttl_expiry=ttl,
        )
        self.changes.append(change)
        self.write(change, event_s if write_s is None else write_s)
        return change

    def write(self, change: Change, write_s: float) -> Stored:
        """Store `change` (again, for a replay) as a new version written at `write_s`."""
        return self._put(change.keys, encode_change(change), write_s, change)

    def put_raw(self, keys: Item, body: bytes, write_s: float) -> Stored:
        return self._put(keys, body, write_s, None)

    def _put(self, keys: Item, body: bytes, write_s: float, change: Change | None) -> Stored:
        self.clock.set(write_s)
        if self.mode != ITEMS and change is not None:
            journaled = self.journal([change], write_s)
            if self.mode == ONLY:
                stored = Stored(change, journaled, "journal", self.clock.now_us)
                self.stored.append(stored)
                return stored
        key = object_key(self.prefix, self.table, keys)
        response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        stored = Stored(change, key, response["VersionId"], self.clock.now_us)
        self.stored.append(stored)
        return stored

    def expected(self, as_of_us: int) -> dict[str, Change]:
        """DESIGN.md's state as of T: greatest (event time, int(sequence)) at or before T."""
        best: dict[str, Change] = {}
        for change in self.changes:
            if change.event_time_us > as_of_us:
                continue
            digest = key_hash(change.keys)
            if digest not in best or change.order > best[digest].order:
                best[digest] = change
        return {d: c for d, c in best.items() if not c.is_removal}


def compact(
    s3: Any,
    clock: SimClock,
    *,
    as_of_s: float,
    run_s: float,
    bucket: str = BUCKET,
    table: str = TABLE,
    prefix: str = "",
    config: CompactionConfig | None = None,
    dynamodb: Any | None = None,
) -> CompactionResult:
    """Run a compaction at simulated time `run_s` for the as-of `as_of_s`."""
    clock.set(run_s)
    compactor = Compactor(
        s3, bucket, table, prefix=prefix, config=config, dynamodb=dynamodb, clock=clock.time
    )
    return compactor.run(clock.at(as_of_s))


@dataclass
class Snapshot:
    """A snapshot as its readers see it: for a delta, its chain resolved (full first)."""

    manifest: Manifest
    rows: dict[str, dict[str, Any]]  # key hash -> Parquet row (times as epoch microseconds)
    export: list[dict[str, Any]]  # the parsed JSON lines ({"Item": ...}), chain resolved
    schema: pa.Schema  # the head's Parquet schema
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)  # key hash -> tombstone
    levels: list[Manifest] = field(default_factory=list)
    delta_lines: list[dict[str, Any]] = field(default_factory=list)  # the head's, if a delta

    def items(self) -> dict[str, Item]:
        return {digest: json.loads(row["__item"]) for digest, row in self.rows.items()}

    def content(self) -> dict[str, tuple[str, int, str, str]]:
        """Per item: the lossless item, event time, sequence number and event name."""
        return {
            digest: (
                json.dumps(json.loads(row["__item"]), sort_keys=True),
                row["__event_time"],
                row["__sequence_number"],
                row["__event_name"],
            )
            for digest, row in self.rows.items()
        }

    def export_lines(self) -> list[str]:
        return sorted(json.dumps(line, sort_keys=True) for line in self.export)


def _int_times(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    for name in names:
        if name in table.column_names:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    return table


@dataclass
class _Level:
    rows: dict[str, dict[str, Any]]
    removed: dict[str, dict[str, Any]]
    lines: list[dict[str, Any]]
    schema: pa.Schema | None


def _read_level(s3: Any, manifest: Manifest, bucket: str) -> _Level:
    """One snapshot's own files, each checked against the manifest (bytes, sha256, rows)."""
    level = _Level({}, {}, [], None)
    for data_file in manifest.files:
        body = s3.get_object(Bucket=bucket, Key=data_file.key, VersionId=data_file.version_id)[
            "Body"
        ].read()
        assert len(body) == data_file.bytes, data_file.key
        assert hashlib.sha256(body).hexdigest() == data_file.sha256, data_file.key
        if data_file.format == "parquet":
            table = pq.read_table(pa.BufferReader(body))
            assert table.num_rows == data_file.rows
            if level.schema is not None:
                assert table.schema == level.schema, "a snapshot's Parquet files share a schema"
            level.schema = table.schema
            keys = table.column("__key").to_pylist()
            assert keys == sorted(keys), "rows are in key order"
            items = [item_text(i) for i in decode_items(table, manifest.columns)]
            table = _int_times(table, ("__event_time",))
            for record, item in zip(table.to_pylist(), items, strict=True):
                digest = hashlib.sha256(record["__key"].encode()).hexdigest()
                assert digest.startswith(data_file.unit)
                assert digest not in level.rows, "one row per item"
                level.rows[digest] = {**record, "__key_hash": digest, "__item": item}
        elif data_file.format == "tombstones":
            table = pq.read_table(pa.BufferReader(body))
            assert table.num_rows == data_file.rows
            assert "__item" not in table.schema.names, "a tombstone holds no image"
            assert "__rest" not in table.schema.names, "a tombstone holds no image"
            for tombstone in _int_times(table, ("__event_time",)).to_pylist():
                digest = hashlib.sha256(tombstone["__key"].encode()).hexdigest()
                assert digest == key_hash(json.loads(tombstone["__keys"]))
                assert digest.startswith(data_file.unit)
                assert digest not in level.removed, "one tombstone per key"
                level.removed[digest] = tombstone
        elif data_file.format == "aws-export":
            # DynamoDB-style export manifests (checked in test_export_manifests.py)
            assert "/export/AWSDynamoDB/" in data_file.key
        elif data_file.format == "table-settings":
            assert data_file.rows == 1, "one settings document"
            assert TableSettings.from_json(body, data_file.key).table == manifest.table
        else:
            assert data_file.format == "json.gz"
            lines = gzip.decompress(body).decode("utf-8").splitlines()
            assert len(lines) == data_file.rows
            level.lines += [json.loads(line) for line in lines]
    assert len(level.removed) == manifest.counts.removed
    assert not set(level.removed) & set(level.rows), "a removed key is not also a live row"
    return level


def read_snapshot(s3: Any, manifest: Manifest, bucket: str = BUCKET, prefix: str = "") -> Snapshot:
    """Download every file of the snapshot's chain, checking each, and resolve the chain:
    per key the newest level's row or tombstone; the export likewise (a delta's lines in
    DynamoDB's incremental export layout)."""
    levels = load_chain(s3, bucket, prefix, manifest.table, manifest).levels
    rows: dict[str, dict[str, Any]] = {}
    removed: dict[str, dict[str, Any]] = {}
    export: dict[str, dict[str, Any]] = {}
    level = _Level({}, {}, [], None)
    for snapshot in levels:
        level = _read_level(s3, snapshot, bucket)
        for digest, row in level.rows.items():
            rows[digest] = row
            removed.pop(digest, None)
        for digest, tombstone in level.removed.items():
            removed[digest] = tombstone
            rows.pop(digest, None)
        if snapshot.kind == "full":
            assert len(level.rows) == snapshot.counts.items
            assert all(set(line) == {"Item"} for line in level.lines)
            export = {key_hash(_keys(line["Item"], snapshot)): line for line in level.lines}
            assert len(export) == len(level.lines)
            continue
        for line in level.lines:
            assert set(line) <= {"Metadata", "Keys", "NewImage"}
            assert set(line["Metadata"]) == {"WriteTimestampMicros"}
            digest = key_hash(line["Keys"])
            if "NewImage" in line:
                assert digest in level.rows
                export[digest] = {"Item": line["NewImage"]}
            else:
                assert digest in level.removed
                assert export.pop(digest, None) is not None, "a removal line removes an item"
    assert len(rows) == len(export) == manifest.counts.items
    return Snapshot(
        manifest,
        rows,
        list(export.values()),
        level.schema if level.schema is not None else pa.schema([]),
        removed,
        list(levels),
        level.lines if manifest.kind == "delta" else [],
    )


def _keys(item: Item, manifest: Manifest) -> Item:
    return {k.name: item[k.name] for k in manifest.key_schema}


def expected_content(store: Store, as_of_us: int) -> dict[str, tuple[dict[str, Any], int, str]]:
    return {
        digest: (change.new_image or {}, change.event_time_us, change.sequence_number)
        for digest, change in store.expected(as_of_us).items()
    }


def actual_content(snapshot: Snapshot) -> dict[str, tuple[dict[str, Any], int, str]]:
    return {
        digest: (json.loads(row["__item"]), row["__event_time"], row["__sequence_number"])
        for digest, row in snapshot.rows.items()
    }
