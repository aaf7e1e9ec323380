"""Capturing a table's settings: every part or its reason, never an exception, within a
time budget; the document round-trips, is read only as pinned, and merges part by part."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backup_lambda.errors import CorruptSnapshotError
from compaction.compactor import CompactionConfig, Compactor
from compaction.settingsstore import (
    Capture,
    effective,
    read_settings,
    settings_at,
    settings_file,
    upload_settings,
)
from compaction.tablesettings import (
    AUTO_SCALING,
    KINESIS,
    PARTS,
    RESOURCE_POLICY,
    TABLE,
    TAGS,
    TIME_TO_LIVE,
    BackgroundCapture,
    Part,
    TableSettings,
    capture_settings,
    not_captured,
)
from tests.jobs.restore.restore_fixtures import BUCKET, SECOND, now_us
from tests.jobs.restore.settings_fixtures import (
    Backend,
    moto_backend,  # noqa: F401 - fixture
    rich_source,
)


class Denied:
    """A DynamoDB client that may call nothing."""

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": f"no {name}"}}, name
            )

        return call


def test_a_capture_without_permissions_records_every_reason() -> None:
    settings = capture_settings(Denied(), "orders", clock=lambda: 1.5)
    assert settings.captured_at_us == 1_500_000
    assert {name: settings.part(name).not_captured for name in PARTS} == {
        TABLE: "DescribeTable: AccessDeniedException: no describe_table",
        TIME_TO_LIVE: "DescribeTimeToLive: AccessDeniedException: no describe_time_to_live",
        "continuous_backups": (
            "DescribeContinuousBackups: AccessDeniedException: no describe_continuous_backups"
        ),
        TAGS: "needs the table's ARN, and DescribeTable failed",
        RESOURCE_POLICY: "needs the table's ARN, and DescribeTable failed",
        KINESIS: (
            "DescribeKinesisStreamingDestination: AccessDeniedException: "
            "no describe_kinesis_streaming_destination"
        ),
        AUTO_SCALING: "no Application Auto Scaling client was given",
    }


def test_a_capture_on_moto(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    arn = moto_backend.dynamodb.describe_table(TableName="orders")["Table"]["TableArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "dynamodb:DeleteTable", "Resource": arn}
        ],
    }
    moto_backend.dynamodb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(policy))
    settings = capture_settings(
        moto_backend.dynamodb, source.name, autoscaling=moto_backend.autoscaling
    )
    table = settings.value(TABLE)
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["by_owner", "by_status"]
    assert table["GlobalSecondaryIndexes"][0]["Projection"] == {
        "NonKeyAttributes": ["note", "total"],
        "ProjectionType": "INCLUDE",
    }
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert "ItemCount" not in table
    assert "TableStatus" not in table
    assert settings.value(TAGS) == [
        {"Key": "env", "Value": "prod"},
        {"Key": "team", "Value": "payments"},
    ]
    assert settings.value(RESOURCE_POLICY) == {"Policy": policy}
    assert len(settings.value(AUTO_SCALING)["ScalableTargets"]) == 2
    # moto lacks the Kinesis streaming destination API: recorded, not raised.
    assert settings.part(KINESIS).not_captured == (
        "DescribeKinesisStreamingDestination: this endpoint does not implement it"
    )
    assert settings.table_arn == arn
    assert TableSettings.from_json(settings.to_json(), "x") == settings


def test_the_capture_budget_bounds_a_hanging_endpoint() -> None:
    started = time.monotonic()
    capture = BackgroundCapture(lambda: time.sleep(5) or not_captured("t", "", 0), "t", 0.05)
    settings = capture.result()
    assert time.monotonic() - started < 2
    assert settings.part(TABLE).not_captured == "the capture took longer than its 0.05 s budget"


class Slow:
    """moto's DynamoDB, with DescribeTimeToLive taking 3 s."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def describe_time_to_live(self, **kwargs: Any) -> Any:
        time.sleep(3)
        return self._real.describe_time_to_live(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_slow_capture_does_not_hold_up_the_compaction(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    started = time.monotonic()
    manifest = (
        Compactor(
            moto_backend.s3,
            BUCKET,
            "orders",
            config=CompactionConfig(settings_budget_seconds=0.2),
            dynamodb=Slow(moto_backend.dynamodb),
        )
        .run(source.as_of_us)
        .manifest
    )
    assert time.monotonic() - started < 3
    data_file = settings_file(manifest)
    assert data_file is not None
    settings = read_settings(moto_backend.s3, BUCKET, data_file)
    assert "budget" in str(settings.part(TABLE).not_captured)
    assert manifest.counts.items == 6


def test_settings_are_read_only_as_pinned(moto_backend: Backend) -> None:  # noqa: F811
    settings = not_captured("orders", "none", 7)
    data_file = upload_settings(moto_backend.s3, BUCKET, "orders/v1/x/", settings)
    assert data_file.version_id
    assert data_file.md5
    assert read_settings(moto_backend.s3, BUCKET, data_file) == settings
    # Overwritten later: the pinned version is still what is read.
    moto_backend.s3.put_object(Bucket=BUCKET, Key=data_file.key, Body=b"{}")
    assert read_settings(moto_backend.s3, BUCKET, data_file) == settings
    with pytest.raises(CorruptSnapshotError, match="replaced: sha256"):
        read_settings(moto_backend.s3, BUCKET, replace(data_file, sha256="0" * 64))
    with pytest.raises(CorruptSnapshotError, match="missing"):
        read_settings(moto_backend.s3, BUCKET, replace(data_file, key="orders/v1/gone.json"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "not a ddb-backup table settings document"),
        (b'{"format": "ddb-backup-table-settings", "version": 9}', "version 9"),
        (b'{"format": "ddb-backup-table-settings", "version": 1}', "invalid"),
        (b"{", "invalid"),
    ],
)
def test_a_bad_document_is_one_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(CorruptSnapshotError, match=message):
        TableSettings.from_json(body, "s3://b/k")


def test_each_part_comes_from_the_newest_capture_that_has_it() -> None:
    older = TableSettings(
        "orders", 10, {TABLE: Part({"v": 1}), TAGS: Part([{"Key": "a", "Value": "1"}])}
    )
    newer = TableSettings(
        "orders", 20, {TABLE: Part({"v": 2}), TAGS: Part(not_captured="AccessDenied")}
    )
    merged = effective([Capture("snapshot new", newer), Capture("snapshot old", older)])
    assert merged is not None
    assert merged.part(TABLE) == Part({"v": 2}, captured_at_us=20, source="snapshot new")
    assert merged.part(TAGS) == Part(
        [{"Key": "a", "Value": "1"}], captured_at_us=10, source="snapshot old"
    )
    assert not merged.captured(KINESIS)
    assert effective([]) is None


def test_settings_at_a_time_pick_the_capture_of_that_time(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    source.compact()
    between = now_us()
    moto_backend.dynamodb.untag_resource(
        ResourceArn=moto_backend.dynamodb.describe_table(TableName="orders")["Table"]["TableArn"],
        TagKeys=["env"],
    )
    source.compact(source.as_of_us + SECOND)
    tags = lambda at: settings_at(moto_backend.s3, BUCKET, "", "orders", at).value(TAGS)  # noqa: E731
    assert [t["Key"] for t in tags(between)] == ["env", "team"]
    assert [t["Key"] for t in tags(None)] == ["team"]
    # Before any capture: the oldest one after that time.
    assert [t["Key"] for t in tags(source.as_of_us - 10 * SECOND)] == ["env", "team"]
