"""The history of one item: every distinct change, in (event time, sequence) order.

Without a window it lists the item's object versions. Over an event-time window
(`from`, `to`] it reads the change journal where the journal covers the window (so it
works for journal-only tables, which have no item objects), else the object versions
(plus the journal where the table was journal-only), and says which.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from backup_lambda.ddbjson import Item
from backup_lambda.errors import NotFoundError
from backup_lambda.layout import Change, key_hash, object_key
from compaction.fold import LAST_MODIFIED_RESOLUTION_US
from compaction.journal import (
    JOURNAL,
    LISTING,
    ChangeSource,
    choose_source,
    read_window,
    retained_from,
    rows_by_key,
)
from compaction.state import DEFAULT_CLOCK_SKEW_US
from compaction.versions import VersionRef, key_versions, read_change, table_has_backup


@dataclass(frozen=True)
class HistoryEntry:
    change: Change
    version_id: str  # the object version, or journal:<object name>#<line>
    written_at: dt.datetime
    copies: int  # how many stored versions carry this change (replays write it again)


@dataclass(frozen=True)
class WindowHistory:
    entries: list[HistoryEntry]
    source: ChangeSource
    journal_objects: int = 0


def item_history(
    s3: Any, bucket: str, prefix: str, table: str, keys: Item, as_of_us: int | None = None
) -> list[HistoryEntry]:
    key = object_key(prefix, table, keys)
    refs = [ref for ref in key_versions(s3, bucket, key) if not ref.is_delete_marker]
    if not refs and not table_has_backup(s3, bucket, prefix, table):
        raise NotFoundError(f"no backup of table {table!r} in s3://{bucket}/{prefix}")
    found = [(read_change(s3, bucket, ref), ref.version_id, ref.last_modified) for ref in refs]
    entries = _distinct(found)
    return [e for e in entries if as_of_us is None or e.change.event_time_us <= as_of_us]


def item_history_window(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    keys: Item,
    from_us: int,
    to_us: int,
    *,
    listing: bool = False,
) -> WindowHistory:
    """The item's changes with event time in (from, to]: from the journal where it covers
    the window (every journal object written after `from`: a change's write can lag its
    event by a day), else its object versions (plus the journal of a journal-only table)."""
    if not table_has_backup(s3, bucket, prefix, table):
        raise NotFoundError(f"no backup of table {table!r} in s3://{bucket}/{prefix}")
    since = from_us - LAST_MODIFIED_RESOLUTION_US - DEFAULT_CLOCK_SKEW_US
    source = choose_source(s3, bucket, prefix, table, None, since, listing=listing)
    if source.kind == JOURNAL:
        retained = retained_from(s3, bucket, prefix, table)
        start = source.journal_start_us
        if retained is not None and start is not None and start <= retained:
            source = choose_source(s3, bucket, prefix, table, None, since, listing=True)
            source = ChangeSource(
                source.kind,
                f"journal objects of the window were removed by expire; {source.reason}",
                source.journal_start_us,
            )
    found: list[tuple[Change, str, dt.datetime]] = []
    objects = 0
    if source.kind != JOURNAL:
        key = object_key(prefix, table, keys)
        refs: list[VersionRef] = [
            r for r in key_versions(s3, bucket, key) if not r.is_delete_marker
        ]
        found += [(read_change(s3, bucket, r), r.version_id, r.last_modified) for r in refs]
    if source.kind != LISTING:
        window = read_window(s3, bucket, prefix, table, source.journal_start_us, 0)
        objects = window.objects
        for row in rows_by_key(window.entries(""), bucket).get(key_hash(keys), []):
            written = dt.datetime.fromtimestamp(row.written_at_us / 1_000_000, dt.UTC)
            found.append((row.change, row.version_id, written))
    entries = [e for e in _distinct(found) if from_us < e.change.event_time_us <= to_us]
    return WindowHistory(entries, source, objects)


def _distinct(found: list[tuple[Change, str, dt.datetime]]) -> list[HistoryEntry]:
    """One entry per change (its first written copy, with the count of copies), in order."""
    by_change: dict[tuple[int, int], tuple[Change, str, dt.datetime, int]] = {}
    for change, version, written in sorted(found, key=lambda f: f[2]):
        seen = by_change.get(change.order)
        by_change[change.order] = (
            (seen[0], seen[1], seen[2], seen[3] + 1) if seen else (change, version, written, 1)
        )
    entries = [HistoryEntry(c, v, w, n) for c, v, w, n in by_change.values()]
    return sorted(entries, key=lambda e: e.change.order)
