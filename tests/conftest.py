"""Shared fixtures: a clean fake-AWS environment, moto clients, a streamed table, the handler."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backup_lambda import handler as backup_handler
from backup_lambda.ddbjson import Item
from compaction.history import HistoryEntry, item_history
from jobs.demo.standin import FakeLambdaContext
from jobs.demo.streams import lambda_event
from tests.dynalite import dynalite_endpoint  # noqa: F401 - the dynalite tier's server
from tests.support import BUCKET, StreamTable, create_stream_table


@pytest.fixture(scope="session")
def shared_session() -> boto3.session.Session:
    """One boto3 session per worker: clients share its loaded service models (fast setup)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture(autouse=True)
def aws_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    shared_session: boto3.session.Session,
) -> None:
    """Fake credentials and a fixed region; nothing from the host's AWS setup leaks in."""
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "BACKUP_")) or name in {
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "SETTLE_SECONDS",
            "MAX_RPO_SECONDS",
            "MAX_RESTORE_SECONDS",
            "VERIFY_JOURNAL_EVERY",
            "FULL_EVERY",
            "XDG_CONFIG_HOME",
        }:
            monkeypatch.delenv(name)
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    # No ddb-backup.toml of the developer's leaks in: the config file is an empty one.
    no_config = tmp_path_factory.getbasetemp() / "no-ddb-backup-config.toml"
    no_config.touch()
    monkeypatch.setenv("DDB_BACKUP_CONFIG", str(no_config))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # moto's DynamoDB Streams needs this under mock_aws (no account-id endpoints).
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ddb-backup-tests")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ddb-backup")
    # query's cache of verified snapshot files: never the user's own
    monkeypatch.setenv("DDB_BACKUP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    # boto3.client() (the handler's client too) uses the fake-credential session.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", shared_session)
    # The handler builds its S3 client once per container; every test starts cold.
    monkeypatch.setattr(backup_handler, "_writer", None)


@pytest.fixture
def aws(shared_session: boto3.session.Session) -> Iterator[None]:
    with mock_aws():
        # mock_aws blanks boto3's default session; reuse ours (its models are loaded).
        boto3.DEFAULT_SESSION = shared_session
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    """A versioned backup bucket, as the backup needs."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest.fixture
def make_table(aws: None) -> Callable[..., StreamTable]:
    """Factory: a moto table with a NEW_AND_OLD_IMAGES stream."""
    dynamodb = boto3.client("dynamodb")
    streams = boto3.client("dynamodbstreams")

    def make(name: str = "orders", **key_types: str) -> StreamTable:
        return create_stream_table(dynamodb, streams, name, key_types or {"pk": "S", "sk": "N"})

    return make


@pytest.fixture
def orders(make_table: Callable[..., StreamTable]) -> StreamTable:
    """The table `orders` with key (pk: S, sk: N)."""
    return make_table("orders")


Deliver = Callable[[list[dict[str, Any]]], dict[str, Any]]


@pytest.fixture
def deliver(monkeypatch: pytest.MonkeyPatch, bucket: str) -> Deliver:
    """Invoke the Lambda handler the way Lambda does, with BACKUP_BUCKET set."""
    monkeypatch.setenv("BACKUP_BUCKET", bucket)

    def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
        return backup_handler.handler(lambda_event(records), FakeLambdaContext())

    return invoke


History = Callable[..., list[HistoryEntry]]


@pytest.fixture
def history(s3: Any, bucket: str) -> History:
    """The stored history of one item, read back from S3 the way `ddb-backup history` does."""

    def read(keys: Item, table: str = "orders", prefix: str = "") -> list[HistoryEntry]:
        return item_history(s3, bucket, prefix, table, keys)

    return read
