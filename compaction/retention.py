"""Retention, as pure decisions: which snapshots to keep (with every snapshot a kept delta's
chain needs), the safe lifecycle rule for the noncurrent versions of item objects, and up
to which write time the change journal may go."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from backup_lambda.journal import KEY_MARGIN_US, WRITE_LEAD_US
from backup_lambda.layout import format_time_us
from compaction.fold import LAST_MODIFIED_RESOLUTION_US
from compaction.manifest import Manifest

DAY_US = 86_400 * 1_000_000
# Lifecycle runs about once a day and counts whole days; keep a day more for that, and a
# day more for the time until the next `expire` recomputes the rule.
LIFECYCLE_MARGIN_DAYS = 2


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int
    keep_days: float | None = None

    def __post_init__(self) -> None:
        if self.keep_last < 1:
            raise ValueError("keep_last must be at least 1: the newest snapshot is always kept")


def split_snapshots(
    manifests: Sequence[Manifest], policy: RetentionPolicy, now_us: int
) -> tuple[list[Manifest], list[Manifest]]:
    """(kept, expired), oldest first. Kept: the newest `keep_last`, and any snapshot whose
    as-of is within `keep_days` of now."""
    ordered = sorted(manifests, key=lambda m: m.as_of_us)
    newest = {m.id for m in ordered[-policy.keep_last :]}
    recent_from = None if policy.keep_days is None else now_us - int(policy.keep_days * DAY_US)
    kept = [
        m
        for m in ordered
        if m.id in newest or (recent_from is not None and m.as_of_us >= recent_from)
    ]
    kept_ids = {m.id for m in kept}
    return kept, [m for m in ordered if m.id not in kept_ids]


def keep_chains(
    kept: Sequence[Manifest], expired: Sequence[Manifest]
) -> tuple[list[Manifest], list[Manifest], dict[str, str]]:
    """Moves to `kept` every snapshot a kept delta's chain needs (its parent, the parent's
    parent, ... down to the full snapshot). Returns (kept, expired, why) with `why` mapping
    each snapshot kept only for a chain to the kept snapshot that needs it, oldest first."""
    by_id = {m.id: m for m in [*kept, *expired]}
    keep = {m.id for m in kept}
    why: dict[str, str] = {}
    for manifest in sorted(kept, key=lambda m: m.as_of_us, reverse=True):
        parent = manifest.parent if manifest.kind == "delta" else None
        while parent is not None and parent in by_id:
            if parent not in keep:
                keep.add(parent)
                why[parent] = manifest.id
            ancestor = by_id[parent]
            parent = ancestor.parent if ancestor.kind == "delta" else None
    ordered = sorted(by_id.values(), key=lambda m: m.as_of_us)
    return (
        [m for m in ordered if m.id in keep],
        [m for m in ordered if m.id not in keep],
        why,
    )


def reach_start_us(oldest_kept: Manifest, skew_us: int) -> int:
    """Every item version written after this is needed to reach points in time from the
    oldest kept snapshot on (the same bound compaction uses for reading after a base)."""
    return (
        min(oldest_kept.listing_watermark_us, oldest_kept.as_of_us)
        - LAST_MODIFIED_RESOLUTION_US
        - skew_us
    )


def noncurrent_days(oldest_kept: Manifest | None, now_us: int, skew_us: int) -> int | None:
    """The smallest NoncurrentDays that never expires a version a kept point in time needs.

    A version needed from the oldest kept snapshot on was written after `reach_start`; it
    became noncurrent no earlier than it was written, so it stays at least until
    now - reach_start has passed. None: no snapshot yet, nothing may expire.
    """
    if oldest_kept is None:
        return None
    age_us = max(0, now_us - reach_start_us(oldest_kept, skew_us))
    return math.ceil(age_us / DAY_US) + LIFECYCLE_MARGIN_DAYS


def lifecycle_rule(rule_id: str, items_prefix: str, days: int) -> dict[str, object]:
    """The S3 lifecycle rule for one table's item objects (snapshots are left to expire)."""
    return {
        "ID": rule_id,
        "Status": "Enabled",
        "Filter": {"Prefix": items_prefix},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }


def journal_from_us(manifest: Manifest) -> int:
    """Journal objects written after this may hold changes a read built on `manifest`
    needs. Every such read lists the journal written after the snapshot's listing bound,
    at most the write lead (an item version is written up to 15 minutes after its journal
    object) and the clock allowances earlier: all within the write lead plus the key
    margin (5 minutes) before min(listing watermark, as-of)."""
    return min(manifest.listing_watermark_us, manifest.as_of_us) - WRITE_LEAD_US - KEY_MARGIN_US


@dataclass(frozen=True)
class JournalBound:
    """Journal objects written at or before `through_us` may be removed (None: none)."""

    through_us: int | None
    reason: str


def journal_bound(newest: Manifest | None, needed: Sequence[tuple[str, int]]) -> JournalBound:
    """Up to when the journal is folded into every snapshot a read may still build on.

    `needed`: (snapshot id, journal_from_us) of every such snapshot: the kept ones, and
    those expired so recently that a run started before may still read from them. The
    journal goes only where it is folded into a snapshot older than the newest kept one,
    so a damaged newest snapshot can always be built again from an older one."""
    if newest is None:
        return JournalBound(None, "no snapshot is kept yet")
    if all(snapshot == newest.id for snapshot, _ in needed):
        return JournalBound(
            None,
            f"no snapshot older than the newest, {newest.id}, needs it: the journal is "
            "removed once folded into an older kept snapshot",
        )
    snapshot, from_us = min(needed, key=_at)
    return JournalBound(
        from_us - 1,
        f"written up to {format_time_us(max(0, from_us - 1))}: folded into snapshot "
        f"{snapshot}, the oldest a read may still build on",
    )


def _at(entry: tuple[str, int]) -> int:
    return entry[1]
