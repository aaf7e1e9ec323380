"""The state of a table as of T: a base snapshot (with its chain) plus the changes written
after it.

Shared by compaction (which writes the state, or what changed, as a snapshot), restore
(which writes it to DynamoDB) and query (which serves it to SQL). Work is split into units
by key-hash prefix; each unit is listed, read and folded on its own, so memory is bounded
by a unit. The base rows come from compaction.chain (the chain resolved per unit). The
changes after the base come from the change journal when it covers the window (read once
per plan, split by unit), else from listing the item versions (compaction/journal.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
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
from compaction.fold import (
    LAST_MODIFIED_RESOLUTION_US,
    KeyPlan,
    Row,
    Version,
    candidates_for,
    fold_winner,
)
from compaction.journal import (
    JOURNAL,
    LISTING,
    ChangeSource,
    JournalEntry,
    JournalWindow,
    choose_source,
    has_journal,
    read_window,
    rows_by_key,
)
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


NO_JOURNAL = ChangeSource(LISTING, "the plan was made without the journal")


@dataclass(frozen=True)
class UnitWork:
    """A unit and its journal changes: the item a unit task is mapped over."""

    unit: str
    journal: tuple[JournalEntry, ...] = ()


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
    source: ChangeSource = NO_JOURNAL
    journal: JournalWindow | None = None  # the window's journal changes, by unit

    @property
    def units(self) -> list[str]:
        return units_for(self.shard_digits)

    def work(self) -> list[UnitWork]:
        """One item per unit, carrying the unit's share of the journal window: what a unit
        task needs besides `shared()` (a distributed worker gets only its own share)."""
        journal = self.journal
        return [UnitWork(u, journal.entries(u) if journal else ()) for u in self.units]

    def shared(self) -> StatePlan:
        """The plan without the journal's changes (each unit's go with its UnitWork)."""
        return dataclasses.replace(self, journal=None)

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
    listing: bool = False,
    skip_corrupt: bool = False,
    read_concurrency: int = 16,
) -> StatePlan:
    """Find the base (newest committed snapshot with as-of <= T, or the snapshot `base_id`
    names, e.g. an older one when the newest is damaged), size the units, choose the
    change source, and read the journal window once when that is the source."""
    # A table whose backup so far is only imported snapshots (import-export) has no items,
    # and a journal-only table has only its journal.
    if (
        not has_objects(s3, bucket, items_prefix(prefix, table))
        and not has_objects(s3, bucket, catalog.snapshots_prefix(prefix, table))
        and not has_journal(s3, bucket, prefix, table)
    ):
        raise NotFoundError(f"no backup of table {table!r} in s3://{bucket}/{prefix}")
    base: Manifest | None
    if base_id is not None and not full:
        base = chosen_snapshot(s3, bucket, prefix, table, base_id, as_of_us)
    else:
        base = None if full else catalog.newest_at_or_before(s3, bucket, prefix, table, as_of_us)
    chain = load_chain(s3, bucket, prefix, table, base).levels if base is not None else ()
    since_us = None if base is None else base_since(base, skew_us)
    estimate = base.item_count if base else _estimate_items(s3, bucket, prefix, table)
    if shard_digits is None:
        shard_digits = auto_shard_digits(estimate)
    source = choose_source(s3, bucket, prefix, table, base, since_us, listing=listing)
    journal = None
    if source.kind != LISTING:
        journal = read_window(
            s3,
            bucket,
            prefix,
            table,
            source.journal_start_us,
            shard_digits,
            concurrency=read_concurrency,
            skip_corrupt=skip_corrupt,
        )
    return StatePlan(
        bucket,
        prefix,
        table,
        as_of_us,
        base,
        since_us,
        shard_digits,
        skew_us,
        estimate,
        chain,
        source,
        journal,
    )


def base_since(base: Manifest, skew_us: int = DEFAULT_CLOCK_SKEW_US) -> int:
    """Every change written at or before this was folded into `base`."""
    return min(base.listing_watermark_us, base.as_of_us) - LAST_MODIFIED_RESOLUTION_US - skew_us


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
    journal_changes: int = 0  # journal lines of the unit folded in
    changed_keys: int = 0
    carried: int = 0
    newest_event_us: int | None = None
    # distinct changes read with event time after the as-of (not in the state; every
    # version written after the as-of is read, so none is missed)
    newer_changes: int = 0
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

    def unit(self, unit: str, journal: Sequence[JournalEntry] | None = None) -> UnitState:
        """The unit's state; `journal` is its share of the journal window (default: from
        the plan, which a distributed task's plan no longer carries)."""
        plan = self._plan
        state = UnitState(unit)
        base_rows, best = self._fold(
            unit, journal, state, lambda fresh: chain_rows(self._s3, plan.bucket, plan.chain, unit)
        )
        rows = dict(base_rows)
        for digest, chosen in best.items():
            if not _differs(chosen, base_rows.get(digest)):
                continue  # the base's own row stays (a copy of its change read again)
            state.changed.add(digest)
            if chosen is None:
                rows.pop(digest, None)
            else:
                rows[digest] = chosen
        state.carried = sum(
            1 for d, r in rows.items() if d not in state.changed and not r.change.is_removal
        )
        ordered = [rows[digest] for digest in sorted(rows)]
        state.rows = [r for r in ordered if not r.change.is_removal]
        state.removed = [r for r in ordered if r.change.is_removal]
        return state

    def changes(self, unit: str, journal: Sequence[JournalEntry] | None = None) -> UnitChanges:
        """Only what changed in `unit` against the base's chain: per key with changes
        written after the base, the winning change if it is not the chain's row. The chain
        is read for those keys alone, and without images (a delta needs no more)."""
        plan = self._plan
        state = UnitState(unit)
        base_rows, best = self._fold(
            unit,
            journal,
            state,
            lambda fresh: chain_rows(
                self._s3, plan.bucket, plan.chain, unit, items=False, wanted=fresh
            ),
        )
        result = UnitChanges(unit, state)
        for digest, chosen in best.items():
            base_row = base_rows.get(digest)
            if chosen is None or not _differs(chosen, base_row):
                continue
            was_live = base_row is not None and not base_row.change.is_removal
            if was_live:
                result.parent_live.add(digest)
            result.rows.append(chosen)
            result.items_delta += int(not chosen.change.is_removal) - int(was_live)
        result.rows.sort(key=lambda r: r.key_hash)
        return result

    def rows_of(
        self, unit: str, wanted: Collection[str], journal: Sequence[JournalEntry] | None = None
    ) -> dict[str, Row | None]:
        """The winning change as of the plan's time (a removal included; None: no change
        yet) of each key in `wanted` (key hashes of `unit`): only their versions are read."""
        plan = self._plan
        keys = set(wanted)
        base_rows, best = self._fold(
            unit,
            journal,
            UnitState(unit),
            lambda fresh: chain_rows(self._s3, plan.bucket, plan.chain, unit, wanted=keys),
            keys,
        )
        return {d: best[d] if d in best else base_rows.get(d) for d in keys}

    def _fold(
        self,
        unit: str,
        journal: Sequence[JournalEntry] | None,
        state: UnitState,
        base_rows_for: Callable[[set[str]], dict[str, Row]],
        wanted: Collection[str] | None = None,
    ) -> tuple[dict[str, Row], dict[str, Row | None]]:
        """(the base rows read, the winner of every key with changes after the base; only
        keys in `wanted`, when given).

        The journal's changes need no read: they are folded first, and the listed
        versions (listing, listing+journal) start from that."""
        plan = self._plan
        if journal is None:
            journal = plan.journal.entries(unit) if plan.journal else ()
        versions = self._list(unit, state) if plan.source.kind != JOURNAL else {}
        if wanted is not None:
            journal = [e for e in journal if e.key_hash in wanted]
            versions = {d: v for d, v in versions.items() if d in wanted}
        state.journal_changes = len(journal)
        journaled = rows_by_key(journal, plan.bucket)
        fresh = set(journaled) | {
            digest
            for digest, listed in versions.items()
            if plan.since_us is None or any(v.last_modified_us > plan.since_us for v in listed)
        }
        base_rows = base_rows_for(fresh)
        start: dict[str, Row | None] = {
            digest: fold_winner(base_rows.get(digest), rows, plan.as_of_us)
            for digest, rows in journaled.items()
        }

        def start_of(digest: str) -> Row | None:
            return start[digest] if digest in start else base_rows.get(digest)

        key_plans = []
        for digest, listed in versions.items():
            candidates = candidates_for(listed, base_rows.get(digest), plan.since_us)
            if candidates:
                key_plans.append(
                    KeyPlan(digest, candidates, plan.as_of_us, plan.skew_us, start_of(digest))
                )
        state.changed_keys = len(set(journaled) | {p.key_hash for p in key_plans})
        self._read_all(key_plans, state)
        best = dict(start)
        for key_plan in key_plans:
            best[key_plan.key_hash] = key_plan.winner(start_of(key_plan.key_hash))
        read = [row for p in key_plans for row in p.read]
        read += [row for grouped in journaled.values() for row in grouped]
        newer: set[tuple[str, int, int]] = set()
        for row in read:
            if row.change.event_time_us <= plan.as_of_us:
                state.newest_event_us = max(state.newest_event_us or 0, row.change.event_time_us)
            else:
                newer.add((row.key_hash, *row.change.order))
        state.newer_changes = len(newer)
        return base_rows, best

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


def _differs(chosen: Row | None, base: Row | None) -> bool:
    """Whether a key's outcome is not the base's. A copy of the base's own change (read
    again from the journal's window, or the base read without images) is the same
    outcome: a change is its key, event time and sequence number."""
    if chosen is None or base is None:
        return chosen is not base
    return chosen.change.order != base.change.order


def read_state(
    s3: Any, plan: StatePlan, read_concurrency: int = 32, *, skip_corrupt: bool = False
) -> Iterator[UnitState]:
    """The state as of the plan's time, unit after unit (memory: one unit at a time)."""
    with ThreadPoolExecutor(read_concurrency, thread_name_prefix="s3-get") as reads:
        reader = StateReader(s3, plan, reads, skip_corrupt=skip_corrupt)
        for unit in plan.units:
            yield reader.unit(unit)
