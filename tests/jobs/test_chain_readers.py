"""Readers of a delta chain that the chain-vs-full property test (tests/compaction/
test_chains.py) does not run: a partial restore (keys, and a partition) and the drill."""

from __future__ import annotations

import pytest

from backup_lambda.layout import key_hash
from compaction.manifest import Manifest
from compaction.policy import SnapshotPolicy
from jobs.ops.drill import Drill
from jobs.restore.keys import KeyFilter, partition_filter
from tests.jobs.restore.restore_fixtures import (
    SECOND,
    Backup,
    backup,  # noqa: F401 - fixture
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)

DELTA = SnapshotPolicy(kind="delta")


class Chain:
    """A full snapshot and two deltas: updates, removals, a re-created key, a key changed
    in both deltas, new items; and a change after the newest."""

    def __init__(self, b: Backup) -> None:
        t = now_us() - 3600 * SECOND
        for pk in ("a", "b"):
            for sk in range(4):
                b.item(pk, sk, t + sk * SECOND, status="placed")
        self.full: Manifest = b.compact(t + 10 * SECOND)
        b.item("a", 1, t + 20 * SECOND, status="paid")
        b.remove("a", 2, t + 21 * SECOND)
        b.remove("b", 0, t + 22 * SECOND)
        b.item("b", 9, t + 23 * SECOND, status="new")
        self.middle = b.compact(t + 30 * SECOND, policy=DELTA)
        b.item("a", 1, t + 40 * SECOND, status="shipped")
        b.item("a", 2, t + 41 * SECOND, status="again")
        b.remove("b", 9, t + 42 * SECOND)
        self.head = b.compact(t + 50 * SECOND, policy=DELTA)
        assert (self.head.kind, self.head.depth, self.middle.kind) == ("delta", 2, "delta")
        b.item("b", 3, t + 60 * SECOND, status="after")
        self.backup = b


@pytest.fixture
def chain(backup: Backup) -> Chain:  # noqa: F811
    return Chain(backup)


def test_a_partial_restore_from_a_chain(chain: Chain) -> None:
    b = chain.backup
    expected = b.oracle(chain.head.as_of_us)
    wanted = {key_hash(key_of("a", sk)) for sk in (1, 2, 3)} | {key_hash(key_of("b", 9))}
    b.restore(
        "keys", chain.head.as_of_us, create_table=True, key_filter=KeyFilter(frozenset(wanted))
    )
    assert b.target_items("keys") == {d: i for d, i in expected.items() if d in wanted}
    assert len(b.target_items("keys")) == 3  # b/9 was created and removed in the chain

    partition = partition_filter(chain.head.key_schema, "a")
    report = b.restore(
        "partition",
        chain.head.as_of_us,
        create_table=True,
        key_filter=KeyFilter(partition=partition),
    )
    assert report.snapshot == chain.head.id
    a_items = {d: i for d, i in expected.items() if i["pk"] == {"S": "a"}}
    assert b.target_items("partition") == a_items
    assert len(a_items) == 4


def test_the_drill_restores_a_chain(chain: Chain) -> None:
    b = chain.backup
    now = now_us()
    report = Drill(
        b.s3, b.dynamodb, b.bucket, b.table, max_rpo_seconds=7200, clock=lambda: now / SECOND
    ).run()
    assert report.passed, report.failures
    assert report.snapshot == chain.head.id
    assert report.items == len(b.oracle(now)) == 7
