"""The change feed: every change of a table in an event-time window, once, in order, with
the item's image before and after it (`ddb-backup changes`, docs/FORMAT.md "Change feeds").

The window is (from, to] in event time: the state as of `from` with the feed's changes
applied in order is the state as of `to`. Changes come from the journal when it covers
the window (compaction.journal.choose_source), else from listing the item versions
(plus the journal where the table was journal-only). Either way every change written
after `from` is read, up to now: a change's write can lag its event by the stream's 24 h
retention, and a re-drive can write it later still, so the write time never bounds the
window's end. Copies of one change (replays: same key, event time and sequence number)
count once. The image before a key's first change in the window is its state as of
`from` (a base snapshot plus changes, as `query --as-of` reads it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.ddbjson import Item
from backup_lambda.layout import Change, items_prefix, key_hash
from compaction.fold import LAST_MODIFIED_RESOLUTION_US, Row
from compaction.journal import JOURNAL, LISTING, ChangeSource, rows_by_key
from compaction.state import StatePlan, StateReader, plan_state
from compaction.versions import iter_versions, read_change

_HEX = "0123456789abcdef"


@dataclass(frozen=True)
class FeedChange:
    """One change of the window, with the item's image before it (None: absent)."""

    change: Change
    old_image: Item | None
    key_hash: str

    @property
    def new_image(self) -> Item | None:
        return self.change.new_image


@dataclass
class Feed:
    """The window's changes in (event time, sequence number) order, and how they were found."""

    from_us: int
    to_us: int
    source: ChangeSource
    changes: list[FeedChange] = field(default_factory=list)
    journal_objects: int = 0
    journal_changes: int = 0
    versions_listed: int = 0
    versions_read: int = 0
    copies_removed: int = 0  # replays: stored copies of a change already in the feed
    base: str | None = None  # the snapshot the images before the window start from

    @property
    def items(self) -> int:
        return len({c.key_hash for c in self.changes})

    def describe(self) -> str:
        """How the changes were found, for people (stderr)."""
        found = {
            JOURNAL: f"from the journal ({self.journal_objects} objects)",
            LISTING: f"by listing item versions ({self.versions_listed} listed)",
        }.get(
            self.source.kind,
            f"by listing item versions ({self.versions_listed} listed) and from the "
            f"journal ({self.journal_objects} objects)",
        )
        return f"changes {found}: {self.source.reason}"


def read_feed(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    from_us: int,
    to_us: int,
    *,
    last_per_item: bool = False,
    listing: bool = False,
    read_concurrency: int = 32,
) -> Feed:
    """Every change with event time in (from, to], each once, in event-time order
    (`last_per_item`: only each item's last one, its image before being the state as of
    `from`). `listing` forces the item listing, as `compact --listing` does."""
    plan = plan_state(
        s3,
        bucket,
        prefix,
        table,
        from_us,
        listing=listing,
        read_concurrency=read_concurrency,
    )
    feed = Feed(from_us, to_us, plan.source, base=plan.base.id if plan.base else None)
    # A change with event time after `from` was written after this (LastModified <= T
    # proves event time <= T, give or take S3's second and the clocks' skew).
    written_after = from_us - LAST_MODIFIED_RESOLUTION_US - plan.skew_us
    rows = list(_window_rows(s3, plan, written_after, feed, read_concurrency))
    chosen = _distinct(rows, from_us, to_us, feed)
    if last_per_item:
        last: dict[str, Row] = {}
        for row in chosen:
            last[row.key_hash] = row
        chosen = sorted(last.values(), key=_order)
    before = _state_before(s3, plan, {r.key_hash for r in chosen}, read_concurrency)
    image: dict[str, Item | None] = {}
    for row in chosen:
        old = image[row.key_hash] if row.key_hash in image else before.get(row.key_hash)
        feed.changes.append(FeedChange(row.change, old, row.key_hash))
        if not last_per_item:
            image[row.key_hash] = row.change.new_image
    return feed


def _order(row: Row) -> tuple[int, int, str]:
    return (*row.change.order, row.key_hash)


def _window_rows(
    s3: Any, plan: StatePlan, written_after: int, feed: Feed, concurrency: int
) -> Iterator[Row]:
    """Every stored change written after `written_after`: the plan's journal window
    (it starts at or before that: the plan is as of `from`), and unless the journal
    covers it, the item versions written since."""
    if plan.journal is not None:
        feed.journal_objects = plan.journal.objects
        feed.journal_changes = plan.journal.changes
        entries = [e for unit in plan.journal.by_unit.values() for e in unit]
        for grouped in rows_by_key(entries, plan.bucket).values():
            yield from grouped
    if plan.source.kind == JOURNAL:
        return
    root = items_prefix(plan.prefix, plan.table)
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="feed-get") as pool:
        parts = pool.map(lambda h: list(iter_versions(s3, plan.bucket, root + h)), _HEX)
        refs = [r for r in itertools.chain.from_iterable(parts) if not r.is_delete_marker]
        feed.versions_listed = len(refs)
        fresh = [r for r in refs if int(r.last_modified.timestamp() * 1_000_000) > written_after]
        feed.versions_read = len(fresh)
        for ref, change in zip(
            fresh, pool.map(lambda r: read_change(s3, plan.bucket, r), fresh), strict=True
        ):
            written = int(ref.last_modified.timestamp() * 1_000_000)
            yield Row(key_hash(change.keys), change, ref.version_id, written)


def _distinct(rows: list[Row], from_us: int, to_us: int, feed: Feed) -> list[Row]:
    """The window's changes, one row per change (the first written copy), in order."""
    first: dict[tuple[str, int, int], Row] = {}
    for row in rows:
        if not from_us < row.change.event_time_us <= to_us:
            continue
        identity = (row.key_hash, *row.change.order)
        seen = first.get(identity)
        if seen is not None:
            feed.copies_removed += 1
            if (seen.written_at_us, seen.version_id) <= (row.written_at_us, row.version_id):
                continue
        first[identity] = row
    return sorted(first.values(), key=_order)


def _state_before(
    s3: Any, plan: StatePlan, wanted: set[str], concurrency: int
) -> dict[str, Item | None]:
    """The images of `wanted` keys as of the plan's time (the window's start)."""
    if not wanted:
        return {}
    by_unit: dict[str, set[str]] = {}
    for digest in wanted:
        by_unit.setdefault(digest[: plan.shard_digits], set()).add(digest)
    images: dict[str, Item | None] = {}
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="feed-state") as reads:
        reader = StateReader(s3, plan, reads)
        for unit, keys in sorted(by_unit.items()):
            for digest, row in reader.rows_of(unit, keys).items():
                images[digest] = None if row is None else row.change.new_image
    return images
