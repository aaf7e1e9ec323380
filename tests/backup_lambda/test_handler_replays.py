"""Functional (moto): replayed records change no result; history is by event order."""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from backup_lambda.layout import object_key
from compaction.history import HistoryEntry
from tests.conftest import Deliver, History
from tests.support import StreamTable, sequence

ALICE: Item = {"pk": {"S": "alice"}, "sk": {"N": "1"}}
BOB: Item = {"pk": {"S": "bob"}, "sk": {"N": "2"}}


def set_status(table: StreamTable, key: Item, status: str) -> None:
    table.update(key, "SET #s = :s", {":s": {"S": status}}, {"#s": "status"})


@pytest.fixture
def changes(orders: StreamTable) -> list[dict[str, Any]]:
    """A realistic run of changes on two items, as the stream delivers them."""
    orders.put({**ALICE, "status": {"S": "placed"}})
    orders.put({**BOB, "status": {"S": "placed"}})
    set_status(orders, ALICE, "paid")
    set_status(orders, ALICE, "shipped")
    orders.delete(BOB)
    orders.put({**BOB, "status": {"S": "placed again"}})
    return orders.new_records()


def changes_of(entries: list[HistoryEntry]) -> list[Any]:
    return [entry.change for entry in entries]


def test_history_lists_every_change_in_stream_order(
    changes: list[dict[str, Any]], deliver: Deliver, history: History
) -> None:
    assert deliver(changes) == {"batchItemFailures": []}
    alice = history(ALICE)
    assert [e.change.sequence_number for e in alice] == [
        sequence(r) for r in changes if r["dynamodb"]["Keys"]["pk"] == {"S": "alice"}
    ]
    assert [e.change.new_image["status"]["S"] for e in alice if e.change.new_image] == [
        "placed",
        "paid",
        "shipped",
    ]
    assert [e.change.event_name for e in history(BOB)] == ["INSERT", "REMOVE", "INSERT"]


def test_delivering_the_same_batch_twice_changes_nothing(
    changes: list[dict[str, Any]], deliver: Deliver, history: History
) -> None:
    # GIVEN a batch already backed up
    deliver(changes)
    before = {name: history(keys) for name, keys in (("alice", ALICE), ("bob", BOB))}
    # WHEN Lambda retries the whole batch
    assert deliver(changes) == {"batchItemFailures": []}
    # THEN each history holds the same distinct changes in the same order; only copies grew
    for name, keys in (("alice", ALICE), ("bob", BOB)):
        after = history(keys)
        assert changes_of(after) == changes_of(before[name])
        assert [e.copies for e in before[name]] == [1] * len(after)
        assert [e.copies for e in after] == [2] * len(after)


def test_a_stale_record_redriven_after_newer_changes_changes_nothing(
    changes: list[dict[str, Any]],
    orders: StreamTable,
    deliver: Deliver,
    history: History,
    s3: Any,
    bucket: str,
) -> None:
    # GIVEN alice's history backed up, then newer changes of alice backed up too
    deliver(changes)
    set_status(orders, ALICE, "delivered")
    deliver(orders.new_records())
    before = history(ALICE)
    assert before[-1].change.new_image is not None
    assert before[-1].change.new_image["status"] == {"S": "delivered"}
    # WHEN an operator re-drives alice's very first record long after
    first = changes[0]
    assert deliver([first]) == {"batchItemFailures": []}
    # THEN the history is unchanged and its newest state is still the newest change,
    # although the stale record is now the object's latest S3 version
    after = history(ALICE)
    assert changes_of(after) == changes_of(before)
    assert after[-1].change == before[-1].change
    assert [e.copies for e in after] == [2, 1, 1, 1]
    latest = s3.get_object(Bucket=bucket, Key=object_key("", "orders", ALICE))
    assert latest["Metadata"]["ddb-sequence-number"] == sequence(first)


def test_a_partial_batch_checkpoint_replay_changes_nothing(
    changes: list[dict[str, Any]], deliver: Deliver, history: History
) -> None:
    # GIVEN the first half delivered, then Lambda resuming from a checkpoint in the middle
    deliver(changes[:4])
    deliver(changes[2:])
    # THEN each change appears once, in order
    complete = history(ALICE) + history(BOB)
    assert sorted(e.change.sequence_number for e in complete) == sorted(
        sequence(r) for r in changes
    )
