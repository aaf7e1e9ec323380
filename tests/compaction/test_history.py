"""compaction.history.item_history: distinct changes, ordered by (event time, sequence)."""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda.errors import CorruptVersionError, NotFoundError
from backup_lambda.layout import Change, object_key
from backup_lambda.writer import ChangeWriter
from compaction.history import item_history
from compaction.versions import key_versions

KEYS = {"pk": {"S": "item"}}
T0 = 1_795_824_000_000_000


def change(seq: int, time_us: int, event_name: str = "MODIFY") -> Change:
    return Change(
        table="orders",
        keys=KEYS,
        event_name=event_name,  # type: ignore[arg-type]
        event_id=f"e{seq}",
        sequence_number=str(seq),
        event_time_us=time_us,
        new_image=None if event_name == "REMOVE" else {**KEYS, "seq": {"N": str(seq)}},
    )


@pytest.fixture
def write(s3: Any, bucket: str) -> Any:
    writer = ChangeWriter(s3, bucket)

    def put(*changes: Change) -> None:
        for one in changes:  # one call each: S3 write order is exactly this order
            assert writer.write([one]).failed == []

    return put


def test_history_is_ordered_by_event_time_then_sequence_not_write_order(
    write: Any, s3: Any, bucket: str
) -> None:
    # GIVEN changes written to S3 out of order (late shards, re-drives)
    write(
        change(30, T0 + 2),
        change(9, T0 + 1),
        change(10, T0 + 1),  # same event time: sequence 9 < 10 as integers
        change(5, T0, "INSERT"),
        change(40, T0 + 3, "REMOVE"),
    )
    entries = item_history(s3, bucket, "", "orders", KEYS)
    assert [e.change.sequence_number for e in entries] == ["5", "9", "10", "30", "40"]


def test_duplicates_are_one_entry_with_copies(write: Any, s3: Any, bucket: str) -> None:
    write(
        change(1, T0, "INSERT"), change(2, T0 + 1), change(1, T0, "INSERT"), change(1, T0, "INSERT")
    )
    entries = item_history(s3, bucket, "", "orders", KEYS)
    assert [(e.change.sequence_number, e.copies) for e in entries] == [("1", 3), ("2", 1)]


def test_as_of_keeps_changes_at_or_before_t(write: Any, s3: Any, bucket: str) -> None:
    write(change(1, T0, "INSERT"), change(2, T0 + 10), change(3, T0 + 20))
    at_10 = item_history(s3, bucket, "", "orders", KEYS, as_of_us=T0 + 10)
    assert [e.change.sequence_number for e in at_10] == ["1", "2"]
    assert item_history(s3, bucket, "", "orders", KEYS, as_of_us=T0 - 1) == []


def test_delete_markers_are_not_changes(write: Any, s3: Any, bucket: str) -> None:
    write(change(1, T0, "INSERT"))
    s3.delete_object(Bucket=bucket, Key=object_key("", "orders", KEYS))
    (entry,) = item_history(s3, bucket, "", "orders", KEYS)
    assert entry.change.sequence_number == "1"


def test_a_corrupt_version_is_reported_by_name(write: Any, s3: Any, bucket: str) -> None:
    write(change(1, T0, "INSERT"))
    key = object_key("", "orders", KEYS)
    s3.put_object(Bucket=bucket, Key=key, Body=b"<html>not a change</html>")
    with pytest.raises(CorruptVersionError, match=key):
        item_history(s3, bucket, "", "orders", KEYS)


def test_key_versions_match_the_exact_key_only(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="orders/x", Body=b"1")
    s3.put_object(Bucket=bucket, Key="orders/x.bak", Body=b"2")
    assert [ref.key for ref in key_versions(s3, bucket, "orders/x")] == ["orders/x"]


def test_unknown_table_is_not_found(write: Any, s3: Any, bucket: str) -> None:
    write(change(1, T0, "INSERT"))
    with pytest.raises(NotFoundError, match="invoices"):
        item_history(s3, bucket, "", "invoices", KEYS)


def test_a_known_table_without_this_key_has_an_empty_history(
    write: Any, s3: Any, bucket: str
) -> None:
    write(change(1, T0, "INSERT"))
    assert item_history(s3, bucket, "", "orders", {"pk": {"S": "other"}}) == []


def test_missing_bucket_is_not_found(s3: Any) -> None:
    with pytest.raises(NotFoundError, match="no-such-bucket"):
        item_history(s3, "no-such-bucket", "", "orders", KEYS)
