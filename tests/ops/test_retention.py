"""Retention as pure decisions: which snapshots are kept, and the safe lifecycle rule."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from compaction.manifest import Counts, Manifest, snapshot_id
from compaction.retention import (
    LIFECYCLE_MARGIN_DAYS,
    RetentionPolicy,
    keep_chains,
    lifecycle_rule,
    noncurrent_days,
    reach_start_us,
    split_snapshots,
)
from tests.ops.helpers import DAY, SEC

SKEW = SEC
NOW = 1_800_000_000 * SEC  # a fixed "now" (2027-01-15)
MINUTE = 60 * SEC


def snapshot(as_of_us: int, built_after_us: int = 10 * MINUTE) -> Manifest:
    """A committed snapshot as of `as_of_us`, whose listing began `built_after_us` later."""
    return Manifest(
        id=snapshot_id(as_of_us),
        table="orders",
        as_of_us=as_of_us,
        built_at_us=as_of_us + built_after_us + MINUTE,
        listing_watermark_us=as_of_us + built_after_us,
        base=None,
        shard_digits=0,
        key_schema=(),
        key_schema_source="recorded",
        columns=(),
        files=(),
        counts=Counts(items=0, versions_listed=0, objects_read=0, changed_keys=0, carried_rows=0),
        newest_event_time_us=None,
        run_id="run",
    )


def daily(days: int, now: int = NOW) -> list[Manifest]:
    """One snapshot a day, aged 0 .. days-1 days (as-of at now minus whole days)."""
    return [snapshot(now - age * DAY) for age in range(days)]


def ages(manifests: list[Manifest], now: int = NOW) -> list[float]:
    return [(now - m.as_of_us) / DAY for m in manifests]


# --- split_snapshots ---------------------------------------------------------------------


def test_keeps_the_newest_k_and_expires_the_rest_oldest_first() -> None:
    kept, expired = split_snapshots(list(reversed(daily(10))), RetentionPolicy(3), NOW)
    assert ages(kept) == [2, 1, 0]
    assert ages(expired) == [9, 8, 7, 6, 5, 4, 3]


def test_keep_days_also_keeps_recent_snapshots() -> None:
    kept, expired = split_snapshots(daily(10), RetentionPolicy(1, keep_days=4), NOW)
    assert ages(kept) == [4, 3, 2, 1, 0]  # as-of within 4 days, the boundary included
    assert ages(expired) == [9, 8, 7, 6, 5]


def test_keep_days_does_not_reduce_keep_last() -> None:
    kept, _ = split_snapshots(daily(10), RetentionPolicy(6, keep_days=1.5), NOW)
    assert ages(kept) == [5, 4, 3, 2, 1, 0]


def test_the_newest_is_kept_even_when_old() -> None:
    old = [snapshot(NOW - 400 * DAY), snapshot(NOW - 300 * DAY)]
    kept, expired = split_snapshots(old, RetentionPolicy(1, keep_days=0), NOW)
    assert [m.id for m in kept] == [old[1].id]
    assert [m.id for m in expired] == [old[0].id]


def test_nothing_to_split() -> None:
    assert split_snapshots([], RetentionPolicy(2, 7), NOW) == ([], [])


@pytest.mark.parametrize("keep_last", [0, -1])
def test_keep_last_below_one_is_refused(keep_last: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetentionPolicy(keep_last)


snapshot_ages = st.lists(
    st.integers(min_value=0, max_value=400 * DAY), min_size=1, max_size=30, unique=True
)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(min_value=1, max_value=12),
    keep_days=st.one_of(st.none(), st.floats(min_value=0, max_value=120)),
)


@given(snapshot_ages, policies)
def test_split_properties(age_list: list[int], policy: RetentionPolicy) -> None:
    manifests = [snapshot(NOW - age) for age in age_list]
    kept, expired = split_snapshots(manifests, policy, NOW)
    kept_ids = [m.id for m in kept]
    expired_ids = [m.id for m in expired]
    # a partition of the snapshots, each side oldest first
    assert sorted(kept_ids + expired_ids) == sorted(m.id for m in manifests)
    assert not set(kept_ids) & set(expired_ids)
    assert kept_ids == sorted(kept_ids)
    assert expired_ids == sorted(expired_ids)
    # the newest K are kept; the newest always
    newest_first = sorted(manifests, key=lambda m: m.as_of_us, reverse=True)
    assert {m.id for m in newest_first[: policy.keep_last]} <= set(kept_ids)
    assert newest_first[0].id in kept_ids
    # everything within D days is kept; nothing else beyond the newest K
    for m in manifests:
        recent = policy.keep_days is not None and NOW - m.as_of_us <= policy.keep_days * DAY
        in_newest = m in newest_first[: policy.keep_last]
        assert (m.id in kept_ids) == (recent or in_newest), (m.id, policy)
    # every expired snapshot is older than every kept one
    if expired:
        assert max(m.as_of_us for m in expired) < min(m.as_of_us for m in kept)


# --- noncurrent_days ---------------------------------------------------------------------


def days_for(policy: RetentionPolicy, manifests: list[Manifest], now: int = NOW) -> int | None:
    kept, _ = split_snapshots(manifests, policy, now)
    return noncurrent_days(kept[0] if kept else None, now, SKEW)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # oldest kept as of now: reach = now - 2 s -> ceil(2 s / 1 day) + 2
        (RetentionPolicy(1), 3),
        # oldest kept 6 days old: reach = now - 6 d - 2 s -> 7 + 2
        (RetentionPolicy(7), 9),
        # oldest kept 29 days old -> 30 + 2
        (RetentionPolicy(30), 32),
        # keep_days 10: the 10-day-old snapshot is kept -> 11 + 2
        (RetentionPolicy(1, keep_days=10), 13),
        (RetentionPolicy(7, keep_days=10), 13),
        # keep_last beyond the 40 snapshots: the 39-day-old one is the oldest -> 40 + 2
        (RetentionPolicy(100), 42),
    ],
)
def test_noncurrent_days_for_retention_settings(policy: RetentionPolicy, expected: int) -> None:
    manifests = daily(40)
    assert days_for(policy, manifests) == expected
    kept, _ = split_snapshots(manifests, policy, NOW)
    reach = min(kept[0].as_of_us, kept[0].listing_watermark_us) - SEC - SKEW
    assert expected == math.ceil((NOW - reach) / DAY) + LIFECYCLE_MARGIN_DAYS


def test_reach_uses_the_earlier_of_listing_and_as_of() -> None:
    # a snapshot whose listing began before its as-of (an as-of in the future when built)
    early_listing = snapshot(NOW - 5 * DAY, built_after_us=-2 * DAY)
    assert reach_start_us(early_listing, SKEW) == NOW - 7 * DAY - 2 * SEC
    assert noncurrent_days(early_listing, NOW, SKEW) == 8 + LIFECYCLE_MARGIN_DAYS
    late_listing = snapshot(NOW - 5 * DAY, built_after_us=3 * DAY)
    assert reach_start_us(late_listing, SKEW) == NOW - 5 * DAY - 2 * SEC
    assert noncurrent_days(late_listing, NOW, SKEW) == 6 + LIFECYCLE_MARGIN_DAYS


def test_no_snapshot_no_rule() -> None:
    assert noncurrent_days(None, NOW, SKEW) is None
    assert days_for(RetentionPolicy(3), []) is None


@given(
    st.integers(min_value=0, max_value=500 * DAY),
    st.integers(min_value=0, max_value=500 * DAY),
)
def test_noncurrent_days_grow_with_the_oldest_kept_age(age_a: int, age_b: int) -> None:
    younger, older = sorted([age_a, age_b])
    days_younger = noncurrent_days(snapshot(NOW - younger), NOW, SKEW)
    days_older = noncurrent_days(snapshot(NOW - older), NOW, SKEW)
    assert days_younger is not None
    assert days_older is not None
    assert days_younger <= days_older
    assert days_younger >= LIFECYCLE_MARGIN_DAYS + 1


@given(
    age_list=snapshot_ages,
    policy=policies,
    data=st.data(),
)
def test_no_version_a_kept_point_in_time_needs_expires_before_the_next_run(
    age_list: list[int], policy: RetentionPolicy, data: st.DataObject
) -> None:
    manifests = [snapshot(NOW - age) for age in age_list]
    kept, _ = split_snapshots(manifests, policy, NOW)
    days = noncurrent_days(kept[0], NOW, SKEW)
    assert days is not None
    reach = reach_start_us(kept[0], SKEW)
    assume(reach < NOW)
    # a version written after reach (it may be needed from the oldest kept snapshot on),
    # made noncurrent at any time from its write until now
    written = data.draw(st.integers(min_value=reach + 1, max_value=NOW), label="written")
    noncurrent = data.draw(st.integers(min_value=written, max_value=NOW), label="noncurrent")
    expires = noncurrent + days * DAY
    # not before now, and not before the next daily `expire` recomputes the rule (with a
    # day more for lifecycle's whole-day counting)
    assert expires > NOW
    assert expires >= NOW + DAY + DAY


# --- lifecycle_rule ----------------------------------------------------------------------


def test_lifecycle_rule_shape() -> None:
    rule = lifecycle_rule("ddb-backup-orders-items", "backups/orders/v1/items/", 9)
    assert rule == {
        "ID": "ddb-backup-orders-items",
        "Status": "Enabled",
        "Filter": {"Prefix": "backups/orders/v1/items/"},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 9},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }
    # current versions never expire: no Expiration of current objects
    assert "Expiration" not in rule


# --- chains ----------------------------------------------------------------------------------


def chain(ages_days: list[int], kinds: str) -> list[Manifest]:
    """Snapshots at the given ages; kinds "F" (full) or "D" (a delta of the one before)."""
    made: list[Manifest] = []
    for age, kind in zip(ages_days, kinds, strict=True):
        manifest = snapshot(NOW - age * DAY)
        if kind == "D":
            parent = made[-1]
            manifest = dataclasses.replace(
                manifest, kind="delta", parent=parent.id, depth=parent.depth + 1
            )
        made.append(manifest)
    return made


def test_a_kept_delta_keeps_its_whole_chain_and_says_why() -> None:
    manifests = chain([9, 8, 7, 6, 5, 4], "FDDFDD")
    kept, expired = split_snapshots(manifests, RetentionPolicy(1), NOW)
    assert ages(kept) == [4]
    kept, expired, why = keep_chains(kept, expired)
    assert ages(kept) == [6, 5, 4]  # the newest delta, its parent delta and their full
    assert ages(expired) == [9, 8, 7]
    assert why == {manifests[3].id: manifests[5].id, manifests[4].id: manifests[5].id}


def test_a_kept_full_needs_nothing_and_a_kept_middle_delta_needs_its_ancestors() -> None:
    manifests = chain([9, 8, 7, 6], "FDDF")
    kept, expired, why = keep_chains([manifests[2], manifests[3]], [*manifests[:2]])
    assert ages(kept) == [9, 8, 7, 6]
    assert ages(expired) == []
    assert set(why) == {manifests[0].id, manifests[1].id}


@given(kinds=st.lists(st.sampled_from("FD"), min_size=1, max_size=12), keep=st.integers(1, 5))
def test_no_kept_snapshot_ever_misses_a_parent(kinds: list[str], keep: int) -> None:
    kinds[0] = "F"
    manifests = chain(list(range(len(kinds), 0, -1)), "".join(kinds))
    kept, expired, _ = keep_chains(*split_snapshots(manifests, RetentionPolicy(keep), NOW))
    kept_ids = {m.id for m in kept}
    assert all(m.parent in kept_ids for m in kept if m.kind == "delta")
    assert len(kept) + len(expired) == len(manifests)
    # Beyond the policy's own choice, only ancestors of what it chose are kept.
    by_id = {m.id: m for m in manifests}
    needed = set()
    for chosen in split_snapshots(manifests, RetentionPolicy(keep), NOW)[0]:
        walk: Manifest | None = chosen
        while walk is not None:
            needed.add(walk.id)
            walk = by_id[walk.parent] if walk.parent else None
    assert kept_ids == needed
