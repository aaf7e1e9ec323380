"""The state of a table as of T: a base snapshot (with its chain) plus the object versions
after it.

Shared by compaction (which writes the state, or what changed, as a snapshot), restore
(which writes it to DynamoDB) and query (which serves it to SQL). Work is split into units
by key-hash prefix; each unit is listed, read and folded on its own, so memory is bounded
by a unit. The base rows come from compaction.chain (the chain resolved per unit).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptVersionError, NotFoundError, UserInputError
from backup_lambda.layout import (
    SHARD_HEX_DIGITS,
    decode_change,
    format_time_us,
    items_prefix,
    key_hash,
)
from compaction import catalog
from compaction.chain import chain_rows, load_chain
from compaction.fold import LAST_MODIFIED_RESOLUTION_US, KeyPlan, Row, Version, candidates_for
from compaction.manifest import Manifest, SkippedVersion
from compaction.s3errors import translate
from compaction.s3read import get_bytes
from compaction.versions import VersionRef, has_objects, iter_versions

DEFAULT_CLOCK_SKEW_US = 1_000_000
_HASH_HEX = 64
# Units hold about this many items at most (memory per unit), and no more files than needed.
_UNIT_TARGET_ITEMS = 125_000
_PROBE_SHARD = "00"  # 1/256 of the key space
# A unit expected to hold more items than this lists its 16 sub-prefixes in parallel: a
# LIST returns at most 1,000 versions, so one listing of a large unit is a long chain of
# sequential requests.
_SPLIT_LISTING_ITEMS = 2_000
_HEX = "0123456789abcdef"


def auto_shard_digits(estimated_items: int) -> int:
    """Hex digits per unit: 0 -> one unit, 1 -> 16, 2 -> 256, 3 -> 4096."""
    digits = 0
    while digits < 3 and estimated_items > _UNIT_TARGET_ITEMS * 16**digits:
        digits += 1
    return digits


def units_for(digits: int) -> list[str]:
    return [f"{i:0{digits}x}" for i in range(16**digits)] if digits else [""]


def unit_listing_prefix(items_root: str, unit: str) -> str:
    """Where a unit's versions are listed. Keys are <root><hash[:2]>/<hash>.json, so a unit
    of three digits lies inside its shard folder: <root><unit[:2]>/<unit>."""
    if len(unit) <= SHARD_HEX_DIGITS:
        return items_root + unit
    return f"{items_root}{unit[:SHARD_HEX_DIGITS]}/{unit}"


@dataclass(frozen=True)
class StatePlan:
    """What to read for the state as of `as_of_us`: the base and the versions after it."""

    bucket: str
    prefix: str
    table: str
    as_of_us: int
    base: Manifest | None
    since_us: int | None  # versions written at or before this are folded into the base
    shard_digits: int
    skew_us: int = DEFAULT_CLOCK_SKEW_US
    estimated_items: int = 0  # the base's items, else an estimate from one LIST
    chain: tuple[Manifest, ...] = ()  # the base's chain, its full snapshot first (base last)

    @property
    def units(self) -> list[str]:
        return units_for(self.shard_digits)

    def listing_prefixes(self, unit: str) -> list[str]:
        """Key-hash prefixes to list for `unit`: the unit, or its 16 sub-prefixes when the
        unit is expected to be large (they are listed in parallel, in this order)."""
        per_unit = self.estimated_items / 16**self.shard_digits
        return [unit + h for h in _HEX] if per_unit > _SPLIT_LISTING_ITEMS else [unit]


def plan_state(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    as_of_us: int,
    *,
    full: bool = False,
    shard_digits: int | None = None,
    skew_us: int = DEFAULT_CLOCK_SKEW_US,
    base_id: str | None = None,
) -> StatePlan:
    """Find the base (newest committed snapshot with as-of <= T, or the snapshot `base_id`
    names, e.g. an older one when the newest is damaged) and size the units."""
    # A table whose backup so far is only imported snapshots (import-export) has no items.
    if not has_objects(s3, bucket, items_prefix(prefix, table)) and not has_objects(
        s3, bucket, catalog.snapshots_prefix(prefix, table)
    ):
        raise NotFoundError(f"no backup of table {table!r} in s3://{bucket}/{prefix}")
    base: Manifest | None
    if base_id is not None and not full:
        base = chosen_snapshot(s3, bucket, prefix, table, base_id, as_of_us)
    else:
        base = None if full else catalog.newest_at_or_before(s3, bucket, prefix, table, as_of_us)
    chain = load_chain(s3, bucket, prefix, table, base).levels if base is not None else ()
    since_us = None
    if base is not None:
        since_us = (
            min(base.listing_watermark_us, base.as_of_us) - LAST_MODIFIED_RESOLUTION_US - skew_us
        )
    estimate = base.item_count if base else _estimate_items(s3, bucket, prefix, table)
    if shard_digits is None:
        shard_digits = auto_shard_digits(estimate)
    return StatePlan(
        bucket, prefix, table, as_of_us, base, since_us, shard_digits, skew_us, estimate, chain
    )


def chosen_snapshot(
    s3: Any, bucket: str, prefix: str, table: str, snapshot: str, as_of_us: int | None
) -> Manifest:
    """The committed snapshot `snapshot` (--snapshot ID), which must be as of T or earlier."""
    manifest = catalog.load_manifest(s3, bucket, prefix, table, snapshot)
    if manifest is None:
        raise NotFoundError(
            f"--snapshot {snapshot}: no committed snapshot with that id of table {table!r} "
            "(`ddb-backup snapshots` lists them)"
        )
    if as_of_us is not None and manifest.as_of_us > as_of_us:
        raise UserInputError(
            f"--snapshot {snapshot} is as of {format_time_us(manifest.as_of_us)}, after the "
            f"requested time {format_time_us(as_of_us)}: choose an earlier snapshot"
        )
    return manifest


def _estimate_items(s3: Any, bucket: str, prefix: str, table: str) -> int:
    """Keys in one 1/256 slice (one LIST call, up to 1,000 keys) times 256."""
    root = items_prefix(prefix, table) + _PROBE_SHARD
    try:
        response = s3.list_objects_v2(Bucket=bucket, Prefix=root, MaxKeys=1000)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, root) from e
    return int(response.get("KeyCount", 0)) * 256


@dataclass
class UnitState:
    """One unit's rows as of T (sorted by key hash) and what it cost to get them."""

    unit: str
    rows: list[Row] = field(default_factory=list)  # live items
    removed: list[Row] = field(default_factory=list)  # tombstones: winning removals
    listed: int = 0
    read: int = 0
    changed_keys: int = 0
    carried: int = 0
    newest_event_us: int | None = None
    skipped: list[SkippedVersion] = field(default_factory=list)
    # keys whose row (or tombstone, or absence) is not the base's: what changed after it
    changed: set[str] = field(default_factory=set)


@dataclass
class UnitChanges:
    """What changed in one unit against the base's chain: the changed keys' winning rows
    (removals included), which of them were live in the chain, and the item count's change."""

    unit: str
    state: UnitState  # listing and reading counts, newest event, skipped versions
    rows: list[Row] = field(default_factory=list)
    parent_live: set[str] = field(default_factory=set)
    items_delta: int = 0


class StateReader:
    """Lists, reads and folds one unit at a time; GETs run on the `reads` executor."""

    def __init__(
        self, s3: Any, plan: StatePlan, reads: Executor, *, skip_corrupt: bool = False
    ) -> None:
        self._s3 = s3
        self._plan = plan
        self._reads = reads
        self._skip_corrupt = skip_corrupt

    def unit(self, unit: str) -> UnitState:
        plan = self._plan
        state = UnitState(unit)
        versions = self._list(unit, state)
        base_rows = chain_rows(self._s3, plan.bucket, plan.chain, unit)
        key_plans = self._plans(versions, base_rows)
        state.changed_keys = len(key_plans)
        self._read_all(key_plans, state)
        rows = dict(base_rows)
        for key_plan in key_plans:
            base_row = base_rows.get(key_plan.key_hash)
            chosen = key_plan.winner(base_row)
            if chosen is not base_row:
                state.changed.add(key_plan.key_hash)
            if chosen is None:
                rows.pop(key_plan.key_hash, None)
            else:
                rows[key_plan.key_hash] = chosen
            for row in key_plan.read:
                if row.change.event_time_us <= plan.as_of_us:
                    state.newest_event_us = max(
                        state.newest_event_us or 0, row.change.event_time_us
                    )
        changed = {p.key_hash for p in key_plans}
        state.carried = sum(
            1 for d, r in rows.items() if d not in changed and not r.change.is_removal
        )
        ordered = [rows[digest] for digest in sorted(rows)]
        state.rows = [r for r in ordered if not r.change.is_removal]
        state.removed = [r for r in ordered if r.change.is_removal]
        return state

    def changes(self, unit: str) -> UnitChanges:
        """Only what changed in `unit` against the base's chain: per key with versions
        written after the base, the winning change if it is not the chain's row. The chain
        is read for those keys alone, and without images (a delta needs no more)."""
        plan = self._plan
        state = UnitState(unit)
        versions = self._list(unit, state)
        fresh = {
            digest
            for digest, listed in versions.items()
            if plan.since_us is None or any(v.last_modified_us > plan.since_us for v in listed)
        }
        base_rows = chain_rows(self._s3, plan.bucket, plan.chain, unit, items=False, wanted=fresh)
        key_plans = self._plans(versions, base_rows)
        state.changed_keys = len(key_plans)
        self._read_all(key_plans, state)
        result = UnitChanges(unit, state)
        for key_plan in key_plans:
            base_row = base_rows.get(key_plan.key_hash)
            chosen = key_plan.winner(base_row)
            for row in key_plan.read:
                if row.change.event_time_us <= plan.as_of_us:
                    state.newest_event_us = max(
                        state.newest_event_us or 0, row.change.event_time_us
                    )
            if chosen is None or chosen is base_row:
                continue
            was_live = base_row is not None and not base_row.change.is_removal
            if was_live:
                result.parent_live.add(key_plan.key_hash)
            result.rows.append(chosen)
            result.items_delta += int(not chosen.change.is_removal) - int(was_live)
        result.rows.sort(key=lambda r: r.key_hash)
        return result

    def _plans(
        self, versions: dict[str, list[Version]], base_rows: dict[str, Row]
    ) -> list[KeyPlan]:
        plan = self._plan
        key_plans = []
        for digest, listed in versions.items():
            base_row = base_rows.get(digest)
            candidates = candidates_for(listed, base_row, plan.since_us)
            if candidates:
                key_plans.append(
                    KeyPlan(digest, candidates, plan.as_of_us, plan.skew_us, best=base_row)
                )
        return key_plans

    def _list(self, unit: str, state: UnitState) -> dict[str, list[Version]]:
        versions: dict[str, list[Version]] = {}
        root = items_prefix(self._plan.prefix, self._plan.table)
        prefixes = [unit_listing_prefix(root, p) for p in self._plan.listing_prefixes(unit)]
        if len(prefixes) == 1:
            refs: Iterable[VersionRef] = iter_versions(self._s3, self._plan.bucket, prefixes[0])
        else:  # in parallel on the read threads (idle until the listing is done)
            parts = self._reads.map(
                lambda where: list(iter_versions(self._s3, self._plan.bucket, where)), prefixes
            )
            refs = itertools.chain.from_iterable(parts)
        for ref in refs:
            name = ref.key[len(root) :]
            digest = name[3:-5]  # "<hh>/<hash>.json"
            if ref.is_delete_marker or len(digest) != _HASH_HEX or not name.endswith(".json"):
                continue
            state.listed += 1
            stamp = int(ref.last_modified.timestamp() * 1_000_000)
            versions.setdefault(digest, []).append(Version(ref.key, ref.version_id, stamp))
        return versions

    def _read_all(self, plans: list[KeyPlan], state: UnitState) -> None:
        """Round by round: each plan names its next reads until no version can win."""
        active = plans
        while active:
            batch = [(plan, version) for plan in active for version in plan.next_batch()]
            rows = self._reads.map(lambda pv: self._read(pv[1], pv[0], state), batch)
            for (plan, _), row in zip(batch, rows, strict=True):
                state.read += 1
                if row is not None:
                    plan.accept(row)
            active = list({id(plan): plan for plan, _ in batch}.values())

    def _read(self, version: Version, plan: KeyPlan, state: UnitState) -> Row | None:
        bucket = self._plan.bucket
        where = f"{version.key} (version {version.version_id})"
        try:
            body = get_bytes(self._s3, bucket, version.key, version.version_id)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, bucket, where) from e
        try:
            change = decode_change(body, f"s3://{bucket}/{where}")
            if key_hash(change.keys) != plan.key_hash:
                raise CorruptVersionError(f"s3://{bucket}/{where}: its keys do not hash to its key")
        except CorruptVersionError as e:
            if not self._skip_corrupt:
                raise CorruptVersionError(
                    f"{e}; --skip-corrupt skips unreadable item versions (and records them)"
                ) from e
            state.skipped.append(SkippedVersion(version.key, version.version_id, str(e)))
            return None
        return Row(plan.key_hash, change, version.version_id, version.last_modified_us)


def read_state(
    s3: Any, plan: StatePlan, read_concurrency: int = 32, *, skip_corrupt: bool = False
) -> Iterator[UnitState]:
    """The state as of the plan's time, unit after unit (memory: one unit at a time)."""
    with ThreadPoolExecutor(read_concurrency, thread_name_prefix="s3-get") as reads:
        reader = StateReader(s3, plan, reads, skip_corrupt=skip_corrupt)
        for unit in plan.units:
            yield reader.unit(unit)
