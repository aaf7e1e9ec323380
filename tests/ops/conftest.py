"""Fixtures of the operations tests: in-process moto with a clean fake-AWS environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto.dynamodb.models.table
import moto.s3.models
import pytest
from moto import mock_aws

from backup_lambda import handler as backup_handler
from tests.ops.helpers import BUCKET, ChangeLog, naive_utc


@pytest.fixture(scope="session")
def ops_session() -> boto3.session.Session:
    """One session for the tests' own clients (service models load once)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture
def ops_env(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's fake AWS environment (tests/conftest.py), no scheduled-run settings of
    the host, and no metrics output."""
    for name in (
        "MAX_RPO_SECONDS",
        "MAX_RESTORE_SECONDS",
        "SETTLE_SECONDS",
        "VERIFY_JOURNAL_EVERY",
        "FULL_EVERY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ddb-backup-tests")
    # The Lambda builds its S3 client once per container: every test starts cold.
    monkeypatch.setattr(backup_handler, "_writer", None)


@pytest.fixture
def aws(
    ops_env: None, ops_session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    with mock_aws():
        # mock_aws blanks boto3's default session; the handler's boto3.client() reuses ours.
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", ops_session)
        yield


@pytest.fixture
def s3(aws: None, ops_session: boto3.session.Session) -> Any:
    return ops_session.client("s3")


@pytest.fixture
def dynamodb(aws: None, ops_session: boto3.session.Session) -> Any:
    return ops_session.client("dynamodb")


@pytest.fixture
def streams(aws: None, ops_session: boto3.session.Session) -> Any:
    return ops_session.client("dynamodbstreams")


@pytest.fixture
def bucket(s3: Any) -> str:
    """The versioned backup bucket."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest.fixture
def log(s3: Any, bucket: str) -> ChangeLog:
    return ChangeLog(s3, bucket)


SetClock = Callable[[int | None], None]


@pytest.fixture
def stream_clock(monkeypatch: pytest.MonkeyPatch) -> SetClock:
    """Sets the event time (epoch microseconds) moto stamps on stream records; None: real."""
    real = moto.dynamodb.models.table.utcnow

    def set_clock(micros: int | None) -> None:
        monkeypatch.setattr(
            moto.dynamodb.models.table,
            "utcnow",
            real if micros is None else (lambda: naive_utc(micros)),
        )

    return set_clock


@pytest.fixture
def s3_clock(monkeypatch: pytest.MonkeyPatch) -> SetClock:
    """Sets moto's S3 clock (LastModified of new objects), epoch microseconds; None: real."""
    real = moto.s3.models.utcnow

    def set_clock(micros: int | None) -> None:
        monkeypatch.setattr(
            moto.s3.models, "utcnow", real if micros is None else (lambda: naive_utc(micros))
        )

    return set_clock
