"""Retention, as pure decisions: which snapshots to keep, and the safe lifecycle rule for
the noncurrent versions of item objects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
