"""Helpers of the operations tests: change documents with chosen event times, snapshots,
and reading back what a snapshot or a table holds."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.ddbjson import Item
from backup_lambda.journal import encode_journal, journal_key, unique_id
from backup_lambda.layout import Change, encode_change, key_hash, object_key
from compaction import catalog
from compaction.chain import chain_rows, load_chain
from compaction.compactor import CompactionConfig, Compactor
from compaction.manifest import Manifest
from compaction.policy import SnapshotPolicy
from compaction.state import units_for
from jobs.restore.ddbitems import from_client_item

SEC = 1_000_000
DAY = 86_400 * SEC
BUCKET = "ddb-ops-tests"
TABLE = "orders"


def now_us() -> int:
    return int(time.time() * SEC)


def whole_second_ago(seconds: int) -> int:
    """A whole second `seconds` before now, in epoch microseconds."""
    return (int(time.time()) - seconds) * SEC


def naive_utc(micros: int) -> dt.datetime:
    """moto's clocks are naive UTC datetimes."""
    return dt.datetime.fromtimestamp(micros / SEC, dt.UTC).replace(tzinfo=None)


def key(pk: str) -> Item:
    return {"pk": {"S": pk}}


def item(pk: str, **attributes: int | str) -> Item:
    image: Item = key(pk)
    for name, value in attributes.items():
        image[name] = {"N": str(value)} if isinstance(value, int) else {"S": value}
    return image


@dataclass
class ChangeLog:
    """Writes change documents as S3 object versions, as the backup Lambda does, with
    explicit event times; remembers them to compute the expected state independently."""

    s3: Any
    bucket: str = BUCKET
    table: str = TABLE
    prefix: str = ""
    changes: list[Change] = field(default_factory=list)
    # With a clock (epoch microseconds, S3's as the test set it): each change is journaled
    # first, under a key of that time, as the Lambda does; None: item objects only.
    journal_clock: Callable[[], int] | None = None
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def put(self, image: Item, event_us: int) -> Change:
        return self._write(key(image["pk"]["S"]), "INSERT", image, event_us)

    def remove(self, pk: str, event_us: int) -> Change:
        return self._write(key(pk), "REMOVE", None, event_us)

    def _write(self, keys: Item, name: str, image: Item | None, event_us: int) -> Change:
        sequence = str(next(self._sequence))
        change = Change(
            table=self.table,
            keys=keys,
            event_name=name,  # type: ignore[arg-type]
            event_id=f"event-{sequence}",
            sequence_number=sequence,
            event_time_us=event_us,
            new_image=image,
        )
        if self.journal_clock is not None:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=journal_key(self.prefix, self.table, self.journal_clock(), unique_id()),
                Body=encode_journal([change]),
            )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=object_key(self.prefix, self.table, keys),
            Body=encode_change(change),
        )
        self.changes.append(change)
        return change

    def expected(self, as_of_us: int) -> dict[str, Item]:
        """The state as of T by DESIGN.md: the greatest (event time, sequence) <= T."""
        best: dict[str, Change] = {}
        for change in self.changes:
            digest = key_hash(change.keys)
            if change.event_time_us <= as_of_us and (
                digest not in best or change.order > best[digest].order
            ):
                best[digest] = change
        return {d: c.new_image for d, c in best.items() if c.new_image is not None}


def compact(
    s3: Any,
    as_of_us: int,
    *,
    prefix: str = "",
    table: str = TABLE,
    bucket: str = BUCKET,
    shard_digits: int = 0,
    kind: str = "auto",
) -> Manifest:
    """`kind`: the snapshot policy's kind (auto, full, delta)."""
    result = Compactor(
        s3,
        bucket,
        table,
        prefix=prefix,
        config=CompactionConfig(
            shard_digits=shard_digits, workers=4, policy=SnapshotPolicy(kind=kind)
        ),
    ).run(as_of_us)
    assert result.created
    return result.manifest


def snapshot_items(
    s3: Any, manifest: Manifest, bucket: str = BUCKET, prefix: str = ""
) -> dict[str, Item]:
    """key hash -> item, read from the snapshot's Parquet files (its chain resolved) as
    readers do."""
    return {
        digest: row.change.new_image or {}
        for digest, row in snapshot_rows(s3, manifest, bucket, prefix).items()
    }


def snapshot_rows(
    s3: Any, manifest: Manifest, bucket: str = BUCKET, prefix: str = ""
) -> dict[str, Any]:
    """key hash -> Row (the chosen change, with its sequence number and event time)."""
    chain = load_chain(s3, bucket, prefix, manifest.table, manifest)
    rows: dict[str, Any] = {}
    for unit in units_for(manifest.shard_digits):
        rows.update(
            (digest, row)
            for digest, row in chain_rows(s3, bucket, chain, unit).items()
            if not row.change.is_removal
        )
    return rows


def committed_ids(s3: Any, table: str = TABLE, prefix: str = "", bucket: str = BUCKET) -> list[str]:
    return [m.id for m in catalog.committed_snapshots(s3, bucket, prefix, table)]


def assert_files_intact(s3: Any, manifest: Manifest, bucket: str = BUCKET) -> None:
    """Every file the manifest lists is readable and has the recorded bytes and sha256."""
    assert manifest.files, "a snapshot of a non-empty table lists files"
    for data_file in manifest.files:
        body = s3.get_object(Bucket=bucket, Key=data_file.key)["Body"].read()
        assert len(body) == data_file.bytes, data_file.key
        assert hashlib.sha256(body).hexdigest() == data_file.sha256, data_file.key


def versions_under(s3: Any, prefix: str, bucket: str = BUCKET) -> tuple[list[dict], list[dict]]:
    """(versions, delete markers) under `prefix`."""
    versions: list[dict] = []
    markers: list[dict] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def table_items(dynamodb: Any, table: str, key_names: tuple[str, ...] = ("pk",)) -> dict[str, Item]:
    """Every item of a DynamoDB table (stored form), by key hash."""
    items: dict[str, Item] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for raw in page.get("Items", []):
            converted = from_client_item(raw)
            items[key_hash({k: converted[k] for k in key_names})] = converted
    return items


def create_table(dynamodb: Any, name: str, **extra: Any) -> None:
    """A table keyed by pk (S)."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
