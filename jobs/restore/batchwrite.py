"""BatchWriteItem done right: 25 items and < 16 MB per request, bounded parallelism,
UnprocessedItems and throttling retried with exponential backoff and full jitter, and
an optional write-capacity cap."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import BackupError, StorageError

MAX_ITEMS_PER_BATCH = 25
MAX_REQUEST_BYTES = 16 * 1024 * 1024 - 64 * 1024  # 16 MB cap, with room for the envelope
_THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


class RestoreWriteError(BackupError):
    """Items could not be written after every retry."""


@dataclass(frozen=True)
class WriteRequest:
    request: dict[str, Any]  # {"PutRequest": {...}} or {"DeleteRequest": {...}}
    size: int  # bytes, for the request cap and the capacity estimate

    @property
    def capacity_units(self) -> int:
        return max(1, math.ceil(self.size / 1024))


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

    def add(self, other: WriteStats) -> None:
        self.requests += other.requests
        self.items += other.items
        self.retried_items += other.retried_items
        self.throttled += other.throttled


class BatchWriter:
    """Writes requests to one table; `submit` many, then `close()` to wait and see errors."""

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
        self.stats = WriteStats()

    def submit(self, requests: Iterable[WriteRequest]) -> None:
        batch: list[WriteRequest] = []
        size = 0
        for request in requests:
            if batch and (
                len(batch) == MAX_ITEMS_PER_BATCH or size + request.size > MAX_REQUEST_BYTES
            ):
                self._send(batch)
                batch, size = [], 0
            batch.append(request)
            size += request.size
        if batch:
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
        pending = [r.request for r in batch]
        units = sum(r.capacity_units for r in batch)
        for attempt in range(self._max_attempts):
            self._limiter.acquire(units)
            try:
                response = self._dynamodb.batch_write_item(RequestItems={self._table: pending})
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code not in _THROTTLE_CODES:
                    raise StorageError(f"BatchWriteItem on {self._table}: {code}: {e}") from e
                with self._lock:
                    self.stats.throttled += 1
                    self.stats.retried_items += len(pending)
                self._backoff(attempt)
                continue
            except BotoCoreError as e:
                raise StorageError(f"BatchWriteItem on {self._table} failed: {e}") from e
            unprocessed = response.get("UnprocessedItems", {}).get(self._table, [])
            written = len(pending) - len(unprocessed)
            with self._lock:
                self.stats.requests += 1
                self.stats.items += written
                self.stats.retried_items += len(unprocessed)
            self._on_written(written)
            if not unprocessed:
                return
            units = max(1, units * len(unprocessed) // len(pending))
            pending = unprocessed
            self._backoff(attempt)
        raise RestoreWriteError(
            f"{len(pending)} items not written to {self._table} after {self._max_attempts} "
            "attempts (throttled or unprocessed); rerun the restore to converge"
        )

    def _backoff(self, attempt: int) -> None:
        ceiling = min(self._max_delay, self._base_delay * 2**attempt)
        self._sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not security
