"""Fixtures of the compaction tests: in-process moto with a simulated clock."""

from __future__ import annotations

import os
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import moto.core.responses
import moto.s3.models
import pytest
from moto import mock_aws

import compaction.clock
from tests.compaction.helpers import BUCKET, ITEMS, ONLY, SEC, SimClock, Store

_LOADERS: dict[str | None, botocore.loaders.Loader] = {}


def _shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
    """One botocore data loader for every session of the test run.

    The CLI builds a new session per client, and each session would parse the S3 and
    DynamoDB service models again (most of the time of these tests).
    """
    if search_path_string not in _LOADERS:
        _LOADERS[search_path_string] = botocore.loaders.create_loader(search_path_string)
    return _LOADERS[search_path_string]


@pytest.fixture
def fake_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials, a fixed region, and nothing of the host's AWS setup."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in {
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
        }:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(botocore.session, "create_loader", _shared_loader)


@pytest.fixture
def moto_aws(fake_aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def sim_clock(monkeypatch: pytest.MonkeyPatch) -> SimClock:
    """S3's clock (moto's LastModified and response Date) and the host's, as the compactor
    and the CLI read them (compaction.clock), a day in the real past.

    The real past, so that checks against the real clock ("as-of in the future") pass.
    """
    start = (int(time.time()) - 86_400) * SEC
    clock = SimClock(start)
    monkeypatch.setattr(moto.s3.models, "utcnow", clock.utcnow)
    monkeypatch.setattr(moto.core.responses, "utcnow", clock.utcnow)
    monkeypatch.setattr(compaction.clock, "time", types.SimpleNamespace(time=clock.time))
    return clock


@pytest.fixture
def s3_client(moto_aws: None) -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def ddb_client(moto_aws: None) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def backup_bucket(s3_client: Any, sim_clock: SimClock) -> str:
    s3_client.create_bucket(Bucket=BUCKET)
    s3_client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest.fixture
def store(
    request: pytest.FixtureRequest, s3_client: Any, backup_bucket: str, sim_clock: SimClock
) -> Store:
    """A change store; parametrize it (indirect) with a mode of helpers.MODES: with the
    journal, it is declared complete from the start (and journal-only from the start)."""
    mode = getattr(request, "param", ITEMS)
    store = Store(s3_client, backup_bucket, sim_clock, mode=mode)
    if mode != ITEMS:
        store.declare(0, 0 if mode == ONLY else None)
    return store


@pytest.fixture
def orders_table(ddb_client: Any) -> str:
    """A live moto table `orders` (pk: S, sk: N), so DescribeTable gives the key schema."""
    ddb_client.create_table(
        TableName="orders",
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return "orders"
