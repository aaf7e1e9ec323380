"""Delta or full: the pure decision of what kind of snapshot a compaction commits, and the
column types a delta may keep (a chain's files must read as one schema)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from compaction.manifest import Column, Manifest
from compaction.rowformat import DATA_LAYOUT

DEFAULT_MAX_CHAIN = 7
DEFAULT_MAX_CHANGED_SHARE = 0.10
KINDS = ("auto", "full", "delta")


@dataclass(frozen=True)
class SnapshotPolicy:
    """`kind`: auto (by the rules below), full (a full snapshot, built from the chain when
    there is one), delta (a delta wherever one can be written)."""

    kind: str = "auto"
    max_chain: int = DEFAULT_MAX_CHAIN  # deltas after a full snapshot, at most
    max_changed_share: float = DEFAULT_MAX_CHANGED_SHARE  # of the parent's items
    # Every Nth snapshot of a chain is full (a full one, then N-1 deltas); 0: no such rule.
    full_every: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"snapshot kind must be one of {', '.join(KINDS)}")
        if self.max_chain < 0:
            raise ValueError("max_chain must be >= 0")
        if self.max_changed_share < 0:
            raise ValueError("max_changed_share must be >= 0")
        if self.full_every < 0:
            raise ValueError("full_every must be >= 0")


@dataclass(frozen=True)
class Decision:
    kind: str  # "full" | "delta"
    reason: str


def column_change(parent: Sequence[Column], wanted: Sequence[Column]) -> str | None:
    """Why a delta with columns `wanted` could not sit on `parent`'s columns, or None.

    A delta keeps every parent column under the same type (a DECIMAL may only gain scale,
    which casts exactly); it may add columns. Anything else would change what earlier
    levels' values read as, so the snapshot is written full instead."""
    new = {c.name: c.type for c in wanted}
    for column in parent:
        after = new.get(column.name)
        if after is None:
            return f"column {column.name!r} ({column.type}) would be dropped"
        if after != column.type and not _widens(column.type, after):
            return f"column {column.name!r} would change from {column.type} to {after}"
    return None


def _widens(before: str, after: str) -> bool:
    if not (before.startswith("decimal(") and after.startswith("decimal(")):
        return False
    return _scale(after) >= _scale(before)


def _scale(column_type: str) -> int:
    return int(column_type[len("decimal(") : -1].split(",")[1])


def delta_columns(parent: Sequence[Column], wanted: Sequence[Column]) -> tuple[Column, ...]:
    """The delta's columns: the parent's, in the parent's order (types as widened), then
    the new ones."""
    new = {c.name: c for c in wanted}
    kept = [new[c.name] for c in parent]
    names = {c.name for c in parent}
    return (*kept, *(c for c in wanted if c.name not in names))


def decide(
    policy: SnapshotPolicy,
    parent: Manifest | None,
    changed: int,
    columns_problem: str | None,
    *,
    rebuilt: bool = False,
) -> Decision:
    """`parent`: the base snapshot (None: none, or `--full`); `changed`: keys whose row the
    snapshot changes (rows and tombstones a delta would hold)."""
    if rebuilt:
        return Decision("full", "--full: rebuilt from every object version")
    if parent is None:
        return Decision("full", "no earlier snapshot to be a delta of")
    if policy.kind == "full":
        return Decision("full", "a full snapshot was asked for")
    if parent.data_layout < DATA_LAYOUT:
        return Decision("full", f"the parent {parent.id} is in data layout {parent.data_layout}")
    if columns_problem is not None:
        return Decision("full", columns_problem)
    depth = parent.depth + 1
    share = changed / parent.item_count if parent.item_count else (0.0 if not changed else 1.0)
    what = f"{changed} changed keys, {share:.1%} of the parent's {parent.item_count} items"
    if policy.kind == "delta":
        return Decision("delta", f"--delta: {what}")
    if policy.full_every and depth >= policy.full_every:
        return Decision(
            "full",
            f"--full-every {policy.full_every}: the parent's chain already holds {depth} "
            f"snapshots (a full one and {parent.depth} deltas)",
        )
    if depth > policy.max_chain:
        return Decision(
            "full", f"a delta would make the chain {depth} long (--max-chain {policy.max_chain})"
        )
    if share > policy.max_changed_share:
        return Decision("full", f"{what}: over --max-delta-share {policy.max_changed_share:g}")
    return Decision("delta", what)
