"""Property tests of the journal window (compaction.journal.window_start): no I/O.

The model: every change is first journaled (a journal object written at some time j), then
written as an item version up to the write lead later (a Lambda journals its batch, then
writes its items within its invocation). Replays journal and write the same change again
later; a crash between the two writes leaves a journal copy whose item copy comes only with
the retry. S3's LastModified is truncated to the second and may lag our clock by the skew.

A chain of compactions, each incremental from the one before, finds the changes after its
base either by listing item versions (the KeyPlan reads) or from the journal window that
`window_start` gives; the last one must equal the oracle, whatever the mix of paths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_lambda.journal import WRITE_LEAD_US
from backup_lambda.layout import Change, key_hash
from compaction import journal as journal_module
from compaction.fold import (
    LAST_MODIFIED_RESOLUTION_US,
    KeyPlan,
    Row,
    Version,
    candidates_for,
    fold_winner,
)
from compaction.journal import JOURNAL, LISTING, window_start
from compaction.manifest import Counts, Manifest
from tests.compaction.test_fold import (
    BASE_US,
    EVENT_NAMES,
    FUZZ,
    KEYS,
    SEC,
    SEQUENCES,
    make_change,
    oracle,
)

LEAD = WRITE_LEAD_US


@dataclass(frozen=True)
class Copy:
    """One stored copy of a change: an item version or a journal line."""

    change: Change
    true_us: int  # when it was really written
    last_modified_us: int
    version_id: str

    def row(self) -> Row:
        return Row(key_hash(self.change.keys), self.change, self.version_id, self.last_modified_us)


@dataclass
class Model:
    skew_us: int
    s3_behind_us: int
    changes: list[Change] = field(default_factory=list)
    items: list[Copy] = field(default_factory=list)
    journal: list[Copy] = field(default_factory=list)

    def _copy(self, change: Change, true_us: int, kind: str) -> Copy:
        s3_time = true_us - self.s3_behind_us
        modified = s3_time // LAST_MODIFIED_RESOLUTION_US * LAST_MODIFIED_RESOLUTION_US
        number = len(self.items) + len(self.journal)
        version = hashlib.sha256(f"{kind}{number}".encode()).hexdigest()[:16]
        return Copy(change, true_us, modified, version)

    def write(self, change: Change, journal_us: int, item_delay_us: int | None) -> None:
        """Journal at `journal_us`, then (unless the writer died: None) the item version."""
        self.journal.append(self._copy(change, journal_us, "j"))
        if item_delay_us is not None:
            self.items.append(self._copy(change, journal_us + item_delay_us, "i"))


# How long after the journal object its item version is written: at once, seconds later,
# or close to the write lead (a slow invocation).
ITEM_DELAYS = st.one_of(
    st.integers(0, 2 * SEC), st.integers(10 * SEC, 120 * SEC), st.integers(LEAD - 60 * SEC, LEAD)
)


@st.composite
def models(draw: st.DrawFn, max_changes: int = 12) -> Model:
    skew = draw(st.sampled_from([0, 250_000, SEC]))
    model = Model(skew, draw(st.sampled_from(sorted({0, skew, -SEC}))))
    count = draw(st.integers(0, max_changes))
    sequences = draw(st.lists(SEQUENCES, min_size=count, max_size=count, unique=True))
    for sequence in sequences:
        keys = draw(st.sampled_from(KEYS))
        name = draw(st.sampled_from(EVENT_NAMES))
        event_us = BASE_US + draw(st.integers(0, 600)) * SEC
        change = make_change(keys, name, event_us, str(sequence))
        model.changes.append(change)
        journaled = event_us + draw(st.integers(0, 30 * SEC))
        if draw(st.booleans()) and draw(st.booleans()):
            # The writer died after the journal: the retry journals and writes it again.
            model.write(change, journaled, None)
            journaled += draw(st.integers(1 * SEC, 300 * SEC))
        model.write(change, journaled, draw(ITEM_DELAYS))
    for _ in range(draw(st.integers(0, 3)) if model.changes else 0):
        change = draw(st.sampled_from(model.changes))  # a replay, possibly a stale re-drive
        model.write(change, change.event_time_us + draw(st.integers(0, 3600 * SEC)), 0)
    return model


def manifest(as_of_us: int, watermark_us: int, source: str) -> Manifest:
    return Manifest(
        id="s",
        table="t",
        as_of_us=as_of_us,
        built_at_us=watermark_us,
        listing_watermark_us=watermark_us,
        base=None,
        shard_digits=0,
        key_schema=(),
        key_schema_source="recorded",
        columns=(),
        files=(),
        counts=Counts(0, 0, 0, 0, 0),
        newest_event_time_us=None,
        run_id="r",
        change_source=source,
    )


def since_of(base: Manifest, skew_us: int) -> int:
    return min(base.listing_watermark_us, base.as_of_us) - LAST_MODIFIED_RESOLUTION_US - skew_us


def by_listing(
    items: list[Copy], winners: dict[str, Row], as_of_us: int, skew_us: int, since: int | None
) -> dict[str, Row]:
    """What a listing-built run does: per key, candidates then the KeyPlan read rounds."""
    result = dict(winners)
    grouped: dict[str, list[Copy]] = {}
    for copy in items:
        grouped.setdefault(key_hash(copy.change.keys), []).append(copy)
    for digest, copies in grouped.items():
        versions = [Version("k", c.version_id, c.last_modified_us) for c in copies]
        bodies = {c.version_id: c for c in copies}
        candidates = candidates_for(versions, winners.get(digest), since)
        if not candidates:
            continue
        plan = KeyPlan(digest, candidates, as_of_us, skew_us, best=winners.get(digest))
        while batch := plan.next_batch():
            for version in batch:
                plan.accept(bodies[version.version_id].row())
        chosen = plan.winner(winners.get(digest))
        if chosen is None:
            result.pop(digest, None)
        else:
            result[digest] = chosen
    return result


def by_journal(
    lines: list[Copy], winners: dict[str, Row], as_of_us: int, start: int | None
) -> dict[str, Row]:
    """What a journal-read run does: fold the base's rows with the window's lines."""
    result = dict(winners)
    grouped: dict[str, list[Row]] = {}
    for copy in lines:
        if start is None or copy.last_modified_us > start:
            grouped.setdefault(key_hash(copy.change.keys), []).append(copy.row())
    for digest, rows in grouped.items():
        chosen = fold_winner(winners.get(digest), rows, as_of_us)
        if chosen is None:
            result.pop(digest, None)
        else:
            result[digest] = chosen
    return result


def live(winners: dict[str, Row]) -> dict[str, Change]:
    return {d: r.change for d, r in winners.items() if not r.change.is_removal}


SPLITS = st.lists(
    st.tuples(
        st.integers(-60, 700),  # as-of, seconds after BASE
        st.integers(0, 1200),  # listing starts this long after the as-of
        st.integers(0, 5),  # writes landing while the listing runs
        st.sampled_from([LISTING, JOURNAL]),
    ),
    min_size=1,
    max_size=4,
)


@settings(FUZZ, max_examples=300)
@given(models(), SPLITS, st.sampled_from([LISTING, JOURNAL]))
def test_any_mix_of_listing_and_journal_runs_ends_at_the_oracle(
    model: Model, splits: list[tuple[int, int, int, str]], final_source: str
) -> None:
    skew = model.skew_us
    winners: dict[str, Row] = {}
    base: Manifest | None = None
    as_of = listing = cutoff = BASE_US - 100 * SEC
    for as_of_s, delay_s, lag_s, source in sorted(splits):
        as_of = max(as_of, BASE_US + as_of_s * SEC)
        listing = max(listing, as_of + delay_s * SEC)
        cutoff = max(cutoff, listing + lag_s * SEC)
        since = None if base is None else since_of(base, skew)
        if source == LISTING:
            seen = [c for c in model.items if c.true_us <= cutoff]
            winners = by_listing(seen, winners, as_of, skew, since)
        else:
            seen = [c for c in model.journal if c.true_us <= cutoff]
            winners = by_journal(seen, winners, as_of, window_start(base, since))
        base = manifest(as_of, listing, source)
    final_as_of = BASE_US + 10_000 * SEC
    since = None if base is None else since_of(base, skew)
    if final_source == LISTING:
        final = by_listing(model.items, winners, final_as_of, skew, since)
    else:
        final = by_journal(model.journal, winners, final_as_of, window_start(base, since))
    assert live(final) == oracle(model.changes, final_as_of)


def test_after_a_listing_built_base_the_window_reaches_back_the_write_lead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A change journaled before the base's listing bound, whose item version was written
    after it (a slow invocation): only a window reaching back the lead finds it."""
    model = Model(skew_us=SEC, s3_behind_us=0)
    keys = KEYS[0]
    first = make_change(keys, "INSERT", BASE_US, "1")
    model.changes.append(first)
    model.write(first, BASE_US, 0)
    slow = make_change(keys, "MODIFY", BASE_US + 50 * SEC, "2")
    model.changes.append(slow)
    model.write(slow, BASE_US + 51 * SEC, 10 * 60 * SEC)  # item 10 minutes after its journal
    as_of, listing = BASE_US + 100 * SEC, BASE_US + 101 * SEC
    seen = [c for c in model.items if c.true_us <= listing]
    winners = by_listing(seen, {}, as_of, SEC, None)
    assert live(winners) == {key_hash(keys): first}  # the slow item was not written yet
    base = manifest(as_of, listing, LISTING)
    start = window_start(base, since_of(base, SEC))
    later = BASE_US + 3600 * SEC
    assert live(by_journal(model.journal, winners, later, start)) == {key_hash(keys): slow}
    # The negative control: starting at `since` (as after a journal-built base) misses it.
    too_late = window_start(manifest(as_of, listing, JOURNAL), since_of(base, SEC))
    assert live(by_journal(model.journal, winners, later, too_late)) == {key_hash(keys): first}
    monkeypatch.setattr(journal_module, "WRITE_LEAD_US", 0)
    assert window_start(base, since_of(base, SEC)) == too_late - LAST_MODIFIED_RESOLUTION_US


def test_after_a_journal_built_base_the_window_starts_at_since() -> None:
    base = manifest(BASE_US, BASE_US + SEC, JOURNAL)
    assert window_start(base, 123) == 123
    assert window_start(manifest(BASE_US, BASE_US, "listing+journal"), 123) == 123
    assert window_start(base, None) is None
    listed = manifest(BASE_US, BASE_US + SEC, LISTING)
    assert window_start(listed, 123) == 123 - LEAD - LAST_MODIFIED_RESOLUTION_US
