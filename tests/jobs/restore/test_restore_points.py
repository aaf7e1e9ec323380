"""Restores at several points in time, each checked item by item against an oracle that
the test computes from the list of changes (the definition of "as of T")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from backup_lambda.layout import key_hash
from compaction.manifest import Manifest
from tests.jobs.restore.restore_fixtures import (
    ITEMS,
    MODES,
    SECOND,
    Backup,
    backup,  # noqa: F401 - fixture
    key_of,
    make_backup,
    mocked,  # noqa: F401 - fixture
    new_session,
    now_us,
)


class Scenario:
    def __init__(self, b: Backup, base: int, first: Manifest, second: Manifest) -> None:
        self.backup = b
        self.base = base
        self.first = first
        self.second = second


def _build(b: Backup) -> Scenario:
    """Inserts, modifies, removals, re-inserts, event-time ties broken by the sequence
    number as an integer, a replay written later, two snapshots, then late changes."""
    base = now_us() - 3600 * SECOND

    def at(seconds: int) -> int:
        return base + seconds * SECOND

    b.item("a", 1, at(10), status="placed")
    b.item("a", 1, at(150), status="paid")
    b.item("a", 1, at(250), status="shipped")
    b.item("a", 1, at(450), status="delivered")
    b.item("a", 2, at(20), status="placed")
    b.remove("a", 2, at(180))
    b.item("a", 2, at(300), status="placed again")
    b.item("a", 3, at(30), status="placed")
    b.remove("a", 3, at(350))
    b.item("b", 1, at(40), status="placed")
    # Two changes at the same event time: sequence 10 beats 9 (as integers, not as text),
    # whatever order they were written in.
    b.item("b", 1, at(220), seq=10, status="seq 10 wins")
    b.item("b", 1, at(220), seq=9, status="seq 9 loses")
    b.item("b", 2, at(210), status="placed")
    insert_b3 = b.item("b", 3, at(100), status="placed")
    b.item("b", 3, at(260), status="paid")
    b.write(insert_b3)  # a replay of an old change, written after a newer one
    for sk in range(1, 7):
        b.item("c", sk, at(50 + sk), status=f"stable {sk}")
    b.item("c", 7, at(500), status="newest")
    b.item("d", 1, at(5), status="placed")
    b.remove("d", 1, at(8))

    first = b.compact(at(200))
    second = b.compact(at(400), shard_digits=1)  # 16 units: the restore plan uses one
    assert second.shard_digits == 1
    assert len(second.files_of("parquet")) > 1

    # Late changes: event times the snapshots cover, written after they were built.
    b.item("a", 3, at(195), status="late modify")
    b.remove("c", 1, at(199))
    b.item("e", 1, at(390), status="late insert")
    b.item("b", 1, at(215), seq=50, status="late but older than the tie")
    return Scenario(b, base, first, second)


@pytest.fixture(scope="module", params=MODES)
def scenario(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """The same history written as item objects, with the journal beside them, or as the
    journal alone: every restore below must come out the same."""
    with mock_aws():
        session = new_session()
        backup = make_backup(session.client("s3"), session.client("dynamodb"))
        yield _build(backup.declare_journal(request.param))


# (label, seconds after base or None for now, which snapshot the restore starts from)
POINTS = [
    ("before any snapshot", 100, None),
    ("one second before the first snapshot", 199, None),
    ("exactly the first snapshot", 200, "first"),
    ("at the event-time tie", 220, "first"),
    ("between the snapshots", 300, "first"),
    ("exactly the second snapshot", 400, "second"),
    ("after the newest snapshot", 460, "second"),
    ("now", None, "second"),
]


@pytest.mark.parametrize(("label", "seconds", "snapshot"), POINTS, ids=[p[0] for p in POINTS])
def test_restore_equals_the_oracle(
    scenario: Scenario, label: str, seconds: int | None, snapshot: str | None
) -> None:
    b = scenario.backup
    as_of = now_us() if seconds is None else scenario.base + seconds * SECOND
    target = "restored-" + label.replace(" ", "-")
    report = b.restore(target, as_of, create_table=True)

    expected = b.oracle(as_of)
    actual = b.target_items(target)
    assert sorted(actual) == sorted(expected), label
    for digest, image in expected.items():
        assert actual[digest] == image, (label, image)
    manifest = None if snapshot is None else getattr(scenario, snapshot)
    assert report.snapshot == (manifest.id if manifest else None)
    assert (report.mode, report.state_items, report.puts) == ("bulk", len(expected), len(expected))
    assert (report.deletes, report.unchanged) == (0, 0)
    # With a journal, no item version is listed: the changes come from the journal.
    assert report.change_source == ("listing" if b.mode == ITEMS else "journal")


def test_scenario_points_differ(scenario: Scenario) -> None:
    """The oracle itself: the points above are not all the same state (a guard on the test)."""
    b = scenario.backup
    states = [
        b.oracle(scenario.base + s * SECOND) if s is not None else b.oracle(now_us())
        for _, s, _ in POINTS
    ]
    assert len({tuple(sorted((k, str(v)) for k, v in s.items())) for s in states}) >= 6
    at_first = b.oracle(scenario.base + 200 * SECOND)
    assert at_first[key_hash(key_of("a", 3))]["status"] == {"S": "late modify"}
    assert key_hash(key_of("c", 1)) not in at_first
    at_tie = b.oracle(scenario.base + 220 * SECOND)
    assert at_tie[key_hash(key_of("b", 1))]["status"] == {"S": "seq 10 wins"}


def test_restore_before_every_change_is_empty(scenario: Scenario) -> None:
    # An as-of before the first change is refused unless allowed (test_restore_guards.py);
    # allowed, the state is empty.
    b = scenario.backup
    report = b.restore("restored-empty", scenario.base, create_table=True, allow_empty=True)
    assert report.state_items == 0
    assert b.target_items("restored-empty") == {}
