"""Scheduled runs on a table with a change journal: the check for new changes costs O(1)
requests (counted), the state `scheduled` keeps, and a scheduled run never writes a
snapshot older than the newest one."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pytest

from backup_lambda.journal import COVERAGE, encode_journal, journal_key, write_marker
from backup_lambda.layout import format_time_us, items_prefix
from compaction import catalog
from compaction.compactor import Compactor
from compaction.journal import BOTH, JOURNAL, LISTING
from compaction.newchanges import SnapshotBound, changes_after
from jobs.main import main
from jobs.ops.schedule_state import read_state, state_key
from jobs.ops.scheduled import ScheduleConfig, run_compactions
from tests.ops.conftest import SetClock
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    committed_ids,
    item,
    now_us,
    snapshot_items,
    whole_second_ago,
)

# A run with nothing new: S3's clock (GetBucketVersioning), the scheduled state, one LIST.
NOTHING_NEW_BUDGET = 3


@dataclass
class Clock:
    """moto's S3 clock and the journal's key times, together; None: the real clock."""

    set_s3: SetClock
    us: int | None = None

    def __call__(self, micros: int | None) -> None:
        self.us = micros
        self.set_s3(micros)

    def now(self) -> int:
        return self.us if self.us is not None else now_us()


@pytest.fixture
def clock(s3_clock: SetClock) -> Clock:
    return Clock(s3_clock)


@pytest.fixture
def journaled(s3: Any, bucket: str, clock: Clock) -> ChangeLog:
    """`orders` with a journal complete from the start; three changes written an hour ago."""
    t0 = whole_second_ago(3600)
    clock(t0 + 5 * SEC)
    write_marker(s3, BUCKET, "", TABLE, COVERAGE, 0, "tests")
    log = ChangeLog(s3, journal_clock=clock.now)
    for i in range(3):
        log.put(item(f"o-{i}", v=i), t0 + i * SEC)
    clock(None)
    return log


def config() -> ScheduleConfig:
    return ScheduleConfig(BUCKET, (TABLE,))


def requests_of(s3: Any) -> list[tuple[str, str]]:
    """(operation, Prefix or Key) of every API call the client makes from now on."""
    seen: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.append((model.name, params.get("Prefix") or params.get("Key") or ""))

    s3.meta.events.register("before-parameter-build.s3", record)
    return seen


def test_nothing_new_costs_at_most_three_requests(
    s3: Any, dynamodb: Any, journaled: ChangeLog
) -> None:
    (first,) = run_compactions(s3, dynamodb, config(), now=time.time())
    assert (first["status"], first["change_source"]) == ("compacted", JOURNAL)
    seen = requests_of(s3)
    (again,) = run_compactions(s3, dynamodb, config())  # now: S3's clock, one request
    assert (again["status"], again["snapshot"]) == ("unchanged", first["snapshot"])
    assert again["checked_by"] == JOURNAL
    assert len(seen) <= NOTHING_NEW_BUDGET, seen
    assert [op for op, _ in seen].count("GetBucketVersioning") == 1
    assert ("GetObject", state_key("", TABLE)) in seen
    (journal_list,) = [where for op, where in seen if op == "ListObjectsV2"]
    assert journal_list == f"{TABLE}/v1/journal/"
    assert not [r for r in seen if r[0] == "ListObjectVersions"]


def test_a_run_with_changes_reads_the_journal_window_only(
    s3: Any, dynamodb: Any, journaled: ChangeLog
) -> None:
    (first,) = run_compactions(s3, dynamodb, config(), now=time.time())
    journaled.put(item("o-new", v=7), now_us() - 400 * SEC)
    journaled.remove("o-0", now_us() - 390 * SEC)
    seen = requests_of(s3)
    (again,) = run_compactions(s3, dynamodb, config(), now=time.time() + 60)
    assert again["status"] == "compacted"
    assert (again["checked_by"], again["change_source"]) == (JOURNAL, JOURNAL)
    assert (again["changed_keys"], again["items"]) == (2, 3)
    # No item version listed or read (the plan's one-key probe of items/ aside): the two
    # journal objects after the bound are read once each.
    items_root = items_prefix("", TABLE)
    assert not [r for r in seen if r[1].startswith(items_root) and r[1] != items_root]
    journal_reads = [where for op, where in seen if op == "GetObject" and "/journal/" in where]
    assert len(journal_reads) == 2
    assert len(set(journal_reads)) == 2
    listings = [where for op, where in seen if op == "ListObjectVersions"]
    assert all("/snapshots/" in where for where in listings)  # the commit's own check
    newest = catalog_newest(s3)
    assert (newest.id, newest.base) == (again["snapshot"], first["snapshot"])
    assert snapshot_items(s3, newest) == journaled.expected(newest.as_of_us)


def catalog_newest(s3: Any) -> Any:
    newest = catalog.newest_at_or_before(s3, BUCKET, "", TABLE, None)
    assert newest is not None
    return newest


def test_after_a_manual_compact_as_of_now_scheduled_runs_skip(
    s3: Any, dynamodb: Any, journaled: ChangeLog, clock: Clock
) -> None:
    (first,) = run_compactions(s3, dynamodb, config(), now=time.time())
    clock(whole_second_ago(10))  # written well before the manual snapshot's bound
    journaled.put(item("o-new", v=7), now_us() - 100 * SEC)
    clock(None)
    manual = Compactor(s3, BUCKET, TABLE).run(now_us()).manifest  # `compact --as-of now`
    # The state still names the first snapshot: changes after it send the run to the
    # snapshots, where the manual one is newer than this run's as-of (now - settle).
    (run,) = run_compactions(s3, dynamodb, config(), now=time.time())
    assert (run["status"], run["snapshot"]) == ("skipped", manual.id)
    assert "not before this run's as-of" in run["reason"]
    assert "never writes an older one" in run["reason"]
    assert committed_ids(s3) == [first["snapshot"], manual.id]
    # The state now names the manual snapshot: the next run skips on it alone.
    seen = requests_of(s3)
    (again,) = run_compactions(s3, dynamodb, config(), now=time.time())
    assert again["status"] == "skipped"
    assert [op for op, _ in seen if op != "GetObject"] == []
    # Once the as-of passes the manual snapshot's, nothing new since it: unchanged.
    (later,) = run_compactions(s3, dynamodb, config(), now=time.time() + 301)
    assert (later["status"], later["snapshot"]) == ("unchanged", manual.id)
    assert committed_ids(s3) == [first["snapshot"], manual.id]


def test_an_unreadable_state_is_rebuilt_from_the_snapshots(
    s3: Any, dynamodb: Any, journaled: ChangeLog
) -> None:
    (first,) = run_compactions(s3, dynamodb, config(), now=time.time())
    s3.put_object(Bucket=BUCKET, Key=state_key("", TABLE), Body=b"{not json")
    assert read_state(s3, BUCKET, "", TABLE)[0] is None
    (again,) = run_compactions(s3, dynamodb, config(), now=time.time() + 60)
    assert (again["status"], again["snapshot"]) == ("unchanged", first["snapshot"])
    assert again["note"].startswith(f"s3://{BUCKET}/{state_key('', TABLE)} was unreadable (")
    assert again["note"].endswith("); rebuilt from the snapshots")
    state, _ = read_state(s3, BUCKET, "", TABLE)
    assert state is not None
    assert state.snapshot is not None
    assert state.snapshot.id == first["snapshot"]


def test_changes_after_by_journal_where_it_covers_the_window_else_by_listing(
    s3: Any, bucket: str, clock: Clock
) -> None:
    t0 = whole_second_ago(7200)

    def check(bound: SnapshotBound) -> tuple[bool, str, str]:
        result = changes_after(s3, BUCKET, "", TABLE, bound)
        return result.found, result.source, result.reason

    listed = SnapshotBound("a", t0 + 300 * SEC, t0 + 300 * SEC, LISTING)
    no_journal = "the table has no complete journal yet"
    assert check(listed) == (False, LISTING, no_journal)
    log = ChangeLog(s3)
    clock(t0 + 100 * SEC)
    change = log.put(item("x"), t0 + 100 * SEC)  # folded into the snapshot
    assert check(listed) == (False, LISTING, no_journal)
    # The journal is complete only from after the bound: listing, and the journal too
    # (a journal-only writer leaves no item object).
    clock(t0 + 600 * SEC)
    write_marker(s3, BUCKET, "", TABLE, COVERAGE, t0 + 600 * SEC, "tests")
    partial = f"the journal is complete only from {format_time_us(t0 + 600 * SEC)}"
    assert check(listed) == (False, BOTH, f"{partial}; the journal too")
    clock(t0 + 700 * SEC)
    only = journal_key("", TABLE, t0 + 700 * SEC, "only")
    s3.put_object(Bucket=BUCKET, Key=only, Body=encode_journal([change]))
    assert check(listed) == (True, BOTH, f"{partial}; the journal too")
    # A bound the coverage reaches: the journal alone (from the write lead before a
    # listing-built snapshot's bound; from the bound after a journal-built one).
    covered = SnapshotBound("b", t0 + 800 * SEC, t0 + 800 * SEC, LISTING)
    assert check(covered) == (True, JOURNAL, "the journal covers the window")
    journal_built = SnapshotBound("c", t0 + 800 * SEC, t0 + 800 * SEC, JOURNAL)
    assert check(journal_built) == (False, JOURNAL, "snapshot c was built from the journal")
    # An item version after the bound is found by listing, before the journal is asked.
    clock(t0 + 900 * SEC)
    log.put(item("y"), t0 + 900 * SEC)
    assert check(listed) == (True, LISTING, partial)


def unverified_runs(s3: Any) -> int:
    state, _ = read_state(s3, BUCKET, "", TABLE)
    assert state is not None
    return state.unverified_journal_runs


def test_every_second_journal_compaction_verifies_the_journal(
    s3: Any,
    dynamodb: Any,
    journaled: ChangeLog,
    clock: Clock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def put(log: ChangeLog, pk: str) -> None:
        """A change written 5 s ago: inside the next run's window (it ends 2 s back)."""
        clock(whole_second_ago(5))
        log.put(item(pk, v=1), now_us() - 400 * SEC)
        clock(None)

    every_2 = dataclasses.replace(config(), verify_journal_every=2)
    (first,) = run_compactions(s3, dynamodb, every_2, now=time.time())
    assert first["change_source"] == JOURNAL
    assert "journal_check" not in first
    assert unverified_runs(s3) == 1
    put(journaled, "a")
    (second,) = run_compactions(s3, dynamodb, every_2, now=time.time() + 60)
    assert second["journal_check"] == (
        "journal checked: 1 item versions in the window, 0 missing from the journal"
    )
    assert unverified_runs(s3) == 0
    put(journaled, "b")
    (third,) = run_compactions(s3, dynamodb, every_2, now=time.time() + 120)
    assert "journal_check" not in third
    assert unverified_runs(s3) == 1
    # A change in its item object alone (a writer without the journal): the verifying run
    # builds its snapshot by listing and fails, exit 6; the count stays, so the next
    # compaction verifies again.
    put(ChangeLog(s3, changes=journaled.changes), "rogue")
    capsys.readouterr()
    verify = ["--verify-journal-every", "2", "--settle", "60"]  # as of after the third
    code = main(["scheduled", "--bucket", BUCKET, "--table", TABLE, *verify])
    out, err = capsys.readouterr()
    assert code == 6
    assert "the change journal of 'orders' misses 1 of " in err
    assert err.count("\n") == 1
    assert out.splitlines()[1].split("\t")[1] == "failed"
    newest = catalog_newest(s3)
    assert newest.change_source == LISTING
    assert snapshot_items(s3, newest) == journaled.expected(newest.as_of_us)
    assert len(journaled.expected(newest.as_of_us)) == 6  # the rogue change included
    assert unverified_runs(s3) == 1


def test_every_third_snapshot_is_full(
    s3: Any, dynamodb: Any, journaled: ChangeLog, clock: Clock
) -> None:
    clock(whole_second_ago(3000))  # 20 more items: one changed key is a delta's share
    for i in range(20):
        journaled.put(item(f"p-{i}", v=i), now_us() - 3000 * SEC)
    clock(None)
    every_3 = dataclasses.replace(config(), full_every=3)
    outcomes = []
    for step in range(5):
        if step:
            journaled.put(item(f"n-{step}", v=step), now_us() - 400 * SEC)
        (outcome,) = run_compactions(s3, dynamodb, every_3, now=time.time() + 60 * step)
        outcomes.append(outcome)
    assert [o["kind"] for o in outcomes] == ["full", "delta", "delta", "full", "delta"]
    assert outcomes[3]["policy"] == (
        "--full-every 3: the parent's chain already holds 3 snapshots (a full one and 2 deltas)"
    )
    newest = catalog_newest(s3)
    assert snapshot_items(s3, newest) == journaled.expected(newest.as_of_us)
