"""Was anything written after a snapshot? The cheap check before a scheduled compaction.

A change written after a snapshot's listing bound (`since`) may be missing from it; one
written at or before it is folded in. So "nothing new" means nothing written after `since`.

- **journal**: the journal covers the window (the snapshot read the journal, so its
  window was covered, and coverage never ends; or the oldest coverage marker is at or
  before `since`). One ListObjectsV2 of the journal partitions after the bound answers,
  whatever the table's size: 0 changes cost one request.
- **listing**: no coverage. Item versions are listed until the first one written after
  `since` (a table with nothing new is listed whole), and, when the table has a journal,
  the journal after the bound too (a journal-only writer leaves no item object).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backup_lambda.journal import WRITE_LEAD_US
from backup_lambda.layout import format_time_us, items_prefix
from compaction.fold import LAST_MODIFIED_RESOLUTION_US
from compaction.journal import BOTH, JOURNAL, LISTING, complete_from, has_journal_after
from compaction.manifest import Manifest
from compaction.state import DEFAULT_CLOCK_SKEW_US, base_since
from compaction.versions import iter_versions


@dataclass(frozen=True)
class SnapshotBound:
    """What the check needs of a snapshot: its id and as-of, its listing bound, and how it
    found its changes (a manifest's, or a copy kept by `scheduled`)."""

    id: str
    as_of_us: int
    since_us: int  # changes written at or before this are folded into the snapshot
    change_source: str  # the manifest's: listing | journal | listing+journal

    @classmethod
    def of(cls, manifest: Manifest, skew_us: int = DEFAULT_CLOCK_SKEW_US) -> SnapshotBound:
        return cls(
            manifest.id, manifest.as_of_us, base_since(manifest, skew_us), manifest.change_source
        )

    def journal_start_us(self) -> int:
        """Journal objects written after this may hold changes the snapshot lacks. After a
        snapshot built by listing, an item version written after `since` may carry a
        change journaled up to the write lead before it (compaction.journal.window_start)."""
        if self.change_source in (JOURNAL, BOTH):
            return self.since_us
        return self.since_us - WRITE_LEAD_US - LAST_MODIFIED_RESOLUTION_US


@dataclass(frozen=True)
class NewChanges:
    found: bool
    source: str  # how it was checked: journal | listing | listing+journal
    reason: str  # why that way

    def summary(self) -> str:
        what = "changes written" if self.found else "nothing written"
        return f"{what} since the snapshot (checked by {self.source}: {self.reason})"


def has_versions_after(s3: Any, bucket: str, prefix: str, table: str, since_us: int) -> bool:
    """Whether any item version was written after `since_us` (stops at the first)."""
    for ref in iter_versions(s3, bucket, items_prefix(prefix, table)):
        if int(ref.last_modified.timestamp() * 1_000_000) > since_us:
            return True
    return False


def changes_after(
    s3: Any, bucket: str, prefix: str, table: str, bound: SnapshotBound
) -> NewChanges:
    """Whether anything was written after `bound`'s snapshot, by the journal when it covers
    the window (1 LIST; 2 when the snapshot was built by listing), else by listing."""
    start = bound.journal_start_us()
    if bound.change_source == JOURNAL:
        # The journal was complete for the snapshot's window; a coverage marker is never
        # removed and readers take the oldest, so it is complete for every later window.
        found = has_journal_after(s3, bucket, prefix, table, start)
        return NewChanges(found, JOURNAL, f"snapshot {bound.id} was built from the journal")
    complete = complete_from(s3, bucket, prefix, table)
    if complete is not None and bound.since_us >= complete:
        found = has_journal_after(s3, bucket, prefix, table, start)
        return NewChanges(found, JOURNAL, "the journal covers the window")
    if complete is None:
        why = "the table has no complete journal yet"
    else:
        why = f"the journal is complete only from {format_time_us(complete)}"
    if has_versions_after(s3, bucket, prefix, table, bound.since_us):
        return NewChanges(True, LISTING, why)
    if complete is None:
        return NewChanges(False, LISTING, why)
    # Journal-only writers put no item object: the journal after the bound too.
    found = has_journal_after(s3, bucket, prefix, table, start)
    return NewChanges(found, BOTH, f"{why}; the journal too")
