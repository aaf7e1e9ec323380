"""The pure core: which versions to read, and the state of an item as of a time.

No I/O, no clock. The state of an item key as of T is the change with the greatest
(event time, sequence number) among its changes with event time <= T; a removal means
the item is absent. Copies of the same change (replays) tie; the copy written first wins,
so every run picks the same version whatever order it read them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from backup_lambda.layout import Change

# S3 (and moto) report LastModified truncated to the second: the write happened before
# LastModified + this, and the change's event time is no later than its write.
LAST_MODIFIED_RESOLUTION_US = 1_000_000


@dataclass(frozen=True)
class Version:
    """A listed object version: no body, only what ListObjectVersions says."""

    key: str
    version_id: str
    last_modified_us: int


@dataclass(frozen=True)
class Row:
    """An item's chosen change and the stored version it came from.

    A row read from a snapshot (`from_snapshot`) no longer knows its S3 version (layout 2
    does not store it): among copies of one change it wins, so a replayed copy never
    replaces what a snapshot already holds (copies hold the same change)."""

    key_hash: str
    change: Change
    version_id: str
    written_at_us: int
    from_snapshot: bool = False
    key_text: str | None = None  # the canonical key text, when known (snapshot rows)

    @property
    def rank(self) -> tuple[int, int, bool, int, str]:
        """Greater wins: newer change; among copies of one change, the snapshot's row, then
        the earlier write."""
        event_time, sequence = self.change.order
        return (
            event_time,
            sequence,
            self.from_snapshot,
            -self.written_at_us,
            _invert(self.version_id),
        )


def _invert(text: str) -> str:
    # Reverses string order so that max() prefers the smaller version id on full ties.
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def fold_winner(base: Row | None, rows: Iterable[Row], as_of_us: int) -> Row | None:
    """The winning change among `base` and `rows` with event time <= as_of, removals
    included (a snapshot keeps winning removals as tombstones)."""
    best = base
    for row in rows:
        if row.change.event_time_us <= as_of_us and (best is None or row.rank > best.rank):
            best = row
    return best


def fold_key(base: Row | None, rows: Iterable[Row], as_of_us: int) -> Row | None:
    """The item's row as of `as_of` (None: absent, never existed or removed)."""
    best = fold_winner(base, rows, as_of_us)
    if best is None or best.change.is_removal:
        return None
    return best


def could_win(version: Version, best: Row | None, skew_us: int) -> bool:
    """Whether `version` might hold a change that beats (or ties) `best`.

    A version written at LastModified holds an event time earlier than
    LastModified + resolution + clock skew; below `best`'s event time it cannot win.
    """
    if best is None:
        return True
    bound = version.last_modified_us + LAST_MODIFIED_RESOLUTION_US + skew_us
    return bound > best.change.event_time_us


@dataclass
class KeyPlan:
    """Reads for one item key, newest write first, stopping when the rest cannot win."""

    key_hash: str
    candidates: list[Version]
    as_of_us: int
    skew_us: int
    best: Row | None = None
    read: list[Row] = field(default_factory=list)
    _next: int = 0

    def __post_init__(self) -> None:
        self.candidates = sorted(self.candidates, key=lambda v: v.last_modified_us, reverse=True)

    def next_batch(self) -> list[Version]:
        """Versions to read now: every one written after as-of (each may hold an earlier
        event time) plus the next one written at or before it, unless none can win."""
        batch: list[Version] = []
        while self._next < len(self.candidates):
            version = self.candidates[self._next]
            if not could_win(version, self.best, self.skew_us):
                self._next = len(self.candidates)  # sorted: the rest cannot win either
                break
            batch.append(version)
            self._next += 1
            if version.last_modified_us <= self.as_of_us:
                break
        return batch

    def accept(self, row: Row) -> None:
        self.read.append(row)
        if row.change.event_time_us <= self.as_of_us and (
            self.best is None or row.rank > self.best.rank
        ):
            self.best = row

    def result(self, base: Row | None) -> Row | None:
        return fold_key(base, self.read, self.as_of_us)

    def winner(self, base: Row | None) -> Row | None:
        return fold_winner(base, self.read, self.as_of_us)


def candidates_for(
    versions: list[Version], base: Row | None, since_us: int | None
) -> list[Version]:
    """The versions of one key that an incremental run must consider (empty: carry `base`).

    Every version written at or before `since_us` was folded into the base snapshot, whose
    row for the key (live, or a tombstone for a removal) bounds them all. A base without
    any row for a key that has older versions (a version skipped as corrupt, say) cannot
    say how they ended, so that key is folded from all of its versions; otherwise a late,
    older insert could revive an item removed before the base.
    """
    if since_us is None:
        return list(versions)
    fresh = [v for v in versions if v.last_modified_us > since_us]
    if fresh and base is None and len(fresh) < len(versions):
        return list(versions)
    return fresh
