"""The delta-or-full decision (pure): `--full-every` makes every Nth snapshot of a chain
full, beside the chain length and changed-share rules."""

from __future__ import annotations

import dataclasses

import pytest

from compaction.manifest import Counts, Manifest
from compaction.policy import SnapshotPolicy, decide
from compaction.rowformat import DATA_LAYOUT


def parent(depth: int, items: int = 1000) -> Manifest:
    return Manifest(
        id=f"p{depth}",
        table="orders",
        as_of_us=1,
        built_at_us=2,
        listing_watermark_us=2,
        base=None,
        shard_digits=0,
        key_schema=(),
        key_schema_source="recorded",
        columns=(),
        files=(),
        counts=Counts(items, 0, 0, 0, 0),
        newest_event_time_us=None,
        run_id="r",
        kind="delta" if depth else "full",
        depth=depth,
        data_layout=DATA_LAYOUT,
    )


def kinds(policy: SnapshotPolicy, snapshots: int) -> str:
    """The kinds of `snapshots` consecutive compactions with 1 changed key each."""
    out = ""
    depth: int | None = None
    for _ in range(snapshots):
        decision = decide(policy, None if depth is None else parent(depth), 1, None)
        out += decision.kind[0]
        depth = depth + 1 if decision.kind == "delta" and depth is not None else 0
    return out


@pytest.mark.parametrize(
    ("full_every", "expected"),
    [(0, "fdddddddfddd"), (1, "ffffffffffff"), (2, "fdfdfdfdfdfd"), (4, "fdddfdddfddd")],
)
def test_every_nth_snapshot_is_full(full_every: int, expected: str) -> None:
    # 0: only the chain rule (at most 7 deltas after a full snapshot)
    assert kinds(SnapshotPolicy(full_every=full_every), 12) == expected


def test_the_shorter_of_the_two_bounds_wins() -> None:
    assert kinds(SnapshotPolicy(max_chain=2, full_every=5), 7) == "fddfddf"


def test_the_reason_names_the_rule() -> None:
    decision = decide(SnapshotPolicy(full_every=3), parent(2), 1, None)
    assert decision.kind == "full"
    assert decision.reason == (
        "--full-every 3: the parent's chain already holds 3 snapshots (a full one and 2 deltas)"
    )
    assert decide(SnapshotPolicy(full_every=3), parent(1), 1, None).kind == "delta"
    # --delta still forces a delta where one can be written
    forced = decide(SnapshotPolicy(kind="delta", full_every=3), parent(2), 1, None)
    assert forced.kind == "delta"


def test_full_every_is_not_negative() -> None:
    with pytest.raises(ValueError, match="full_every"):
        SnapshotPolicy(full_every=-1)
    assert dataclasses.replace(SnapshotPolicy(), full_every=0).full_every == 0
