"""Reconciliation: is every change of the item versions in a window also in the journal?

`compact --verify-journal` (and every Nth scheduled run) lists the item versions written in
the window a journal-read compaction covers, reads them, and looks each change up among the
journal window's changes. A change that is missing means the journal's invariant was broken
(a writer without the journal after coverage was declared, a deleted journal object): the
compaction then builds its snapshot from the listing instead, and the run fails loudly.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.errors import IntegrityError
from backup_lambda.layout import items_prefix, key_hash
from compaction.fold import LAST_MODIFIED_RESOLUTION_US
from compaction.journal import JournalWindow
from compaction.versions import VersionRef, iter_versions, read_change

_HEX = "0123456789abcdef"
SHOWN = 5


@dataclass(frozen=True)
class Missing:
    key: str  # the item object
    version_id: str
    sequence_number: str
    event_time_us: int


@dataclass
class JournalCheck:
    """What a check compared: item versions in the window, and those the journal lacks."""

    checked: bool  # False: the plan did not read the journal alone (nothing to compare)
    listed: int = 0  # item versions listed
    compared: int = 0  # item versions in the window, read and looked up
    journal_changes: int = 0
    missing: list[Missing] = field(default_factory=list)

    def summary(self) -> str:
        if not self.checked:
            return "journal not checked (the changes were not read from the journal alone)"
        return (
            f"journal checked: {self.compared} item versions in the window, "
            f"{len(self.missing)} missing from the journal"
        )


class JournalMismatchError(IntegrityError):
    """The journal lacks changes that item versions hold (the snapshot was built by listing)."""


def check_journal(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    window: JournalWindow,
    since_us: int | None,
    watermark_us: int,
    *,
    skew_us: int,
    concurrency: int = 16,
) -> JournalCheck:
    """Compare the item versions written in (since, watermark - 1 s - skew] with `window`.

    Every such version's change must be in the window: its journal object was written
    before it (so before the watermark, when the window was listed) and after the window's
    start (the start allows for the write lead)."""
    upper = watermark_us - LAST_MODIFIED_RESOLUTION_US - skew_us
    known = {
        (entry.key_hash, *_identity(entry.line))
        for entries in window.by_unit.values()
        for entry in entries
    }
    root = items_prefix(prefix, table)
    check = JournalCheck(checked=True, journal_changes=window.changes)
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="journal-check") as pool:
        parts = pool.map(lambda h: list(iter_versions(s3, bucket, root + h)), _HEX)
        refs = [r for r in itertools.chain.from_iterable(parts) if not r.is_delete_marker]
        check.listed = len(refs)
        window_refs = [r for r in refs if _in_window(r, since_us, upper)]
        check.compared = len(window_refs)
        for ref, change in zip(
            window_refs, pool.map(lambda r: read_change(s3, bucket, r), window_refs), strict=True
        ):
            identity = (key_hash(change.keys), change.sequence_number, change.event_time_us)
            if identity not in known:
                check.missing.append(
                    Missing(ref.key, ref.version_id, change.sequence_number, change.event_time_us)
                )
    return check


def _identity(line: bytes) -> tuple[str, int]:
    doc = json.loads(line)
    return str(doc["sequenceNumber"]), int(doc["eventTimeMicros"])


def _in_window(ref: VersionRef, since_us: int | None, upper_us: int) -> bool:
    written = int(ref.last_modified.timestamp() * 1_000_000)
    return (since_us is None or written > since_us) and written <= upper_us


def mismatch_error(check: JournalCheck, snapshot: str, table: str) -> JournalMismatchError:
    shown = ", ".join(
        f"{m.key} (version {m.version_id}, sequence {m.sequence_number})"
        for m in check.missing[:SHOWN]
    )
    more = f" and {len(check.missing) - SHOWN} more" if len(check.missing) > SHOWN else ""
    return JournalMismatchError(
        f"the change journal of {table!r} misses {len(check.missing)} of {check.compared} "
        f"changes in the window: {shown}{more}; snapshot {snapshot} was built by listing "
        "instead (see docs/OPERATIONS.md, 'When the journal check fails')"
    )
