"""Snapshot chains: a full snapshot and the deltas committed on top of it.

A delta holds, per unit, the rows whose newest change differs from its parent's and the
keys removed since it (tombstones). The state a chain stands for is, per key, the row of
the newest level that mentions the key; a tombstone there means the key is absent
(Iceberg's equality deletes, keyed by the item key). Every reader resolves a chain here
(rows for folds, restores and `query --as-of`) or in jobs/query/views.py (DuckDB).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from backup_lambda.errors import CorruptSnapshotError
from compaction import catalog
from compaction.fold import Row
from compaction.manifest import Manifest
from compaction.snapshot_io import (
    data_columns,
    data_rows,
    files_for,
    read_table,
    tombstone_columns,
    tombstone_rows,
)

# A chain longer than this is not one we wrote (--max-chain is far lower): a cycle.
_MAX_LEVELS = 10_000


@dataclass(frozen=True)
class Chain:
    """The snapshots a head snapshot needs, its full snapshot first."""

    levels: tuple[Manifest, ...]

    @property
    def head(self) -> Manifest:
        return self.levels[-1]

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.levels]

    def __len__(self) -> int:
        return len(self.levels)


def _broken(child: Manifest, problem: str) -> CorruptSnapshotError:
    return CorruptSnapshotError(
        f"snapshot {child.id} is a delta of snapshot {child.parent}, which {problem}: its "
        "chain cannot be read (`compact --full` writes a new full snapshot)"
    )


def load_chain(s3: Any, bucket: str, prefix: str, table: str, head: Manifest) -> Chain:
    """Follow `head`'s parents to its full snapshot, checking that each link holds."""
    levels = [head]
    while levels[-1].kind == "delta":
        child = levels[-1]
        if child.parent is None:
            raise CorruptSnapshotError(f"snapshot {child.id} is a delta that names no parent")
        if len(levels) > _MAX_LEVELS:
            raise _broken(child, "leads into a cycle")
        parent = catalog.load_manifest(s3, bucket, prefix, table, child.parent)
        if parent is None:
            raise _broken(child, "is not committed (expired or removed)")
        if parent.depth != child.depth - 1 or parent.as_of_us >= child.as_of_us:
            raise _broken(
                child,
                f"does not fit it (depth {parent.depth} -> {child.depth}, as-of "
                f"{parent.id} -> {child.id})",
            )
        levels.append(parent)
    if levels[-1].kind != "full" or levels[-1].depth != 0:
        raise CorruptSnapshotError(
            f"snapshot {levels[-1].id} is of kind {levels[-1].kind!r} at depth "
            f"{levels[-1].depth}: a chain must start with a full snapshot"
        )
    return Chain(tuple(reversed(levels)))


def level_rows(
    s3: Any,
    bucket: str,
    level: Manifest,
    unit: str,
    *,
    items: bool = True,
    wanted: Collection[str] | None = None,
) -> dict[str, Row]:
    """One snapshot's own rows and tombstones for `unit` (and `wanted` keys, if given)."""
    rows: dict[str, Row] = {}
    for data_file in files_for(level, unit):
        table = read_table(s3, bucket, data_file, data_columns(level, items))
        rows.update((r.key_hash, r) for r in data_rows(table, level, unit=unit, wanted=wanted))
    for data_file in files_for(level, unit, "tombstones"):
        table = read_table(s3, bucket, data_file, tombstone_columns(level))
        rows.update((r.key_hash, r) for r in tombstone_rows(table, level, unit=unit, wanted=wanted))
    return rows


def chain_rows(
    s3: Any,
    bucket: str,
    chain: Chain | tuple[Manifest, ...],
    unit: str,
    *,
    items: bool = True,
    wanted: Collection[str] | None = None,
) -> dict[str, Row]:
    """The chain's resolved rows for `unit`: per key, the newest level's row; removals are
    rows whose change is a removal (callers drop them, or fold against them). With
    `items=False` rows carry only what orders changes (no image: never write them out)."""
    levels = chain.levels if isinstance(chain, Chain) else chain
    if wanted is not None and not wanted:
        return {}
    rows: dict[str, Row] = {}
    for level in levels:  # oldest first: a newer level's row replaces an older one's
        rows.update(level_rows(s3, bucket, level, unit, items=items, wanted=wanted))
    return rows
