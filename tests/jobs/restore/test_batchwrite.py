"""BatchWriter and RateLimiter against a fake DynamoDB client (no AWS, no real sleeping)."""

from __future__ import annotations

import json
import math
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from backup_lambda.errors import StorageError
from jobs.restore import batchwrite
from jobs.restore.batchwrite import (
    MAX_ITEMS_PER_BATCH,
    MAX_REQUEST_BYTES,
    BatchWriter,
    RateLimiter,
    UnwrittenItem,
    WriteRequest,
)
from jobs.restore.ddbitems import item_size, to_client_item

TABLE = "target"


def put(i: int, payload: str = "") -> WriteRequest:
    item = {"pk": {"S": f"item-{i}"}, "v": {"S": payload}}
    return WriteRequest(
        {"PutRequest": {"Item": to_client_item(item)}}, item_size(item), {"pk": item["pk"]}
    )


def pk_of(request: dict[str, Any]) -> str:
    return str(request["PutRequest"]["Item"]["pk"]["S"])


def throttle_error(code: str = "ProvisionedThroughputExceededException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "slow down"}}, "BatchWriteItem")


Behaviour = Callable[[int, list[dict[str, Any]]], Any]


class FakeDynamoDB:
    """Records BatchWriteItem calls; `behaviour(call_number, requests)` may return a list
    of requests to report as unprocessed, or raise."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or (lambda n, requests: [])
        self.calls: list[list[dict[str, Any]]] = []
        self.written: list[str] = []
        self._lock = threading.Lock()

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> Any:  # noqa: N803
        assert list(RequestItems) == [TABLE]
        requests = RequestItems[TABLE]
        with self._lock:
            number = len(self.calls)
            self.calls.append(requests)
        unprocessed = self.behaviour(number, requests) or []
        with self._lock:
            self.written += [pk_of(r) for r in requests if r not in unprocessed]
        return {"UnprocessedItems": {TABLE: unprocessed} if unprocessed else {}}


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)


def write_all(
    fake: FakeDynamoDB, requests: list[WriteRequest], **options: Any
) -> tuple[batchwrite.WriteStats, Sleeps]:
    sleeps = Sleeps()
    options.setdefault("sleep", sleeps)
    writer = BatchWriter(fake, TABLE, **options)
    try:
        writer.submit(requests)
    finally:
        stats = writer.close()
    return stats, sleeps


@pytest.mark.parametrize("count", [1, 24, 25, 26, 101, 250])
def test_calls_are_ceil_n_over_25_when_nothing_is_unprocessed(count: int) -> None:
    fake = FakeDynamoDB()
    stats, sleeps = write_all(fake, [put(i) for i in range(count)])
    assert len(fake.calls) == stats.requests == math.ceil(count / 25)
    assert all(len(call) <= MAX_ITEMS_PER_BATCH for call in fake.calls)
    assert sorted(fake.written) == sorted(f"item-{i}" for i in range(count))
    assert stats.items == count
    assert (stats.retried_items, stats.throttled) == (0, 0)
    assert sleeps.calls == []


def test_no_requests_no_calls() -> None:
    fake = FakeDynamoDB()
    stats, _ = write_all(fake, [])
    assert (fake.calls, stats.requests) == ([], 0)


def test_large_items_stay_under_the_request_cap() -> None:
    """~400 KB items: never more than 25 a request, never over 16 MB of items."""
    requests = [put(i, "x" * 399_000) for i in range(60)]
    fake = FakeDynamoDB()
    write_all(fake, requests)
    for call in fake.calls:
        body = json.dumps({"RequestItems": {TABLE: call}}, default=str)
        assert len(call) <= 25
        assert len(body.encode()) < 16 * 1024 * 1024
    assert len(fake.written) == 60


def test_request_cap_splits_batches_before_25_items() -> None:
    """Requests whose declared size is 1.5 MB: the byte cap, not the count, ends a batch."""
    requests = [WriteRequest(put(i).request, 1_500_000) for i in range(40)]
    fake = FakeDynamoDB()
    stats, _ = write_all(fake, requests)
    per_batch = MAX_REQUEST_BYTES // 1_500_000
    assert per_batch < 25
    assert [len(c) for c in fake.calls] == [per_batch] * (40 // per_batch) + (
        [40 % per_batch] if 40 % per_batch else []
    )
    assert all(len(c) * 1_500_000 <= MAX_REQUEST_BYTES for c in fake.calls)
    assert stats.items == 40


def test_a_request_larger_than_the_cap_goes_alone() -> None:
    requests = [put(0), WriteRequest(put(1).request, MAX_REQUEST_BYTES + 1), put(2)]
    fake = FakeDynamoDB()
    write_all(fake, requests, workers=1)
    assert [[pk_of(r) for r in c] for c in fake.calls] == [["item-0"], ["item-1"], ["item-2"]]


def test_unprocessed_items_are_retried_until_all_are_written() -> None:
    def half_unprocessed(number: int, requests: list[dict[str, Any]]) -> Any:
        return requests[len(requests) // 2 :] if number < 6 and len(requests) > 1 else []

    fake = FakeDynamoDB(half_unprocessed)
    stats, sleeps = write_all(fake, [put(i) for i in range(50)], workers=1)
    assert sorted(fake.written) == sorted(f"item-{i}" for i in range(50))
    assert len(fake.written) == 50  # nothing written twice
    assert stats.items == 50
    # The first batch of 25 comes back halved five times (13, 7, 4, 2, 1 unprocessed)
    # before its last item is written; the second batch is written at once.
    assert [len(c) for c in fake.calls] == [25, 13, 7, 4, 2, 1, 25]
    assert stats.retried_items == 13 + 7 + 4 + 2 + 1
    assert stats.requests == len(fake.calls)
    assert len(sleeps.calls) == 5  # one backoff per partial answer
    # A retry sends exactly what came back unprocessed.
    assert fake.calls[1] == fake.calls[0][12:]


def test_throttling_errors_are_retried() -> None:
    codes = [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ]

    def throttle_three_times(number: int, requests: list[dict[str, Any]]) -> Any:
        if number < 3:
            raise throttle_error(codes[number])
        return []

    fake = FakeDynamoDB(throttle_three_times)
    stats, sleeps = write_all(fake, [put(i) for i in range(25)], workers=1)
    assert len(fake.written) == 25
    assert stats.throttled == 3
    assert stats.requests == 1  # successful calls
    assert stats.retried_items == 75
    assert len(sleeps.calls) == 3


def test_a_permanent_error_raises_without_retrying() -> None:
    def refuse(number: int, requests: list[dict[str, Any]]) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchWriteItem"
        )

    fake = FakeDynamoDB(refuse)
    with pytest.raises(StorageError, match="BatchWriteItem on target: AccessDeniedException"):
        write_all(fake, [put(i) for i in range(10)])
    assert len(fake.calls) == 1


def _refuse_item(bad: set[str]) -> Behaviour:
    """DynamoDB refuses a whole request that holds an invalid item, and writes nothing."""

    def behaviour(number: int, requests: list[dict[str, Any]]) -> Any:
        if any(pk_of(r) in bad for r in requests):
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationException",
                        "Message": "Item size has exceeded the maximum allowed size",
                    }
                },
                "BatchWriteItem",
            )
        return []

    return behaviour


def test_an_invalid_item_is_named_and_the_others_of_its_batch_are_written() -> None:
    # GIVEN a batch of 25 where DynamoDB refuses item-7 (and with it the whole request)
    fake = FakeDynamoDB(_refuse_item({"item-7"}))
    writer = BatchWriter(fake, TABLE, workers=1, sleep=Sleeps())
    # WHEN it is written
    writer.submit([put(i) for i in range(25)])
    stats = writer.close()
    # THEN the request is halved until item-7 is alone, the 24 others are written, and
    # item-7 is named with DynamoDB's reason
    assert sorted(fake.written) == sorted(f"item-{i}" for i in range(25) if i != 7)
    assert stats.failed == [
        UnwrittenItem(
            {"pk": {"S": "item-7"}},
            "put",
            "refused by DynamoDB: Item size has exceeded the maximum allowed size",
        )
    ]
    assert (stats.items, stats.puts, stats.deletes) == (24, 24, 0)
    assert len(fake.calls) <= 1 + 2 * 5  # a halving per level, log2(25) levels
    assert writer.stopped


def test_after_an_unwritable_item_no_further_batch_is_sent() -> None:
    fake = FakeDynamoDB(_refuse_item({"item-3"}))
    stats, _ = write_all(fake, [put(i) for i in range(25 * 20)], workers=1)
    assert [f.key for f in stats.failed] == [{"pk": {"S": "item-3"}}]
    assert len(fake.written) == 24  # the other items of the first batch only
    assert len(fake.calls) < 20


def test_skip_unwritable_writes_every_other_item() -> None:
    fake = FakeDynamoDB(_refuse_item({"item-3", "item-260"}))
    stats, _ = write_all(fake, [put(i) for i in range(25 * 20)], skip_unwritable=True)
    assert sorted(f.key["pk"]["S"] for f in stats.failed if f.key) == ["item-260", "item-3"]
    assert len(fake.written) == 500 - 2
    assert stats.items == 498


def test_a_connection_error_raises_a_storage_error() -> None:
    def unreachable(number: int, requests: list[dict[str, Any]]) -> Any:
        raise EndpointConnectionError(endpoint_url="http://nowhere")

    with pytest.raises(StorageError, match="BatchWriteItem on target failed"):
        write_all(FakeDynamoDB(unreachable), [put(0)])


def test_permanent_error_in_a_later_batch_stops_the_writer() -> None:
    def fail_second(number: int, requests: list[dict[str, Any]]) -> Any:
        if number == 1:
            raise ClientError({"Error": {"Code": "AccessDeniedException"}}, "BatchWriteItem")
        return []

    fake = FakeDynamoDB(fail_second)
    with pytest.raises(StorageError, match="AccessDeniedException"):
        write_all(fake, [put(i) for i in range(25 * 40)], workers=1)
    assert len(fake.calls) < 40  # the producer stopped early


def test_items_that_stay_unprocessed_are_named() -> None:
    fake = FakeDynamoDB(lambda number, requests: requests[-2:])
    stats, _ = write_all(fake, [put(i) for i in range(10)], max_attempts=4)
    assert stats.failed == [
        UnwrittenItem(
            {"pk": {"S": f"item-{i}"}}, "put", "unprocessed (throttled) on each of 4 attempts"
        )
        for i in (8, 9)
    ]
    assert len(fake.calls) == 4
    assert sorted(fake.written) == sorted(f"item-{i}" for i in range(8))
    assert stats.items == 8


def test_persistent_throttling_names_the_items() -> None:
    def always(number: int, requests: list[dict[str, Any]]) -> Any:
        raise throttle_error()

    fake = FakeDynamoDB(always)
    stats, _ = write_all(fake, [put(i) for i in range(3)], max_attempts=5)
    assert [f.key for f in stats.failed] == [{"pk": {"S": f"item-{i}"}} for i in range(3)]
    assert {f.reason for f in stats.failed} == {
        "throttled (ProvisionedThroughputExceededException) on each of 5 attempts"
    }
    assert len(fake.calls) == 5
    assert stats.items == 0


def test_deletes_are_counted_apart_from_puts() -> None:
    class Accepting:
        def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:  # noqa: N803
            return {"UnprocessedItems": {}}

    deletes = [
        WriteRequest({"DeleteRequest": {"Key": {"pk": {"S": f"gone-{i}"}}}}, 20, None)
        for i in range(3)
    ]
    stats, _ = write_all(Accepting(), [put(1), *deletes, put(2)])  # type: ignore[arg-type]
    assert (stats.items, stats.puts, stats.deletes) == (5, 2, 3)
    assert [r.action for r in deletes] == ["delete"] * 3
    assert put(1).action == "put"


def test_backoff_grows_exponentially_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    ceilings: list[tuple[float, float]] = []

    def upper(low: float, high: float) -> float:
        ceilings.append((low, high))
        return high

    monkeypatch.setattr(batchwrite.random, "uniform", upper)
    fake = FakeDynamoDB(lambda number, requests: requests if number < 8 else [])
    _, sleeps = write_all(fake, [put(0)], base_delay=0.1, max_delay=5.0)
    assert sleeps.calls == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert all(low == 0 for low, _ in ceilings)


def test_backoff_is_jittered() -> None:
    random.seed(1234)
    fake = FakeDynamoDB(lambda number, requests: requests if number < 10 else [])
    _, sleeps = write_all(fake, [put(0)], base_delay=1.0, max_delay=1000.0)
    ceilings = [1.0 * 2**attempt for attempt in range(10)]
    assert len(sleeps.calls) == 10
    assert all(0 <= s <= c for s, c in zip(sleeps.calls, ceilings, strict=True))
    assert len(set(sleeps.calls)) == 10  # random, not a fixed schedule
    assert any(s < c * 0.9 for s, c in zip(sleeps.calls, ceilings, strict=True))
    # Still exponential on the whole: the later half waits much longer than the first.
    assert sum(sleeps.calls[5:]) > 4 * sum(sleeps.calls[:5])


def test_workers_write_in_parallel_but_bounded() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def slow(number: int, requests: list[dict[str, Any]]) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        release.wait(0.05)
        with lock:
            in_flight -= 1
        return []

    fake = FakeDynamoDB(slow)
    write_all(fake, [put(i) for i in range(25 * 12)], workers=3)
    assert 1 < peak <= 3
    assert len(fake.written) == 300


def test_on_written_reports_progress() -> None:
    counts: list[int] = []
    fake = FakeDynamoDB(lambda number, requests: requests[:5] if number == 0 else [])
    write_all(fake, [put(i) for i in range(30)], workers=1, on_written=counts.append)
    assert counts == [20, 5, 5]


def test_capacity_units_round_up_per_kilobyte() -> None:
    assert WriteRequest({}, 1).capacity_units == 1
    assert WriteRequest({}, 1024).capacity_units == 1
    assert WriteRequest({}, 1025).capacity_units == 2
    assert WriteRequest({}, 400_000).capacity_units == 391


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += max(seconds, 1e-6)  # a real sleep always lets some time pass


@pytest.mark.parametrize(("rate", "units", "count"), [(10, 1, 200), (100, 7, 300), (5, 3, 40)])
def test_rate_limiter_caps_the_rate(rate: float, units: int, count: int) -> None:
    fake = FakeClock()
    limiter = RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)
    start = fake.now
    for _ in range(count):
        limiter.acquire(units)
    elapsed = fake.now - start
    total = units * count
    # A full bucket (one second's worth) may go at once; the rest at `rate` per second.
    assert total <= rate * elapsed + rate
    assert elapsed == pytest.approx((total - rate) / rate, abs=units / rate + 1e-6)


def test_rate_limiter_refills_with_time() -> None:
    fake = FakeClock()
    limiter = RateLimiter(10, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire(10)
    assert fake.sleeps == []
    fake.now += 0.5  # half a second passes elsewhere
    limiter.acquire(5)
    assert fake.sleeps == []
    limiter.acquire(5)
    assert sum(fake.sleeps) == pytest.approx(0.5)


def test_rate_limiter_lets_a_request_above_one_second_budget_through() -> None:
    fake = FakeClock()
    limiter = RateLimiter(10, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire(25)  # more than the bucket holds: waits for a full bucket, then goes
    assert fake.sleeps == []
    limiter.acquire(1)  # ...and the debt is paid before the next request
    assert sum(fake.sleeps) == pytest.approx(1.6)


def test_rate_limiter_unlimited_never_sleeps() -> None:
    fake = FakeClock()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    for _ in range(1000):
        limiter.acquire(400)
    assert fake.sleeps == []


def test_batch_writer_passes_capacity_to_the_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    acquired: list[int] = []

    class Recording(RateLimiter):
        def acquire(self, units: int) -> None:
            acquired.append(units)

    monkeypatch.setattr(batchwrite, "RateLimiter", Recording)
    fake = FakeDynamoDB(lambda number, requests: requests[20:] if number == 0 else [])
    requests = [WriteRequest(put(i).request, 2048) for i in range(25)]
    write_all(fake, requests, workers=1, max_wcu=50)
    assert acquired == [50, 10]  # 25 items of 2 WCU, then the 5 unprocessed ones
