"""Property tests of the pure fold (compaction.fold): no I/O, only the model of a bucket.

The model: a history of changes of a few item keys, each written to S3 as one object
version at a simulated write time (at or after its event time; S3's clock may lag
DynamoDB's by up to the allowed skew, or run ahead), with LastModified truncated to the
second as S3 reports it. Late writes land long after their event; replays write the same
change again later, also stale re-drives written after newer changes of the same item.

The oracle is the definition in DESIGN.md: the state as of T holds, for each key, the
change with the greatest (event time, int(sequence number)) among its changes with event
time <= T, and nothing if that change is a removal.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from backup_lambda.ddbjson import Item
from backup_lambda.layout import Change, key_hash
from compaction.fold import (
    LAST_MODIFIED_RESOLUTION_US,
    KeyPlan,
    Row,
    Version,
    candidates_for,
    could_win,
    fold_key,
)

SEC = 1_000_000
BASE_US = 1_700_000_000 * SEC
KEYS: list[Item] = [
    {"pk": {"S": "a"}},
    {"pk": {"S": "b"}, "sk": {"N": "1"}},
    {"pk": {"S": "b"}, "sk": {"N": "10"}},
    {"pk": {"B": "AAE="}},
]
EVENT_NAMES = ["INSERT", "MODIFY", "REMOVE"]

# Sequence numbers of varying length, so that string order differs from integer order
# ("9" < "10" as integers, "10" < "9" as strings); real ones have 20-40 digits.
SEQUENCES = st.one_of(
    st.integers(1, 120),
    st.integers(10**19, 10**20 + 50),
    st.integers(10**20 - 50, 10**21),
)
# Event times cluster in a few seconds, often on the same second.
EVENT_OFFSETS = st.builds(
    lambda s, us: s * SEC + us,
    st.integers(0, 8),
    st.sampled_from([0, 0, 0, 1, 499_999, 999_999]),
)
# How long after its event a change reaches S3: promptly, or late (a lagging shard).
DELAYS = st.one_of(st.integers(0, 2 * SEC), st.integers(10 * SEC, 60 * SEC))
SKEWS = st.sampled_from([0, 1, 250_000, SEC, 3 * SEC])

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Written:
    """One stored object version: which change it holds and when it was really written."""

    change: Change
    version: Version
    true_write_us: int
    key_hash: str

    def row(self) -> Row:
        return Row(
            self.key_hash, self.change, self.version.version_id, self.version.last_modified_us
        )


@dataclass
class History:
    skew_us: int  # the compactor's allowed clock skew
    s3_behind_us: int  # how far S3's clock lags DynamoDB's (negative: ahead); <= skew_us
    changes: list[Change] = field(default_factory=list)  # distinct changes
    written: list[Written] = field(default_factory=list)  # every stored version
    first_write: dict[int, int] = field(default_factory=dict)  # id(change) -> true write

    def write(self, change: Change, true_write_us: int) -> Written:
        s3_time = true_write_us - self.s3_behind_us
        last_modified = s3_time // LAST_MODIFIED_RESOLUTION_US * LAST_MODIFIED_RESOLUTION_US
        number = len(self.written)
        # Opaque version ids whose order has nothing to do with write order, like S3's.
        version_id = hashlib.sha256(f"v{number}".encode()).hexdigest()[:20]
        digest = key_hash(change.keys)
        key = f"items/{digest}.json"
        stored = Written(change, Version(key, version_id, last_modified), true_write_us, digest)
        self.written.append(stored)
        self.first_write.setdefault(id(change), true_write_us)
        return stored

    def add(self, change: Change, true_write_us: int) -> Change:
        self.changes.append(change)
        self.write(change, true_write_us)
        return change


def make_change(keys: Item, name: str, event_us: int, sequence: str, tag: str = "") -> Change:
    image = None if name == "REMOVE" else {**keys, "v": {"S": f"{name}@{sequence}{tag}"}}
    return Change(
        table="t",
        keys=keys,
        event_name=name,  # type: ignore[arg-type]
        event_id=f"id-{sequence}",
        sequence_number=sequence,
        event_time_us=event_us,
        new_image=image,
    )


@st.composite
def histories(draw: st.DrawFn, max_changes: int = 14, replays: bool = True) -> History:
    skew_us = draw(SKEWS)
    s3_behind = draw(st.sampled_from(sorted({0, skew_us, -2 * SEC, skew_us // 2})))
    history = History(skew_us=skew_us, s3_behind_us=s3_behind)
    count = draw(st.integers(0, max_changes))
    sequences = draw(st.lists(SEQUENCES, min_size=count, max_size=count, unique=True))
    for sequence in sequences:
        keys = draw(st.sampled_from(KEYS))
        name = draw(st.sampled_from(EVENT_NAMES))
        event_us = BASE_US + draw(EVENT_OFFSETS)
        history.add(make_change(keys, name, event_us, str(sequence)), event_us + draw(DELAYS))
    if replays and history.changes:
        for _ in range(draw(st.integers(0, 4))):
            change = draw(st.sampled_from(history.changes))
            # At any later time: also a stale re-drive, after newer changes were written.
            again = history.first_write[id(change)] + draw(st.integers(0, 90 * SEC))
            history.write(change, again)
    return history


def as_of_times() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(BASE_US - SEC, BASE_US + 12 * SEC),
        st.builds(lambda s: BASE_US + s * SEC, st.integers(-1, 12)),
    )


# --- the oracle and the procedures under test -------------------------------------------


def oracle(changes: Iterable[Change], as_of_us: int) -> dict[str, Change]:
    """DESIGN.md, literally: greatest (event time, int(seq)) at or before T; REMOVE: absent."""
    best: dict[str, Change] = {}
    for change in changes:
        if change.event_time_us > as_of_us:
            continue
        digest = key_hash(change.keys)
        order = (change.event_time_us, int(change.sequence_number))
        if digest not in best or order > (
            best[digest].event_time_us,
            int(best[digest].sequence_number),
        ):
            best[digest] = change
    return {digest: c for digest, c in best.items() if c.event_name != "REMOVE"}


def by_key(written: Iterable[Written]) -> dict[str, list[Written]]:
    grouped: dict[str, list[Written]] = defaultdict(list)
    for stored in written:
        grouped[stored.key_hash].append(stored)
    return grouped


def full_fold(written: Iterable[Written], as_of_us: int) -> dict[str, Row]:
    state = {}
    for digest, stored in by_key(written).items():
        row = fold_key(None, [s.row() for s in stored], as_of_us)
        if row is not None:
            state[digest] = row
    return state


@dataclass
class RunResult:
    winners: dict[str, Row]  # what a snapshot keeps: live rows and tombstones (removals)
    reads: int = 0
    reads_per_key: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> dict[str, Row]:
        """The live items."""
        return {d: row for d, row in self.winners.items() if not row.change.is_removal}


def run(
    written: Iterable[Written],
    as_of_us: int,
    skew_us: int,
    base: RunResult | None = None,
    since_us: int | None = None,
    *,
    tombstones: bool = True,
) -> RunResult:
    """What the compactor does per key: candidates, then the KeyPlan read rounds.

    The base is the previous run's winners: with `tombstones`, removals too (as snapshots
    keep them); without, only live rows (a base with no row for a key that has versions).
    """
    start = {} if base is None else base.winners if tombstones else base.state
    result = RunResult(dict(start))
    for digest, stored in by_key(written).items():
        base_row = start.get(digest)
        candidates = candidates_for([s.version for s in stored], base_row, since_us)
        if not candidates:
            continue
        bodies = {s.version.version_id: s for s in stored}
        plan = KeyPlan(digest, candidates, as_of_us, skew_us, best=base_row)
        reads = 0
        while batch := plan.next_batch():
            for version in batch:
                reads += 1
                assert reads <= len(candidates), "a version was read twice"
                plan.accept(bodies[version.version_id].row())
        result.reads += reads
        result.reads_per_key[digest] = reads
        live = plan.result(base_row)
        winner = plan.winner(base_row)
        assert live == (None if winner is None or winner.change.is_removal else winner)
        if winner is None:
            result.winners.pop(digest, None)
        else:
            result.winners[digest] = winner
    return result


def changes_of(state: dict[str, Row]) -> dict[str, Change]:
    return {digest: row.change for digest, row in state.items()}


def chosen(state: dict[str, Row]) -> dict[str, tuple[Change, str]]:
    return {digest: (row.change, row.version_id) for digest, row in state.items()}


def since_for(as_of_us: int, watermark_us: int, skew_us: int) -> int:
    return min(watermark_us, as_of_us) - LAST_MODIFIED_RESOLUTION_US - skew_us


# --- properties --------------------------------------------------------------------------


@FUZZ
@given(histories(), as_of_times())
def test_fold_key_over_all_versions_is_the_oracle(history: History, as_of_us: int) -> None:
    assert changes_of(full_fold(history.written, as_of_us)) == oracle(history.changes, as_of_us)


@FUZZ
@given(histories(), as_of_times(), st.integers(0, 5 * SEC))
def test_read_plan_skips_only_versions_that_cannot_win(
    history: History, as_of_us: int, extra_skew_us: int
) -> None:
    # Any configured skew at least the real one is safe; more skew only reads more.
    skew_us = history.skew_us + extra_skew_us
    result = run(history.written, as_of_us, skew_us)
    assert changes_of(result.state) == oracle(history.changes, as_of_us)
    # The very same stored version as the full fold, so every run picks the same one.
    assert chosen(result.state) == chosen(full_fold(history.written, as_of_us))
    assert result.reads <= len(history.written)
    listed = len(history.written)
    event(f"read {result.reads} of {listed} versions" if listed <= 3 else "read <= listed")
    if listed:
        event(f"fraction read: {round(result.reads / listed, 1)}")


@settings(FUZZ, max_examples=300)
@given(
    histories(),
    st.lists(
        st.tuples(st.integers(-SEC, 12 * SEC), st.integers(0, 80 * SEC), st.integers(0, 5 * SEC)),
        min_size=1,
        max_size=3,
    ),
    st.integers(-SEC, 14 * SEC),
    st.booleans(),
)
def test_incremental_over_any_split_equals_full(
    history: History, splits: list[tuple[int, int, int]], final_offset: int, tombstones: bool
) -> None:
    """A chain of runs at T1 <= T2 <= ... each incremental from the previous one.

    Run i reads its clock (the watermark it records) at L_i >= T_i, then lists: it sees
    every version written by then, plus those written while the listing ran (up to
    L_i + lag_i), with S3's clock behind ours by up to the skew. The last run sees every
    version. Late writes with event time <= T_i written after run i, removed keys that get
    a late older insert, and re-inserts are all in the generated histories.
    """
    skew = history.skew_us
    points = []
    as_of = listing = cutoff = BASE_US - 10 * SEC
    for as_of_offset, listing_delay, lag in sorted(splits):
        as_of = max(as_of, BASE_US + as_of_offset)
        listing = max(listing, as_of + listing_delay)
        cutoff = max(cutoff, listing + lag)
        points.append((as_of, listing, cutoff))
    final_as_of = max(as_of, BASE_US + final_offset)

    base: RunResult | None = None
    since = None
    for as_of_us, listing_us, cutoff_us in points:
        seen = [s for s in history.written if s.true_write_us <= cutoff_us]
        current = run(seen, as_of_us, skew, base=base, since_us=since, tombstones=tombstones)
        assert chosen(current.state) == chosen(full_fold(seen, as_of_us))
        if tombstones:  # the same tombstones too, so the next run folds against the same
            assert chosen(current.winners) == chosen(run(seen, as_of_us, skew).winners)
        base, since = current, since_for(as_of_us, listing_us, skew)

    incremental = run(
        history.written, final_as_of, skew, base=base, since_us=since, tombstones=tombstones
    )
    full = run(history.written, final_as_of, skew)
    assert chosen(incremental.state) == chosen(full.state)
    if tombstones:
        assert chosen(incremental.winners) == chosen(full.winners)
    assert changes_of(incremental.state) == oracle(history.changes, final_as_of)
    late = [
        s
        for s in history.written
        if s.change.event_time_us <= points[-1][0] and s.true_write_us > points[-1][2]
    ]
    event("late writes after the base" if late else "no late write after the base")


@FUZZ
@given(histories(replays=False), st.data())
def test_replays_change_nothing(history: History, data: st.DataObject) -> None:
    as_of_us = data.draw(as_of_times(), label="as_of")
    before_full = changes_of(full_fold(history.written, as_of_us))
    before_plan = changes_of(run(history.written, as_of_us, history.skew_us).state)
    base_as_of = data.draw(st.integers(BASE_US - SEC, as_of_us), label="base as-of")
    base_listing = base_as_of + data.draw(st.integers(0, 80 * SEC), label="base listing")
    if history.changes:
        for _ in range(data.draw(st.integers(1, 6), label="replays")):
            change = data.draw(st.sampled_from(history.changes), label="replayed")
            delay = data.draw(st.integers(0, 120 * SEC), label="replay delay")
            history.write(change, history.first_write[id(change)] + delay)
    after_full = changes_of(full_fold(history.written, as_of_us))
    after_plan = changes_of(run(history.written, as_of_us, history.skew_us).state)
    assert before_full == after_full == before_plan == after_plan
    assert after_full == oracle(history.changes, as_of_us)
    # Also when the replays arrive after a snapshot: the next incremental run is unchanged.
    seen = [s for s in history.written if s.true_write_us <= base_listing]
    base = run(seen, base_as_of, history.skew_us)
    since = since_for(base_as_of, base_listing, history.skew_us)
    incremental = run(history.written, as_of_us, history.skew_us, base=base, since_us=since)
    assert changes_of(incremental.state) == before_full


@FUZZ
@given(
    st.lists(SEQUENCES, min_size=2, max_size=6, unique=True),
    st.randoms(use_true_random=False),
    st.sampled_from([0, 1, 999_999]),
)
def test_same_second_changes_order_by_sequence_number_as_integers(
    sequences: list[int], rnd: object, micros: int
) -> None:
    keys = KEYS[0]
    event_us = BASE_US + 3 * SEC + micros
    history = History(skew_us=SEC, s3_behind_us=0)
    changes = [make_change(keys, "MODIFY", event_us, str(s)) for s in sequences]
    order = list(changes)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for i, change in enumerate(order):  # written in any order, some late
        history.add(change, event_us + i * 7 * SEC // 2)
    winner = max(changes, key=lambda c: int(c.sequence_number))
    for as_of_us in (event_us, event_us + 100 * SEC):
        assert changes_of(full_fold(history.written, as_of_us)) == {key_hash(keys): winner}
        assert changes_of(run(history.written, as_of_us, SEC).state) == {key_hash(keys): winner}
    assert run(history.written, event_us - 1, SEC).state == {}


# --- examples: the cases the properties must cover, spelled out ---------------------------


def test_integer_not_string_order_of_sequence_numbers() -> None:
    history = History(skew_us=SEC, s3_behind_us=0)
    keys = KEYS[0]
    ten = history.add(make_change(keys, "MODIFY", BASE_US, "10"), BASE_US)
    history.add(make_change(keys, "MODIFY", BASE_US, "9"), BASE_US + 5 * SEC)  # written last
    assert changes_of(full_fold(history.written, BASE_US)) == {key_hash(keys): ten}
    assert changes_of(run(history.written, BASE_US, SEC).state) == {key_hash(keys): ten}
    long = history.add(make_change(keys, "MODIFY", BASE_US, "100000000000000000000"), BASE_US)
    history.add(make_change(keys, "MODIFY", BASE_US, "99999999999999999999"), BASE_US + 9 * SEC)
    assert changes_of(run(history.written, BASE_US, SEC).state) == {key_hash(keys): long}


def test_removal_and_reinsert() -> None:
    history = History(skew_us=SEC, s3_behind_us=0)
    keys = KEYS[1]
    first = history.add(make_change(keys, "INSERT", BASE_US + 1 * SEC, "1"), BASE_US + 1 * SEC)
    history.add(make_change(keys, "REMOVE", BASE_US + 2 * SEC, "2"), BASE_US + 2 * SEC)
    again = history.add(make_change(keys, "INSERT", BASE_US + 3 * SEC, "3"), BASE_US + 3 * SEC)
    digest = key_hash(keys)
    expected = {
        BASE_US: {},
        BASE_US + 1 * SEC: {digest: first},
        BASE_US + 2 * SEC: {},
        BASE_US + 2 * SEC + 999_999: {},
        BASE_US + 3 * SEC: {digest: again},
    }
    for as_of_us, state in expected.items():
        assert changes_of(full_fold(history.written, as_of_us)) == state
        assert changes_of(run(history.written, as_of_us, SEC).state) == state
    # Incremental from the removal: the re-insert brings the item back.
    base = run(history.written[:2], BASE_US + 2 * SEC, SEC)
    assert base.state == {}
    since = since_for(BASE_US + 2 * SEC, BASE_US + 2 * SEC, SEC)
    incremental = run(history.written, BASE_US + 5 * SEC, SEC, base=base, since_us=since)
    assert changes_of(incremental.state) == {digest: again}


@pytest.mark.parametrize("tombstones", [True, False])
def test_removed_key_stays_removed_when_an_older_insert_arrives_late(tombstones: bool) -> None:
    """Remove at 5 s; snapshot at 6 s; then an insert with event time 3 s lands at 100 s."""
    history = History(skew_us=SEC, s3_behind_us=0)
    keys = KEYS[2]
    history.add(make_change(keys, "INSERT", BASE_US + 1 * SEC, "1"), BASE_US + 1 * SEC)
    removal = history.add(make_change(keys, "REMOVE", BASE_US + 5 * SEC, "5"), BASE_US + 5 * SEC)
    base = run(history.written, BASE_US + 6 * SEC, SEC)
    assert base.state == {}
    assert changes_of(base.winners) == {key_hash(keys): removal}  # the tombstone
    history.add(make_change(keys, "INSERT", BASE_US + 3 * SEC, "3"), BASE_US + 100 * SEC)
    since = since_for(BASE_US + 6 * SEC, BASE_US + 7 * SEC, SEC)
    versions = [s.version for s in history.written]
    if tombstones:
        # The tombstone bounds the older versions: only those written since are candidates.
        assert candidates_for(versions, base.winners[key_hash(keys)], since) == versions[1:]
    else:
        # No row at all in the base but older versions: fold it from all of them.
        assert candidates_for(versions, None, since) == versions
    incremental = run(
        history.written, BASE_US + 200 * SEC, SEC, base=base, since_us=since, tombstones=tombstones
    )
    assert incremental.state == {}
    assert incremental.reads == 2  # the late insert, then the removal; the rest cannot win
    assert full_fold(history.written, BASE_US + 200 * SEC) == {}


def test_late_write_covered_by_an_earlier_snapshot_lands_in_the_next_one() -> None:
    history = History(skew_us=SEC, s3_behind_us=0)
    keys = KEYS[0]
    digest = key_hash(keys)
    old = history.add(make_change(keys, "INSERT", BASE_US + 1 * SEC, "1"), BASE_US + 1 * SEC)
    base = run(history.written, BASE_US + 10 * SEC, SEC)  # built at 11 s
    assert changes_of(base.state) == {digest: old}
    late = history.add(make_change(keys, "MODIFY", BASE_US + 8 * SEC, "8"), BASE_US + 300 * SEC)
    since = since_for(BASE_US + 10 * SEC, BASE_US + 11 * SEC, SEC)
    incremental = run(history.written, BASE_US + 20 * SEC, SEC, base=base, since_us=since)
    assert changes_of(incremental.state) == {digest: late}
    assert incremental.reads == 1
    # A stale re-drive of the first change, written last, changes nothing.
    history.write(old, BASE_US + 400 * SEC)
    again = run(history.written, BASE_US + 20 * SEC, SEC, base=base, since_us=since)
    assert changes_of(again.state) == {digest: late}


def test_new_key_after_base_needs_no_older_versions() -> None:
    history = History(skew_us=SEC, s3_behind_us=0)
    history.add(make_change(KEYS[0], "INSERT", BASE_US, "1"), BASE_US)
    base = run(history.written, BASE_US + 5 * SEC, SEC)  # listed at 6 s
    fresh = history.add(make_change(KEYS[3], "INSERT", BASE_US + 9 * SEC, "2"), BASE_US + 9 * SEC)
    since = since_for(BASE_US + 5 * SEC, BASE_US + 5 * SEC, SEC)
    incremental = run(history.written, BASE_US + 20 * SEC, SEC, base=base, since_us=since)
    assert incremental.reads == 1  # the untouched key is carried, not read
    assert changes_of(incremental.state)[key_hash(KEYS[3])] == fresh
    assert len(incremental.state) == 2


@FUZZ
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=6),
    st.integers(0, 2 * SEC),
    st.sampled_from([0, 250_000, SEC]),
)
def test_ordinary_traffic_reads_one_version_per_key(
    gaps_s: list[int], jitter_us: int, skew_us: int
) -> None:
    """Changes written promptly, each more than 1 s + skew after the previous: one GET."""
    history = History(skew_us=skew_us, s3_behind_us=0)
    keys = KEYS[0]
    at = BASE_US
    for i, gap in enumerate(gaps_s):
        at += (gap + 2) * SEC + skew_us + (jitter_us if i else 0)
        history.add(make_change(keys, "MODIFY", at, str(i + 1)), at + jitter_us % 500_000)
    result = run(history.written, at + 60 * SEC, skew_us)
    assert result.reads == 1
    assert changes_of(result.state) == oracle(history.changes, at + 60 * SEC)


def test_could_win_bounds() -> None:
    keys = KEYS[0]
    best = Row(key_hash(keys), make_change(keys, "MODIFY", BASE_US + 5 * SEC, "7"), "v", 0)
    assert could_win(Version("k", "x", BASE_US), None, 0)
    # Written within the second of best's event: may carry the same event time.
    assert could_win(Version("k", "x", BASE_US + 4 * SEC + 1), best, 0)
    assert not could_win(Version("k", "x", BASE_US + 4 * SEC), best, 0)
    assert could_win(Version("k", "x", BASE_US + 4 * SEC), best, 1)
    assert not could_win(Version("k", "x", BASE_US + 3 * SEC), best, SEC)


@pytest.mark.parametrize("seen_first", [True, False])
def test_copies_of_one_change_keep_the_first_write(seen_first: bool) -> None:
    history = History(skew_us=SEC, s3_behind_us=0)
    change = make_change(KEYS[0], "INSERT", BASE_US, "5")
    writes = [BASE_US, BASE_US + 30 * SEC]
    history.add(change, writes[0] if seen_first else writes[1])
    history.write(change, writes[1] if seen_first else writes[0])
    first = min(history.written, key=lambda s: s.version.last_modified_us)
    state = run(history.written, BASE_US + 60 * SEC, SEC).state
    assert state[key_hash(KEYS[0])].version_id == first.version.version_id
