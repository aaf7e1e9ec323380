"""ChangeWriter: one item's changes in stream order, different items in parallel, bounded."""

from __future__ import annotations

import json
import threading
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

from backup_lambda.layout import Change, object_key
from backup_lambda.writer import ChangeWriter
from tests.backup_lambda.fakes import FakeS3


def change(pk: str, seq: int, event_name: str = "MODIFY") -> Change:
    keys = {"pk": {"S": pk}}
    return Change(
        table="orders",
        keys=keys,
        event_name=event_name,  # type: ignore[arg-type]
        event_id=f"e{seq}",
        sequence_number=str(seq),
        event_time_us=1_795_824_000_000_000 + seq,
        new_image=None if event_name == "REMOVE" else {**keys, "n": {"N": str(seq)}},
    )


def key_of(pk: str) -> str:
    return object_key("", "orders", {"pk": {"S": pk}})


def test_changes_of_one_item_are_put_in_stream_order() -> None:
    s3 = FakeS3()
    changes = [change(pk, seq) for seq, pk in enumerate("abcabcaab", start=1)]
    result = ChangeWriter(s3, "bucket", max_workers=3).write(changes)
    assert result.failed == []
    assert sorted(c.sequence_number for c in result.written) == sorted(
        c.sequence_number for c in changes
    )
    assert s3.sequences_by_key() == {
        key_of("a"): ["1", "4", "7", "8"],
        key_of("b"): ["2", "5", "9"],
        key_of("c"): ["3", "6"],
    }


def test_put_carries_the_change_document_and_metadata() -> None:
    s3 = FakeS3()
    ChangeWriter(s3, "bucket", prefix="backups").write([change("a", 1, "REMOVE")])
    (put,) = s3.puts
    assert put["Bucket"] == "bucket"
    assert put["Key"] == object_key("backups", "orders", {"pk": {"S": "a"}})
    assert put["ContentType"] == "application/json"
    assert put["Metadata"] == {
        "ddb-event-name": "REMOVE",
        "ddb-sequence-number": "1",
        "ddb-event-time": "2026-11-28T00:00:00.000001Z",
    }
    body = json.loads(put["Body"])
    assert (body["eventName"], body["keys"], body["newImage"]) == (
        "REMOVE",
        {"pk": {"S": "a"}},
        None,
    )


def test_different_items_are_written_in_parallel_within_the_bound() -> None:
    # GIVEN puts that only proceed when two are in flight at once
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def meet(_: dict[str, Any]) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        barrier.wait()
        with lock:
            in_flight -= 1

    s3 = FakeS3(fail=meet)
    # WHEN four items are written with at most two workers
    result = ChangeWriter(s3, "bucket", max_workers=2).write(
        [change(pk, i) for i, pk in enumerate("abcd")]
    )
    # THEN all are written, two at a time, never more
    assert len(result.written) == 4
    assert peak == 2


def test_a_failed_put_stops_its_item_and_spares_the_others() -> None:
    def refuse_b_from_5(put: dict[str, Any]) -> None:
        if put["Key"] == key_of("b") and int(json.loads(put["Body"])["sequenceNumber"]) >= 5:
            raise ClientError(
                {
                    "Error": {
                        "Code": "InternalError",
                        "Message": "We encountered an internal error.",
                    }
                },
                "PutObject",
            )

    s3 = FakeS3(fail=refuse_b_from_5)
    changes = [change(pk, seq) for seq, pk in enumerate("abcabcab", start=1)]
    result = ChangeWriter(s3, "bucket").write(changes)
    assert {f.sequence_number for f in result.failed} == {"5", "8"}
    reasons = {f.sequence_number: f.reason for f in result.failed}
    assert "InternalError" in reasons["5"]
    assert reasons["8"].startswith("not attempted")
    assert s3.sequences_by_key() == {
        key_of("a"): ["1", "4", "7"],
        key_of("b"): ["2"],
        key_of("c"): ["3", "6"],
    }
    assert sorted(int(c.sequence_number) for c in result.written) == [1, 2, 3, 4, 6, 7]


def test_transport_errors_are_reported_not_raised() -> None:
    def time_out(_: dict[str, Any]) -> None:
        raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")

    result = ChangeWriter(FakeS3(fail=time_out), "bucket").write([change("a", 1)])
    assert [f.sequence_number for f in result.failed] == ["1"]
    assert result.written == []


def test_nothing_to_write() -> None:
    s3 = FakeS3()
    result = ChangeWriter(s3, "bucket").write([])
    assert (result.written, result.failed, s3.puts) == ([], [], [])
