"""The table-settings side of the command line: `restore --create-table --dry-run` prints
the exact requests, `settings --diff` shows what changed between two compactions, and a
backup without a settings document restores as before."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from compaction.compactor import CompactionConfig, Compactor
from compaction.settingsstore import settings_file
from jobs.main import main
from tests.jobs.restore.restore_fixtures import BUCKET, SECOND, now_us
from tests.jobs.restore.settings_fixtures import (
    CREATE,
    INDEX_READ,
    KMS_KEY,
    READ,
    Backend,
    moto_backend,  # noqa: F401 - fixture
    rich_source,
    scaling_policy,
)


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / SECOND, dt.UTC).isoformat().replace("+00:00", "Z")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args[:1], "--bucket", BUCKET, "--table", "orders", *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def _request(operation: str, params: dict[str, Any]) -> list[str]:
    return f"{operation} {json.dumps(params, indent=2, sort_keys=True)}".splitlines()


def _keys(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": role} for name, role in pairs]


EXPECTED_CREATE = {
    "AttributeDefinitions": [
        {"AttributeName": "created", "AttributeType": "N"},
        {"AttributeName": "owner", "AttributeType": "S"},
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
        {"AttributeName": "status", "AttributeType": "S"},
    ],
    "BillingMode": "PROVISIONED",
    "DeletionProtectionEnabled": True,
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by_owner",
            "KeySchema": _keys(("owner", "HASH"), ("created", "RANGE")),
            "Projection": {"NonKeyAttributes": ["note", "total"], "ProjectionType": "INCLUDE"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1},
        },
        {
            "IndexName": "by_status",
            "KeySchema": _keys(("status", "HASH")),
            "Projection": {"ProjectionType": "KEYS_ONLY"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2},
        },
    ],
    "KeySchema": _keys(("pk", "HASH"), ("sk", "RANGE")),
    "LocalSecondaryIndexes": [
        {
            "IndexName": "by_created",
            "KeySchema": _keys(("pk", "HASH"), ("created", "RANGE")),
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 4},
    "SSESpecification": {"Enabled": True, "KMSMasterKeyId": KMS_KEY, "SSEType": "KMS"},
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    "TableName": "copy",
    "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "payments"}],
}


def _target(resource: str, dimension: str) -> dict[str, Any]:
    return {
        "MaxCapacity": 40,
        "MinCapacity": 2,
        "ResourceId": resource,
        "ScalableDimension": dimension,
        "ServiceNamespace": "dynamodb",
    }


def test_dry_run_prints_the_exact_requests(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = rich_source(moto_backend, "orders")
    manifest = source.compact()
    code, out, err = _cli(capsys, "restore", "--to", "copy", "--create-table", "--dry-run")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        "would create table 'copy' (provisioned 5 RCU/4 WCU, 2 global indexes, 1 local index)"
    )
    assert lines[1].startswith("settings captured at ")
    assert lines[1].endswith(f"(snapshot {manifest.id})")
    index_policy = scaling_policy(
        "table/copy/index/by_owner", INDEX_READ, "DynamoDBReadCapacityUtilization"
    )
    table_policy = scaling_policy("table/copy", READ, "DynamoDBReadCapacityUtilization")
    expected = [
        *_request("CreateTable", EXPECTED_CREATE),
        "after the items are loaded:",
        *_request(
            "UpdateContinuousBackups",
            {
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "TableName": "copy",
            },
        ),
        *_request("RegisterScalableTarget", _target("table/copy", READ)),
        *_request("RegisterScalableTarget", _target("table/copy/index/by_owner", INDEX_READ)),
        *_request("PutScalingPolicy", table_policy),
        *_request("PutScalingPolicy", index_policy),
        *_request(
            "UpdateTimeToLive",
            {
                "TableName": "copy",
                "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
            },
        ),
    ]
    assert lines[2 : 2 + len(expected)] == expected
    assert lines[2 + len(expected)].startswith("orders as of ")
    assert "would put 6" in lines[2 + len(expected)]
    assert len(lines) == 3 + len(expected)
    assert "copy" not in moto_backend.dynamodb.list_tables()["TableNames"]


def test_settings_diff_shows_exactly_what_changed(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = rich_source(moto_backend, "orders")
    source.compact()
    first = now_us()
    dynamodb = moto_backend.dynamodb
    dynamodb.update_table(
        TableName="orders",
        # All of them: moto replaces the table's definitions with these (DynamoDB adds).
        AttributeDefinitions=CREATE["AttributeDefinitions"],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "by_status_created",
                    "KeySchema": _keys(("status", "HASH"), ("created", "RANGE")),
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                    "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                }
            }
        ],
    )
    dynamodb.update_time_to_live(
        TableName="orders", TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires"}
    )
    source.compact(source.as_of_us + SECOND)
    second = now_us()

    code, out, err = _cli(capsys, "settings", "--as-of", _iso(first), "--diff", _iso(second))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"settings of orders: {_iso(first)} -> {_iso(second)}"
    added = "+ table.GlobalSecondaryIndexes[by_status_created]: "
    assert [line[: len(added)] if line.startswith(added) else line for line in lines[1:]] == [
        added,
        '~ time_to_live.TimeToLiveStatus: "ENABLED" -> "DISABLED"',
    ]
    index = json.loads(lines[1][len(added) :])
    assert index["KeySchema"] == _keys(("status", "HASH"), ("created", "RANGE"))
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert index["ProvisionedThroughput"] == {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}

    # The same times the other way round, and as JSON.
    code, out, _ = _cli(
        capsys, "settings", "--as-of", _iso(second), "--diff", _iso(first), "--json"
    )
    assert code == 0
    assert json.loads(out.splitlines()[-1])["differences"][1:] == [lines[2]]
    # Between two times with the same settings: nothing.
    code, out, _ = _cli(capsys, "settings", "--as-of", _iso(second), "--diff", _iso(now_us()))
    assert out.splitlines()[1:] == ["(no differences)"]


def test_settings_prints_each_part(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = rich_source(moto_backend, "orders")
    manifest = source.compact()
    code, out, err = _cli(capsys, "settings")
    assert (code, err) == (0, "")
    assert "table (captured " in out
    assert f"by snapshot {manifest.id})" in out
    # moto has no Kinesis streaming destinations API: recorded as not captured, with why.
    assert (
        "kinesis_streaming_destinations: not captured: DescribeKinesisStreamingDestination: "
        "this endpoint does not implement it"
    ) in out
    code, out, _ = _cli(capsys, "settings", "--json")
    document = json.loads(out.splitlines()[-1])
    assert document["format"] == "ddb-backup-table-settings"
    assert document["parts"]["time_to_live"]["value"] == {
        "AttributeName": "expires",
        "TimeToLiveStatus": "ENABLED",
    }
    assert document["parts"]["resource_policy"] == {
        "value": None,
        "captured_at": document["parts"]["resource_policy"]["captured_at"],
        "captured_at_us": document["parts"]["resource_policy"]["captured_at_us"],
        "source": f"snapshot {manifest.id}",
    }


def test_settings_without_any_record_is_not_found(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _cli(capsys, "settings")
    assert (code, out) == (3, "")
    assert err.startswith("ddb-backup: error: no table settings recorded for 'orders'")
    assert len(err.splitlines()) == 1


def test_a_snapshot_without_settings_restores_as_before(moto_backend: Backend) -> None:  # noqa: F811
    """A snapshot made before settings were captured (no document): the table is created
    with the key schema and on-demand billing, even though the live source has indexes."""
    source = rich_source(moto_backend, "orders")
    manifest = (
        Compactor(
            moto_backend.s3,
            BUCKET,
            "orders",
            config=CompactionConfig(capture_settings=False),
            dynamodb=moto_backend.dynamodb,
        )
        .run(source.as_of_us)
        .manifest
    )
    assert settings_file(manifest) is None
    announced: list[str] = []
    report = source.restore("copy", announced)
    table = moto_backend.dynamodb.describe_table(TableName="copy")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert not table.get("GlobalSecondaryIndexes")  # moto lists none as []
    assert not table.get("LocalSecondaryIndexes")
    assert report.state_items == 6
    assert announced == [
        "created table 'copy' (on-demand)",
        "the backup records no table settings: key schema only, on-demand billing",
    ]
