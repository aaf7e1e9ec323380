"""An imported full export's snapshot records the source table's settings when the table
its ARN names can be described here, and otherwise a document saying why it holds none;
a capture that fails or hangs never fails the import."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from compaction import catalog
from compaction.compactor import Compactor
from compaction.importexport import NO_SETTINGS, ExportImporter, ImportOptions
from compaction.manifest import snapshot_id
from compaction.settingsstore import read_settings, settings_at, settings_file
from compaction.tablesettings import PARTS, TABLE, TAGS, TIME_TO_LIVE, TableSettings
from jobs.main import main
from tests.compaction.awsexports import SOURCE_BUCKET, ExportFolder
from tests.compaction.test_import_export import (
    BUCKET,
    RICH,
    SCHEMA,
    Run,
    X,
    run,  # noqa: F401 - fixture
    source,  # noqa: F401 - fixture
)

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
ORDERS = "orders"  # the exported table and the backup's


def _recorded(s3: Any) -> TableSettings:
    """The settings document the imported snapshot lists (read as pinned)."""
    manifest = catalog.load_manifest(s3, BUCKET, "", ORDERS, snapshot_id(X))
    assert manifest is not None
    data_file = settings_file(manifest)
    assert data_file is not None, "the imported snapshot lists a settings document"
    return read_settings(s3, BUCKET, data_file)


def test_a_reachable_source_table_has_its_settings_recorded(
    s3: Any,
    source: ExportFolder,  # noqa: F811
    run: Run,  # noqa: F811
    orders: Any,
) -> None:
    # GIVEN the exported table exists here, with TTL and tags
    dynamodb = orders.dynamodb
    dynamodb.tag_resource(ResourceArn=ARN, Tags=[{"Key": "env", "Value": "prod"}])
    dynamodb.update_time_to_live(
        TableName=ORDERS, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
    )
    source.full(RICH[:3], X)
    # WHEN its full export is imported
    run(dynamodb=dynamodb)
    # THEN the snapshot records the table's settings, captured as compaction captures them
    recorded = _recorded(s3)
    assert recorded.table == ORDERS
    assert recorded.table_arn == ARN
    table = recorded.value(TABLE)
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["StreamSpecification"]["StreamEnabled"] is True
    assert recorded.value(TAGS) == [{"Key": "env", "Value": "prod"}]
    assert recorded.value(TIME_TO_LIVE)["AttributeName"] == "expires"
    # AND a restore to the export's time finds them (the capture is later: the oldest after)
    found = settings_at(s3, BUCKET, "", ORDERS, X)
    assert found is not None
    assert found.value(TAGS) == [{"Key": "env", "Value": "prod"}]


def test_an_unreachable_source_table_says_why_there_are_no_settings(
    s3: Any,
    source: ExportFolder,  # noqa: F811
    run: Run,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an export of a table that no longer exists (DescribeTable: not found)
    source.full(RICH[:3], X)
    # WHEN it is imported
    run(dynamodb=boto3.client("dynamodb"))
    # THEN every part of the snapshot's settings says an export carries none, and why
    recorded = _recorded(s3)
    for name in PARTS:
        reason = recorded.part(name).not_captured
        assert reason is not None
        assert reason.startswith(f"{NO_SETTINGS}, and its table {ARN} could not be described")
        assert "ResourceNotFoundException" in reason
    # AND `settings` and `restore --create-table` say so
    capsys.readouterr()
    assert main(["settings", "--bucket", BUCKET, "--table", ORDERS]) == 0
    out = capsys.readouterr().out
    assert f"table: not captured: {NO_SETTINGS}, and its table {ARN}" in out
    restore = ["restore", "--bucket", BUCKET, "--table", ORDERS, "--to", "copy"]
    code = main([*restore, "--create-table", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        f"the backup records no table description (not captured: {NO_SETTINGS}, and its "
        f"table {ARN} could not be described" in out
    )
    assert "key schema only, on-demand billing" in out


@pytest.mark.parametrize(
    ("table_arn", "why"),
    [
        (
            "arn:aws:dynamodb:eu-west-1:123456789012:table/orders",
            "is in eu-west-1, not in us-east-1 where this import reads DynamoDB",
        ),
        (
            "arn:aws:dynamodb:us-east-1:999999999999:table/orders",
            f"the table 'orders' here is {ARN}, not the exported "
            "arn:aws:dynamodb:us-east-1:999999999999:table/orders",
        ),
    ],
)
def test_a_table_of_the_same_name_elsewhere_is_not_recorded(
    s3: Any,
    source: ExportFolder,  # noqa: F811
    run: Run,  # noqa: F811
    orders: Any,
    table_arn: str,
    why: str,
) -> None:
    # GIVEN a table `orders` here, and an export of an `orders` of another region or account
    source.table_arn = table_arn
    source.full(RICH[:3], X)
    # WHEN it is imported: THEN this table's settings are not recorded as the export's
    run(dynamodb=orders.dynamodb)
    reason = _recorded(s3).part(TABLE).not_captured
    assert reason is not None
    assert reason.startswith(NO_SETTINGS)
    assert why in reason


class Failing:
    """DynamoDB where DescribeTable works and the rest is denied, or everything hangs."""

    def __init__(self, real: Any, hang: threading.Event | None = None) -> None:
        self._real = real
        self._hang = hang
        self.meta = real.meta

    def describe_table(self, **params: Any) -> Any:
        if self._hang is not None:
            self._hang.wait(5)
        return self._real.describe_table(**params)

    def __getattr__(self, name: str) -> Any:
        def call(**params: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, name)

        return call


def test_a_capture_that_fails_or_hangs_never_fails_the_import(
    s3: Any,
    source: ExportFolder,  # noqa: F811
    orders: Any,
) -> None:
    source.full(RICH[:3], X)
    released = threading.Event()
    # GIVEN DynamoDB that hangs: WHEN the import runs with a short capture budget
    started = time.monotonic()
    ExportImporter(
        s3,
        BUCKET,
        ORDERS,
        f"s3://{SOURCE_BUCKET}/exports/",
        dynamodb=Failing(orders.dynamodb, hang=released),
        options=ImportOptions(key_schema=SCHEMA),
        capture_budget_seconds=0.2,
    ).run()
    released.set()
    # THEN it is committed, with the reason, without waiting for the capture
    assert time.monotonic() - started < 4
    reason = _recorded(s3).part(TABLE).not_captured
    assert reason == "the capture took longer than its 0.2 s budget"


def test_a_part_that_cannot_be_read_is_recorded_with_its_reason(
    s3: Any,
    source: ExportFolder,  # noqa: F811
    run: Run,  # noqa: F811
    orders: Any,
) -> None:
    source.full(RICH[:3], X)
    run(dynamodb=Failing(orders.dynamodb))
    recorded = _recorded(s3)
    assert recorded.captured(TABLE)
    reason = recorded.part(TAGS).not_captured
    assert reason is not None
    assert "AccessDeniedException" in reason


def test_a_later_capture_is_used_rather_than_none(
    s3: Any,
    source: ExportFolder,  # noqa: F811
    run: Run,  # noqa: F811
    orders: Any,
) -> None:
    # GIVEN an import that could not read the table, then a compaction that could
    source.full(RICH[:3], X)
    run(dynamodb=None)
    imported_at = _recorded(s3).captured_at_us
    assert not _recorded(s3).captured(TABLE)
    time.sleep(0.01)
    Compactor(s3, BUCKET, ORDERS, dynamodb=orders.dynamodb).run(imported_at + 5_000)
    # WHEN the settings at a time only the import's document covers are asked for
    found = settings_at(s3, BUCKET, "", ORDERS, imported_at + 1)
    # THEN the compaction's capture answers, not the import's document of reasons
    assert found is not None
    assert found.captured(TABLE)
    assert found.part(TABLE).source is not None
    assert found.part(TABLE).source.startswith("snapshot ")
