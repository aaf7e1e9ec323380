"""The delta-or-full decision (pure): each rule of docs/COMPACTION.md gives its kind and
reason; `--full-every` makes every Nth snapshot of a chain full, beside the chain length and
changed-share rules; the column types a delta may keep."""

from __future__ import annotations

import dataclasses

import pytest

from compaction.manifest import Column, Counts, Manifest
from compaction.policy import Decision, SnapshotPolicy, column_change, decide, delta_columns
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


# --- each rule, with the documented kind and reason (docs/COMPACTION.md "Delta or full") ---

AUTO = SnapshotPolicy()
FORCED = SnapshotPolicy(kind="delta")


def layout1(depth: int = 0) -> Manifest:
    return dataclasses.replace(parent(depth), data_layout=1)


@pytest.mark.parametrize("policy", [AUTO, FORCED], ids=["auto", "--delta"])
def test_rules_that_even_delta_does_not_override(policy: SnapshotPolicy) -> None:
    assert decide(policy, None, 0, None) == Decision("full", "no earlier snapshot to be a delta of")
    assert decide(policy, parent(0), 1, None, rebuilt=True) == Decision(
        "full", "--full: rebuilt from every object version"
    )
    assert decide(policy, layout1(), 1, None) == Decision(
        "full", "the parent p0 is in data layout 1"
    )
    problem = "column 'n' would change from decimal(38,0) to varchar"
    assert decide(policy, parent(0), 1, problem) == Decision("full", problem)


def test_a_full_snapshot_asked_for() -> None:
    assert decide(SnapshotPolicy(kind="full"), parent(0), 0, None) == Decision(
        "full", "a full snapshot was asked for"
    )


def test_the_chain_length_bound() -> None:
    # a full snapshot and 6 deltas: a 7th delta is allowed, an 8th is not
    assert decide(AUTO, parent(6), 1, None).kind == "delta"
    assert decide(AUTO, parent(7), 1, None) == Decision(
        "full", "a delta would make the chain 8 long (--max-chain 7)"
    )
    assert decide(SnapshotPolicy(max_chain=0), parent(0), 0, None) == Decision(
        "full", "a delta would make the chain 1 long (--max-chain 0)"
    )
    assert decide(FORCED, parent(7), 1, None) == Decision(
        "delta", "--delta: 1 changed keys, 0.1% of the parent's 1000 items"
    )


def test_the_changed_share_bound() -> None:
    at_the_limit = decide(AUTO, parent(0), 100, None)
    assert at_the_limit == Decision("delta", "100 changed keys, 10.0% of the parent's 1000 items")
    assert decide(AUTO, parent(0), 101, None) == Decision(
        "full",
        "101 changed keys, 10.1% of the parent's 1000 items: over --max-delta-share 0.1",
    )
    assert decide(FORCED, parent(0), 1000, None) == Decision(
        "delta", "--delta: 1000 changed keys, 100.0% of the parent's 1000 items"
    )
    assert decide(SnapshotPolicy(max_changed_share=0.5), parent(0), 500, None).kind == "delta"
    # an empty parent: nothing changed is a delta (it moves the as-of on), anything is all
    assert decide(AUTO, parent(0, items=0), 0, None).kind == "delta"
    assert decide(AUTO, parent(0, items=0), 1, None) == Decision(
        "full", "1 changed keys, 100.0% of the parent's 0 items: over --max-delta-share 0.1"
    )


def test_the_rules_apply_in_the_documented_order() -> None:
    # over both bounds: the chain rule is named first
    assert "--max-chain" in decide(AUTO, parent(7), 1000, None).reason
    # a column change is named before the chain
    assert decide(AUTO, parent(7), 1, "column 'x' ...").reason == "column 'x' ..."


@pytest.mark.parametrize(
    ("before", "after", "problem"),
    [
        ([("n", "decimal(38,0)")], [("n", "decimal(38,2)")], None),  # gains scale
        ([("n", "decimal(38,2)")], [("n", "decimal(38,2)"), ("m", "varchar")], None),  # added
        (
            [("n", "decimal(38,2)")],
            [("n", "decimal(38,0)")],
            "column 'n' would change from decimal(38,2) to decimal(38,0)",
        ),
        (
            [("n", "decimal(38,0)")],
            [("n", "json")],
            "column 'n' would change from decimal(38,0) to json",
        ),
        (
            [("n", "varchar"), ("m", "boolean")],
            [("n", "varchar")],
            "column 'm' (boolean) would be dropped",
        ),
    ],
)
def test_column_change(
    before: list[tuple[str, str]], after: list[tuple[str, str]], problem: str | None
) -> None:
    old = [Column(n, t) for n, t in before]
    new = [Column(n, t) for n, t in after]
    assert column_change(old, new) == problem
    if problem is None:  # the delta: the parent's columns in its order (as widened), then new
        names = {c.name for c in old}
        kept = delta_columns(old, list(reversed(new)))
        assert kept == (
            *(c for c in new if c.name in names),
            *(c for c in new if c.name not in names),
        )
