"""ChangeWriter: one item's changes in stream order, different items in parallel, bounded."""

from __future__ import annotations

import json
import threading
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError

from backup_lambda.journal import decode_journal, stamp
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


# ---------------------------------------------------------------- the journal


class Clock:
    """The writer's clock, in seconds; tests move it from S3 hooks."""

    def __init__(self, now: float = 1_795_824_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refuse(_: dict[str, Any]) -> None:
    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")


def test_the_batch_is_journaled_before_any_item_object() -> None:
    s3 = FakeS3()
    changes = [change(pk, seq) for seq, pk in enumerate("abca", start=1)]
    result = ChangeWriter(s3, "bucket", max_workers=3).write(changes)
    assert result.failed == []
    assert result.journal_objects == 1
    (journal,) = s3.journal_objects()
    assert s3.order[0] == journal["Key"]
    assert journal["Key"].startswith("orders/v1/journal/")
    assert journal["ContentType"] == "application/gzip"
    assert s3.journaled_sequences() == ["1", "2", "3", "4"]
    assert sorted(s3.sequences(), key=int) == ["1", "2", "3", "4"]


def test_a_batch_whose_journal_fails_writes_no_item_object() -> None:
    s3 = FakeS3(fail_journal=refuse)
    changes = [change("a", 1), change("b", 2)]
    result = ChangeWriter(s3, "bucket").write(changes)
    assert result.written == []
    assert [f.sequence_number for f in result.failed] == ["1", "2"]
    assert all(
        "journal not written" in f.reason and "AccessDenied" in f.reason for f in result.failed
    )
    assert s3.puts == []


def test_only_the_stream_writer_claims_coverage_once_per_table() -> None:
    s3 = FakeS3()
    clock = Clock()
    writer = ChangeWriter(s3, "bucket", claim_coverage=True, clock=clock, writer="lambda")
    writer.write([change("a", 1)])
    clock.now += 60
    writer.write([change("b", 2)])
    markers = [p for p in s3.journal_puts if "/journal-coverage/" in p["Key"]]
    (marker,) = markers
    body = json.loads(marker["Body"])
    complete_from = int((clock.now - 60) * 1_000_000) + 16 * 60 * 1_000_000
    assert body["complete_from_us"] == complete_from
    assert body["writer"] == "lambda"
    assert marker["Key"].rsplit("/", 1)[1].startswith(stamp(complete_from))
    assert s3.order[0] == marker["Key"]  # before the first journal object
    plain = FakeS3()
    ChangeWriter(plain, "bucket").write([change("a", 1)])
    assert [p for p in plain.journal_puts if "/journal-coverage/" in p["Key"]] == []


def test_a_coverage_marker_that_cannot_be_written_fails_the_batch() -> None:
    def refuse_markers(put: dict[str, Any]) -> None:
        if "/journal-coverage/" in put["Key"]:
            refuse(put)

    s3 = FakeS3(fail_journal=refuse_markers)
    result = ChangeWriter(s3, "bucket", claim_coverage=True).write([change("a", 1)])
    assert [f.sequence_number for f in result.failed] == ["1"]
    assert s3.puts == []
    assert s3.journal_objects() == []


def test_journal_only_mode_writes_one_object_per_batch_after_its_markers() -> None:
    s3 = FakeS3()
    clock = Clock()
    changes = [change(pk, seq) for seq, pk in enumerate("abcab", start=1)]
    result = ChangeWriter(s3, "bucket", journal_only=True, clock=clock).write(changes)
    assert len(result.written) == 5
    assert result.failed == []
    assert s3.puts == []
    kinds = [k.split("/")[2] for k in s3.order]
    assert kinds == ["journal-only", "journal-coverage", "journal"]
    only = json.loads(s3.journal_puts[0]["Body"])
    assert only["since_us"] == int(clock.now * 1_000_000) - 60 * 1_000_000
    assert s3.journaled_sequences() == ["1", "2", "3", "4", "5"]


def test_a_slow_journal_put_is_written_again_under_a_fresh_key() -> None:
    clock = Clock()
    slow = [True]

    def slow_once(put: dict[str, Any]) -> None:
        if put["Key"].endswith(".jsonl.gz") and slow[0]:
            slow[0] = False
            clock.now += 61  # longer than the PUT limit

    s3 = FakeS3(fail_journal=slow_once)
    result = ChangeWriter(s3, "bucket", clock=clock).write([change("a", 1)])
    assert result.failed == []
    first, second = s3.journal_objects()
    assert first["Key"] != second["Key"]
    assert first["Body"] == second["Body"]
    assert s3.order[-1].endswith(key_of("a").rsplit("/", 1)[1])  # items after both


def test_journal_puts_slow_three_times_fail_the_batch() -> None:
    clock = Clock()

    def always_slow(_: dict[str, Any]) -> None:
        clock.now += 61

    s3 = FakeS3(fail_journal=always_slow)
    result = ChangeWriter(s3, "bucket", clock=clock).write([change("a", 1)])
    assert [f.sequence_number for f in result.failed] == ["1"]
    assert "took longer than 60 s three times" in result.failed[0].reason
    assert s3.puts == []


def test_no_item_put_starts_after_the_deadline() -> None:
    clock = Clock()

    def stall(put: dict[str, Any]) -> None:
        clock.now += 11 * 60  # the first item put ends 11 minutes after the journal

    s3 = FakeS3(fail=stall)
    changes = [change("a", 1), change("a", 2)]
    result = ChangeWriter(s3, "bucket", clock=clock).write(changes)
    # The first one was written late: journaled again. The second never started.
    assert [c.sequence_number for c in result.written] == ["1"]
    assert [(f.sequence_number, f.reason.split(":")[0]) for f in result.failed] == [
        ("2", "not attempted")
    ]
    assert "journal object is too old" in result.failed[0].reason
    assert [len(decode_journal(p["Body"], "j")) for p in s3.journal_objects()] == [2, 1]
    assert result.journal_objects == 2
    assert s3.journaled_sequences() == ["1", "2", "1"]


def test_a_late_item_whose_second_journal_fails_is_reported() -> None:
    clock = Clock()
    journals = [0]

    def stall(_: dict[str, Any]) -> None:
        clock.now += 11 * 60

    def second_journal_fails(put: dict[str, Any]) -> None:
        if put["Key"].endswith(".jsonl.gz"):
            journals[0] += 1
            if journals[0] == 2:
                refuse(put)

    s3 = FakeS3(fail=stall, fail_journal=second_journal_fails)
    result = ChangeWriter(s3, "bucket", clock=clock).write([change("a", 1)])
    assert result.written == []
    assert [f.sequence_number for f in result.failed] == ["1"]
    assert "journal not written again" in result.failed[0].reason


def test_one_journal_object_per_table() -> None:
    s3 = FakeS3()
    other = Change(**{**change("a", 9).__dict__, "table": "customers"})
    result = ChangeWriter(s3, "bucket").write([change("a", 1), other, change("b", 2)])
    assert result.journal_objects == 2
    tables = sorted(p["Key"].split("/")[0] for p in s3.journal_objects())
    assert tables == ["customers", "orders"]
