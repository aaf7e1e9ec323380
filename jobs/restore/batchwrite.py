"""BatchWriteItem done right: 25 items and < 16 MB per request, bounded parallelism,
UnprocessedItems and throttling retried with exponential backoff and full jitter, an
optional write-capacity cap, and every item that cannot be written named with its reason
(a request DynamoDB rejects as invalid is split until the offending item is alone)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, StorageError

MAX_ITEMS_PER_BATCH = 25
MAX_REQUEST_BYTES = 16 * 1024 * 1024 - 64 * 1024  # 16 MB cap, with room for the envelope
_THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


# DynamoDB refuses the whole request when one item is invalid (too large, an empty key
# value, ...): the request is split until that item is alone, and only it fails.
_INVALID_ITEM_CODES = frozenset({"ValidationException"})


class RestoreWriteError(BackupError):
    """Items could not be written after every retry (they are named in the restore's report)."""


@dataclass(frozen=True)
class WriteRequest:
    request: dict[str, Any]  # {"PutRequest": {...}} or {"DeleteRequest": {...}}
    size: int  # bytes, for the request cap and the capacity estimate
    key: Item | None = None  # the item's key (stored form), to name it when it fails

    @property
    def capacity_units(self) -> int:
        return max(1, math.ceil(self.size / 1024))

    @property
    def action(self) -> str:
        return "put" if "PutRequest" in self.request else "delete"


@dataclass(frozen=True)
class UnwrittenItem:
    """An item the restore could not write: its key, put or delete, and why."""

    key: Item | None
    action: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action, "reason": self.reason}


class RateLimiter:
    """A token bucket of write capacity units per second (None: unlimited)."""

    def __init__(
        self,
        per_second: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = per_second
        self._clock = clock
        self._sleep = sleep
        self._tokens = per_second or 0.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self, units: int) -> None:
        if self._rate is None:
            return
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self._rate, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                # A request larger than a second's budget waits for a full bucket.
                needed = min(units, self._rate)
                if self._tokens >= needed:
                    self._tokens -= units
                    return
                wait = (needed - self._tokens) / self._rate
            self._sleep(wait)


@dataclass
class WriteStats:
    requests: int = 0  # BatchWriteItem calls
    items: int = 0  # items written or deleted
    retried_items: int = 0  # items sent again after UnprocessedItems or throttling
    throttled: int = 0  # calls that failed with a throttling error
    puts: int = 0  # of `items`, the puts
    deletes: int = 0  # of `items`, the deletes
    failed: list[UnwrittenItem] = field(default_factory=list)

    def add(self, other: WriteStats) -> None:
        self.requests += other.requests
        self.items += other.items
        self.retried_items += other.retried_items
        self.throttled += other.throttled
        self.puts += other.puts
        self.deletes += other.deletes
        self.failed += other.failed


class BatchWriter:
    """Writes requests to one table; `submit` many, then `close()` to wait and see errors.

    An item that cannot be written (invalid, or still throttled or unprocessed after every
    attempt) is recorded in `stats.failed`, never raised. By default the writer then
    stops taking new requests (`stopped`); with `skip_unwritable` it writes the rest.
    Errors that concern every request (access denied, no such table, no connection)
    raise StorageError from `submit` or `close`."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        workers: int = 8,
        max_wcu: float | None = None,
        max_attempts: int = 15,
        base_delay: float = 0.05,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        on_written: Callable[[int], None] | None = None,
        skip_unwritable: bool = False,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ddb-write")
        self._slots = threading.BoundedSemaphore(workers * 2)  # requests queued or in flight
        self._limiter = RateLimiter(max_wcu, sleep=sleep)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._on_written = on_written or (lambda n: None)
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._skip_unwritable = skip_unwritable
        self.stopped = False  # an item failed and the writer takes no more requests
        self.stats = WriteStats()

    def submit(self, requests: Iterable[WriteRequest]) -> None:
        """Send the requests in batches; returns early once `stopped`."""
        batch: list[WriteRequest] = []
        size = 0
        for request in requests:
            if self.stopped:
                return
            if batch and (
                len(batch) == MAX_ITEMS_PER_BATCH or size + request.size > MAX_REQUEST_BYTES
            ):
                self._send(batch)
                batch, size = [], 0
            batch.append(request)
            size += request.size
        if batch and not self.stopped:
            self._send(batch)

    def _send(self, batch: list[WriteRequest]) -> None:
        self._raise_first_error()
        self._slots.acquire()
        future = self._pool.submit(self._write_batch, batch)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def close(self) -> WriteStats:
        """Wait for every submitted request; raise the first failure."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return self.stats

    def _raise_first_error(self) -> None:
        done = [f for f in self._futures if f.done()]
        for future in done:
            future.result()
        self._futures = [f for f in self._futures if not f.done()]

    def _write_batch(self, batch: list[WriteRequest]) -> None:
        pending = list(batch)
        units = sum(r.capacity_units for r in batch)
        reason = "not written"
        for attempt in range(self._max_attempts):
            self._limiter.acquire(units)
            requests = [r.request for r in pending]
            try:
                response = self._dynamodb.batch_write_item(RequestItems={self._table: requests})
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code in _INVALID_ITEM_CODES:
                    self._split_invalid(pending, e)
                    return
                if code not in _THROTTLE_CODES:
                    raise StorageError(f"BatchWriteItem on {self._table}: {code}: {e}") from e
                with self._lock:
                    self.stats.throttled += 1
                    self.stats.retried_items += len(pending)
                reason = f"throttled ({code}) on each of {self._max_attempts} attempts"
                self._backoff(attempt)
                continue
            except BotoCoreError as e:
                raise StorageError(f"BatchWriteItem on {self._table} failed: {e}") from e
            returned = response.get("UnprocessedItems", {}).get(self._table, [])
            unprocessed = _match(pending, returned)
            done = [r for r in pending if not any(r is u for u in unprocessed)]
            with self._lock:
                self.stats.requests += 1
                self.stats.items += len(done)
                self.stats.puts += sum(1 for r in done if r.action == "put")
                self.stats.deletes += len(done) - sum(1 for r in done if r.action == "put")
                self.stats.retried_items += len(unprocessed)
            self._on_written(len(done))
            if not unprocessed:
                return
            units = max(1, units * len(unprocessed) // len(pending))
            pending = unprocessed
            reason = f"unprocessed (throttled) on each of {self._max_attempts} attempts"
            self._backoff(attempt)
        self._fail(pending, reason)

    def _split_invalid(self, pending: list[WriteRequest], error: ClientError) -> None:
        """DynamoDB refused the whole request: find the invalid items by halving it."""
        if len(pending) == 1:
            message = error.response.get("Error", {}).get("Message", "") or str(error)
            self._fail(pending, f"refused by DynamoDB: {message}")
            return
        middle = len(pending) // 2
        for half in (pending[:middle], pending[middle:]):
            self._write_batch(half)

    def _fail(self, items: list[WriteRequest], reason: str) -> None:
        with self._lock:
            self.stats.failed += [UnwrittenItem(r.key, r.action, reason) for r in items]
            if not self._skip_unwritable:
                self.stopped = True

    def _backoff(self, attempt: int) -> None:
        ceiling = min(self._max_delay, self._base_delay * 2**attempt)
        self._sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security


def _match(pending: list[WriteRequest], returned: list[dict[str, Any]]) -> list[WriteRequest]:
    """The pending requests DynamoDB returned as unprocessed (it returns copies of the
    requests; a batch never holds two requests for one key, so equality finds each)."""
    left = list(pending)
    matched = []
    for request in returned:
        found = next((r for r in left if r.request == request), None)
        if found is None:  # not one of ours as sent: keep it as it came back
            found = WriteRequest(request, len(repr(request)))
        else:
            left.remove(found)
        matched.append(found)
    return matched
