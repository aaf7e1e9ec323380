"""Every writer refuses a bucket without versioning (issue 13, finding 8): compact,
backfill, import-export, scheduled and redrive exit 2 with one line naming the fix, and
write nothing."""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda.versioning import enable_command
from jobs.main import main
from tests.ops.helpers import TABLE, ChangeLog, create_table, item, now_us

UNVERSIONED = "unversioned-backups"
SEC = 1_000_000


@pytest.fixture(params=["never enabled", "suspended"])
def unversioned(request: pytest.FixtureRequest, s3: Any, dynamodb: Any) -> str:
    """A bucket without versioning holding a change of `orders`; the source table live
    with a stream."""
    s3.create_bucket(Bucket=UNVERSIONED)
    if request.param == "suspended":
        for status in ("Enabled", "Suspended"):
            s3.put_bucket_versioning(Bucket=UNVERSIONED, VersioningConfiguration={"Status": status})
    ChangeLog(s3, bucket=UNVERSIONED).put(item("a", v=1), now_us() - 900 * SEC)
    create_table(
        dynamodb,
        TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "b"}})
    return UNVERSIONED


def objects(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.mark.parametrize(
    "command",
    [
        ["compact"],
        ["compact", "--full", "--as-of", "2026-01-01T00:00:00Z"],
        ["backfill"],
        ["import-export", "--from", "s3://exports/orders/"],
        ["scheduled"],
        ["redrive", "--queue-url", "https://sqs.us-east-1.amazonaws.com/123456789012/failed"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_writer_refuses_an_unversioned_bucket_in_one_line(
    s3: Any, unversioned: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = objects(s3, unversioned)
    capsys.readouterr()
    code = main([command[0], "--bucket", unversioned, "--table", TABLE, *command[1:]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith(f"ddb-backup: error: bucket '{unversioned}' does not keep object ")
    assert enable_command(unversioned) in err
    assert objects(s3, unversioned) == before  # nothing written


def test_once_versioning_is_enabled_the_same_compaction_runs(
    s3: Any, unversioned: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.put_bucket_versioning(Bucket=unversioned, VersioningConfiguration={"Status": "Enabled"})
    assert main(["compact", "--bucket", unversioned, "--table", TABLE, "--json"]) == 0
    assert capsys.readouterr().err == ""
