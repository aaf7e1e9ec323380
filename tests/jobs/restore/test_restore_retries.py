"""Restores against moto with injected UnprocessedItems and throttling: every item lands."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError

from tests.jobs.restore.restore_fixtures import (
    SECOND,
    Backup,
    backup,  # noqa: F401 - fixture
    mocked,  # noqa: F401 - fixture
    now_us,
)


class Flaky:
    """Wraps a DynamoDB client: the first `unprocessed_calls` BatchWriteItem calls write only
    half of their items and return the rest as UnprocessedItems; the first `throttles`
    calls fail with ProvisionedThroughputExceededException before writing anything."""

    def __init__(self, client: Any, *, unprocessed_calls: int = 0, throttles: int = 0) -> None:
        self._client = client
        self._unprocessed = unprocessed_calls
        self._throttles = throttles
        self._lock = threading.Lock()
        self.calls: list[int] = []  # items per call, including the failed ones
        self.throttled = 0

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:  # noqa: N803
        ((table, requests),) = RequestItems.items()
        with self._lock:
            self.calls.append(len(requests))
            throttle = self._throttles > 0
            self._throttles -= throttle
            self.throttled += throttle
            split = self._unprocessed > 0 and not throttle
            self._unprocessed -= split
        if throttle:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "The level of configured provisioned throughput was exceeded",
                    }
                },
                "BatchWriteItem",
            )
        if not split:
            return self._client.batch_write_item(RequestItems=RequestItems)
        half = len(requests) // 2
        response = self._client.batch_write_item(RequestItems={table: requests[:half]})
        response["UnprocessedItems"] = {table: requests[half:]}
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _fill(b: Backup, items: int) -> int:
    base = now_us() - 1800 * SECOND
    for sk in range(items):
        b.item("p" + str(sk % 4), sk, base + sk * SECOND // 10, status="placed", n=sk)
    return base + 100 * SECOND


def _flaky_backup(b: Backup, **faults: int) -> tuple[Backup, Flaky]:
    flaky = Flaky(b.dynamodb, **faults)
    return Backup(b.s3, flaky, changes=b.changes), flaky


def test_unprocessed_items_are_retried_until_written(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup, 120)
    flaky_backup, flaky = _flaky_backup(backup, unprocessed_calls=6)
    report = flaky_backup.restore("target", as_of, create_table=True, verify=True)
    assert backup.target_items("target") == backup.oracle(as_of)
    assert report.verified
    assert report.writes.items == 120
    assert report.writes.retried_items > 0
    assert report.writes.requests == len(flaky.calls) > 5
    assert all(size <= 25 for size in flaky.calls)


def test_throttling_is_retried_until_written(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup, 80)
    flaky_backup, flaky = _flaky_backup(backup, throttles=3)
    report = flaky_backup.restore("target", as_of, create_table=True)
    assert backup.target_items("target") == backup.oracle(as_of)
    assert flaky.throttled == 3
    assert report.writes.throttled == 3
    assert report.writes.requests == 4  # ceil(80 / 25): throttled calls wrote nothing
    assert report.writes.items == 80


def test_throttling_and_unprocessed_together_in_a_diff_restore(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup, 60)
    half = as_of - 100 * SECOND + 3 * SECOND  # the first 31 items
    backup.restore("target", half, create_table=True)
    assert len(backup.target_items("target")) == 31
    flaky_backup, _ = _flaky_backup(backup, unprocessed_calls=2, throttles=2)
    report = flaky_backup.restore("target", as_of, workers=2)
    assert report.mode == "diff"
    assert backup.target_items("target") == backup.oracle(as_of)
    assert report.writes.throttled == 2
    assert report.puts == 29
    assert report.writes.items == report.puts + report.deletes
