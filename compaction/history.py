"""The history of one item: every distinct change, in (event time, sequence) order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from backup_lambda.ddbjson import Item
from backup_lambda.errors import NotFoundError
from backup_lambda.layout import Change, object_key
from compaction.versions import VersionRef, key_versions, read_change, table_has_backup


@dataclass(frozen=True)
class HistoryEntry:
    change: Change
    version_id: str
    written_at: dt.datetime
    copies: int  # how many stored versions carry this change (replays write it again)


def item_history(
    s3: Any, bucket: str, prefix: str, table: str, keys: Item, as_of_us: int | None = None
) -> list[HistoryEntry]:
    key = object_key(prefix, table, keys)
    refs = [ref for ref in key_versions(s3, bucket, key) if not ref.is_delete_marker]
    if not refs and not table_has_backup(s3, bucket, prefix, table):
        raise NotFoundError(f"no backup of table {table!r} in s3://{bucket}/{prefix}")
    by_sequence: dict[str, tuple[Change, VersionRef, int]] = {}
    for ref in sorted(refs, key=lambda r: r.last_modified):
        change = read_change(s3, bucket, ref)
        seen = by_sequence.get(change.sequence_number)
        by_sequence[change.sequence_number] = (
            (seen[0], seen[1], seen[2] + 1) if seen else (change, ref, 1)
        )
    entries = [
        HistoryEntry(change, ref.version_id, ref.last_modified, copies)
        for change, ref, copies in by_sequence.values()
        if as_of_us is None or change.event_time_us <= as_of_us
    ]
    return sorted(entries, key=lambda e: e.change.order)
