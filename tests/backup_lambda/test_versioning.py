"""The backup bucket must keep object versions (issue 13, finding 8): the Lambda checks at
a cold start, fails the invocation for a bucket without (so Lambda retries the batch and
nothing is lost), and goes on once versioning is enabled; a denied check is no refusal."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from backup_lambda import handler as backup_handler
from backup_lambda.versioning import (
    UNKNOWN,
    UnversionedBucketError,
    enable_command,
    read_versioning,
    require_versioning,
)
from compaction.clock import BucketClock
from jobs.demo.standin import FakeLambdaContext
from tests.support import load_event

UNVERSIONED = "unversioned-backups"


def stored_keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture(params=["never enabled", "suspended"])
def unversioned(request: pytest.FixtureRequest, s3: Any) -> str:
    s3.create_bucket(Bucket=UNVERSIONED)
    if request.param == "suspended":
        for status in ("Enabled", "Suspended"):
            s3.put_bucket_versioning(Bucket=UNVERSIONED, VersioningConfiguration={"Status": status})
    return UNVERSIONED


def test_the_lambda_fails_the_batch_on_an_unversioned_bucket_then_writes_it_once_enabled(
    s3: Any, unversioned: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", unversioned)
    event = load_event("stream_event_orders")
    # WHEN a batch arrives at a cold start THEN the invocation fails (Lambda retries the
    # whole batch) with the fix, and nothing is written
    with pytest.raises(UnversionedBucketError) as refused:
        backup_handler.handler(event, FakeLambdaContext())
    assert enable_command(unversioned) in str(refused.value)
    assert "\n" not in str(refused.value)
    assert stored_keys(s3, unversioned) == []
    # WHEN versioning is enabled and Lambda retries THEN the batch is written
    s3.put_bucket_versioning(Bucket=unversioned, VersioningConfiguration={"Status": "Enabled"})
    assert backup_handler.handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert any("/v1/items/" in k for k in stored_keys(s3, unversioned))


def test_the_lambda_checks_once_per_cold_start(s3: Any, bucket: str, deliver: Any) -> None:
    records = load_event("stream_event_orders")["Records"]
    assert deliver(records) == {"batchItemFailures": []}
    # a warm container does not ask again (versioning suspended now goes unseen) ...
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert deliver(records) == {"batchItemFailures": []}
    # ... a cold start does
    backup_handler._writer = None
    with pytest.raises(UnversionedBucketError, match="versioning is suspended"):
        deliver(records)


class Denied:
    """An S3 client whose GetBucketVersioning is denied (the role lacks the permission)."""

    def get_bucket_versioning(self, Bucket: str) -> dict[str, Any]:  # noqa: N803
        raise ClientError(
            {
                "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                "ResponseMetadata": {
                    "HTTPStatusCode": 403,
                    "HTTPHeaders": {"date": "Sat, 05 Dec 2026 05:22:53 GMT"},
                },
            },
            "GetBucketVersioning",
        )


def test_a_denied_check_cannot_tell_and_says_so_but_refuses_nothing() -> None:
    versioning = require_versioning(Denied(), "backups")
    assert versioning.status == UNKNOWN
    assert "grant s3:GetBucketVersioning" in (versioning.warning() or "")
    # ... and the refusal's Date still gives S3's clock
    clock = BucketClock(Denied(), "backups", host=lambda: 1_796_448_173.5)
    assert clock.reading.s3_us == 1_796_448_173_000_000
    assert clock.warnings() == [versioning.warning()]


def test_an_enabled_bucket_passes_and_other_failures_are_one_line(s3: Any, bucket: str) -> None:
    assert require_versioning(s3, bucket).status == "Enabled"
    assert read_versioning(s3, bucket).warning() is None
    with pytest.raises(Exception, match="bucket 'no-such-bucket' does not exist"):
        require_versioning(s3, "no-such-bucket")
