"""The injector itself: each fault reaches the caller the way the real one would."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from jobs.cli.clients import AwsSettings, make_client
from tests.faults.injector import (
    BODY_RESET,
    BODY_SHORT,
    CONNECTION_RESET,
    LOST_RESPONSE,
    SLOW_DOWN,
    THROUGHPUT,
    FaultInjector,
    ignore_if_none_match,
    scan_pages,
)
from tests.jobs.restore.restore_fixtures import Backup, key_of, put_items

ATTEMPTS = 9  # jobs.cli.clients: standard retries, max_attempts=8 (botocore: 8 retries)


@pytest.fixture
def s3(world: Backup) -> Any:
    """A client built as the CLI builds its clients."""
    return make_client("s3", AwsSettings())


def test_the_nth_call_fails_k_times_and_botocore_retries_it(
    world: Backup, faults: FaultInjector, s3: Any
) -> None:
    rule = faults.inject("s3", "PutObject", SLOW_DOWN, nth=2, times=3)
    for n in range(3):
        s3.put_object(Bucket=world.bucket, Key=f"k{n}", Body=b"x")
    assert rule.struck == 3
    assert faults.count("s3", "PutObject") == 6  # 1 + (3 failed + 1) + 1
    assert faults.count("s3", "PutObject", faulted=True) == 3
    assert len(faults.backoffs) == 3


def test_a_persistent_fault_outlasts_the_retries(
    world: Backup, faults: FaultInjector, s3: Any
) -> None:
    faults.inject("s3", "PutObject", SLOW_DOWN, times=None)
    with pytest.raises(ClientError, match="SlowDown"):
        s3.put_object(Bucket=world.bucket, Key="k", Body=b"x")
    assert faults.count("s3", "PutObject") == ATTEMPTS


def test_only_requests_the_filter_takes_fail(world: Backup, faults: FaultInjector, s3: Any) -> None:
    faults.inject("s3", "PutObject", CONNECTION_RESET, times=None, where=lambda r: "/b" in r.url)
    s3.put_object(Bucket=world.bucket, Key="a", Body=b"x")
    with pytest.raises(ConnectionClosedError):
        s3.put_object(Bucket=world.bucket, Key="b", Body=b"x")
    assert faults.count("s3", "PutObject", faulted=False) == 1


def test_a_lost_response_was_applied(world: Backup, faults: FaultInjector, s3: Any) -> None:
    faults.inject("s3", "PutObject", LOST_RESPONSE, times=None)
    with pytest.raises(ReadTimeoutError):
        s3.put_object(Bucket=world.bucket, Key="k", Body=b"x")
    faults.clear()
    versions = s3.list_object_versions(Bucket=world.bucket, Prefix="k", MaxKeys=100)["Versions"]
    assert faults.count("s3", "PutObject") == len(versions)  # every attempt was stored


@pytest.mark.parametrize(
    ("fault", "error"),
    [(BODY_RESET, ResponseStreamingError), (BODY_SHORT, IncompleteReadError)],
    ids=["reset", "short"],
)
def test_a_broken_body_fails_the_read_not_the_request(
    world: Backup, faults: FaultInjector, s3: Any, fault: Any, error: type[Exception]
) -> None:
    s3.put_object(Bucket=world.bucket, Key="k", Body=b"0123456789")
    faults.inject("s3", "GetObject", fault)
    response = s3.get_object(Bucket=world.bucket, Key="k")
    with pytest.raises(error):
        response["Body"].read()
    assert s3.get_object(Bucket=world.bucket, Key="k")["Body"].read() == b"0123456789"


def test_dynamodb_throttling_is_retried(world: Backup, faults: FaultInjector) -> None:
    dynamodb = make_client("dynamodb", AwsSettings())
    faults.inject("dynamodb", "DescribeTable", THROUGHPUT, times=ATTEMPTS - 1)
    assert dynamodb.describe_table(TableName="orders")["Table"]["TableName"] == "orders"
    faults.inject("dynamodb", "DescribeTable", THROUGHPUT, times=None)
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        dynamodb.describe_table(TableName="orders")


def test_scan_pages_and_a_server_ignoring_if_none_match(
    world: Backup, faults: FaultInjector, s3: Any
) -> None:
    put_items(world.dynamodb, "orders", [key_of("p", n) for n in range(5)])
    faults.rewrites += [scan_pages(2), ignore_if_none_match]
    pages = list(world.dynamodb.get_paginator("scan").paginate(TableName="orders"))
    assert [len(p["Items"]) for p in pages][:3] == [2, 2, 1]
    for _ in range(2):
        s3.put_object(Bucket=world.bucket, Key="m", Body=b"x", IfNoneMatch="*")
    assert len(s3.list_object_versions(Bucket=world.bucket, Prefix="m")["Versions"]) == 2
