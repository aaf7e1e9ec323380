"""`expire`'s journal retention: the change journal objects that every snapshot a read may
still build on has folded in (compaction.retention.journal_bound decides up to when).

The snapshots a read may build on: the kept ones, the ones this run expires, and the ones
an earlier run expired less than the grace period ago (a compaction or restore started
before may still read from them; their tombstones record their journal bound). Objects
are removed by exact version, after the retention record
(`<prefix>/<table>/v1/journal-retention.json`, "removed through") says they may be gone:
a reader whose window reaches that far back (a full rebuild of a journal-only table) then
refuses instead of missing changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.journal import KEY_MARGIN_US, journal_prefix, key_time_us, retention_key
from backup_lambda.layout import format_time_us
from compaction.journal import retained_from
from compaction.retention import JournalBound
from compaction.s3errors import translate
from compaction.s3read import get_bytes
from compaction.versions import VersionRef, iter_versions, put_json

RETENTION_FORMAT = "ddb-backup-journal-retention"
TOMBSTONE_FIELD = "journal_from_us"  # in an expired snapshot's tombstone


def _micros(ref: VersionRef) -> int:
    return int(ref.last_modified.timestamp() * 1_000_000)


@dataclass
class JournalExpiry:
    bound: JournalBound
    refs: list[VersionRef] = field(default_factory=list)
    # partition ("yyyy/mm/dd/hh") -> [objects, bytes]
    partitions: dict[str, list[int]] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return len(self.refs)

    @property
    def bytes(self) -> int:
        return sum(r.size for r in self.refs)

    def to_json(self) -> dict[str, Any]:
        through = self.bound.through_us
        return {
            "removed_through": None if through is None else format_time_us(max(0, through)),
            "reason": self.bound.reason,
            "objects": self.objects,
            "bytes": self.bytes,
            "partitions": {p: {"objects": n, "bytes": b} for p, (n, b) in self.partitions.items()},
        }


def recently_expired(
    s3: Any,
    bucket: str,
    tombstones: Mapping[str, Sequence[VersionRef]],
    now_us: int,
    grace_us: int,
) -> tuple[list[tuple[str, int]], list[str]]:
    """(snapshot id, journal bound) of the snapshots expired less than the grace period
    ago (`tombstones`: those without a manifest), and the ids of those whose tombstone
    records no bound (written by an earlier ddb-backup)."""
    found: list[tuple[str, int]] = []
    unknown: list[str] = []
    for snapshot, refs in sorted(tombstones.items()):
        newest = max(refs, key=_micros)
        if now_us - _micros(newest) >= grace_us:
            continue
        try:
            body = get_bytes(s3, bucket, newest.key, newest.version_id)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, bucket, newest.where) from e
        try:
            found.append((snapshot, int(json.loads(body)[TOMBSTONE_FIELD])))
        except (ValueError, KeyError, TypeError):
            unknown.append(snapshot)
    return found, unknown


def plan_expiry(
    s3: Any, bucket: str, prefix: str, table: str, bound: JournalBound
) -> JournalExpiry:
    """The journal object versions written at or before the bound, oldest key first. The
    listing stops at the first key more than the key margin after it (keys sort by the
    writer's clock when the PUT began, which is at most that far after its end)."""
    expiry = JournalExpiry(bound)
    through = bound.through_us
    if through is None:
        return expiry
    root = journal_prefix(prefix, table)
    for ref in iter_versions(s3, bucket, root):
        key_time = key_time_us(ref.key)
        if key_time is None:
            continue
        if key_time > through + KEY_MARGIN_US:
            break
        # A delete marker's time is when it was put: its key time says what it hid.
        written = key_time if ref.is_delete_marker else _micros(ref)
        if written > through:
            continue
        expiry.refs.append(ref)
        partition = ref.key[len(root) :].rsplit("/", 1)[0]
        counts = expiry.partitions.setdefault(partition, [0, 0])
        counts[0] += 1
        counts[1] += ref.size
    return expiry


def record_removal(
    s3: Any, bucket: str, prefix: str, table: str, through_us: int, now_us: int
) -> None:
    """Before any journal object goes: readers then know objects written at or before
    `through_us` may be missing. The record only moves forward."""
    current = retained_from(s3, bucket, prefix, table)
    if current is not None and current >= through_us:
        return
    put_json(
        s3,
        bucket,
        retention_key(prefix, table),
        {
            "format": RETENTION_FORMAT,
            "version": 1,
            "table": table,
            "removed_through_us": through_us,
            "removed_through": format_time_us(max(0, through_us)),
            "written_at_us": now_us,
        },
    )
