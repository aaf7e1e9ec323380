"""How overrides, unapplicable settings and existing targets shape a restore's table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backup_lambda.errors import UserInputError
from compaction.manifest import KeyAttribute
from compaction.settingsstore import settings_at
from compaction.tablesettings import TABLE, TAGS, Part, TableSettings
from jobs.main import main
from jobs.restore.tablesettings import (
    SettingsOverrides,
    UnapplicableSettingsError,
    create_from_plan,
    plan_recreate,
)
from tests.jobs.restore.restore_fixtures import BUCKET
from tests.jobs.restore.settings_fixtures import (
    KMS_KEY,
    Backend,
    moto_backend,  # noqa: F401 - fixture
    rich_source,
)

SCHEMA = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))


@pytest.fixture
def recorded(moto_backend: Backend) -> TableSettings:  # noqa: F811
    rich_source(moto_backend, "orders").compact()
    settings = settings_at(moto_backend.s3, BUCKET, "", "orders", None)
    assert settings is not None
    return settings


def test_overrides(recorded: TableSettings) -> None:
    on_demand = plan_recreate(
        recorded, SCHEMA, "t", SettingsOverrides(billing_mode="PAY_PER_REQUEST")
    )
    params = on_demand.create.params
    assert params["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in params
    assert all("ProvisionedThroughput" not in i for i in params["GlobalSecondaryIndexes"])
    assert "auto scaling: the new table is on-demand" in on_demand.not_recreated
    assert [r.operation for r in on_demand.after] == ["UpdateContinuousBackups", "UpdateTimeToLive"]

    bare = plan_recreate(
        recorded,
        SCHEMA,
        "t",
        SettingsOverrides(no_indexes=True, no_stream=True, no_ttl=True, tags=(("env", "dev"),)),
    )
    params = bare.create.params
    assert "GlobalSecondaryIndexes" not in params
    assert "LocalSecondaryIndexes" not in params
    assert [a["AttributeName"] for a in params["AttributeDefinitions"]] == ["pk", "sk"]
    assert "StreamSpecification" not in params
    assert params["Tags"] == [{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "payments"}]
    # Scaling of the indexes that are not created is left out; the table's stays.
    assert [r.params.get("ResourceId") for r in bare.after][1:] == ["table/t", "table/t"]
    assert "UpdateTimeToLive" not in [r.operation for r in bare.after]

    other_key = plan_recreate(recorded, SCHEMA, "t", SettingsOverrides(kms_key="alias/mine"))
    assert other_key.create.params["SSESpecification"] == {
        "Enabled": True,
        "KMSMasterKeyId": "alias/mine",
        "SSEType": "KMS",
    }


def test_provisioned_needs_recorded_capacity() -> None:
    on_demand = TableSettings(
        "orders",
        1,
        {
            TABLE: Part(
                {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                }
            ),
            TAGS: Part([{"Key": "aws:cloudformation:stack-name", "Value": "s"}]),
        },
    )
    schema = (KeyAttribute("pk", "S", "HASH"),)
    with pytest.raises(UserInputError, match="hold no provisioned capacity"):
        plan_recreate(on_demand, schema, "t", SettingsOverrides(billing_mode="PROVISIONED"))
    plan = plan_recreate(on_demand, schema, "t")
    assert "Tags" not in plan.create.params
    assert plan.not_recreated == (
        "tags aws:cloudformation:stack-name: the aws: prefix is reserved for AWS",
    )
    with pytest.raises(UserInputError, match="is not the backup's"):
        plan_recreate(on_demand, SCHEMA, "t")


@pytest.mark.parametrize(
    ("region", "account", "reason"),
    [
        ("eu-west-1", "123456789012", "the key is in us-east-1, the target table in eu-west-1"),
        (
            "us-east-1",
            "999999999999",
            "belongs to account 123456789012, the target to 999999999999",
        ),
    ],
)
def test_a_kms_key_of_another_region_or_account_is_unapplicable(
    recorded: TableSettings, region: str, account: str, reason: str
) -> None:
    plan = plan_recreate(recorded, SCHEMA, "t", region=region, account=account)
    assert "SSESpecification" not in plan.create.params
    (line,) = plan.unapplicable
    assert line.startswith(f"encryption with KMS key {KMS_KEY}: ")
    assert reason in line


def test_unapplicable_stops_before_any_write_unless_skipped(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    source.compact()
    dynamodb = moto_backend.dynamodb
    with pytest.raises(UnapplicableSettingsError, match="--skip-unapplicable") as refused:
        source.restore("copy", account="999999999999")
    assert "nothing was written" in str(refused.value)
    assert "copy" not in dynamodb.list_tables()["TableNames"]
    report = source.restore("copy", skip_unapplicable=True, account="999999999999")
    assert report.state_items == 6
    assert report.settings["unapplied"][0].startswith(f"encryption with KMS key {KMS_KEY}")
    assert "SSEDescription" not in dynamodb.describe_table(TableName="copy")["Table"]


class RefusesStreams:
    """A DynamoDB that refuses CreateTable with a stream (as a region without streams)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def create_table(self, **params: Any) -> Any:
        if "StreamSpecification" in params:
            error = {"Code": "ValidationException", "Message": "Streams are not available here"}
            raise ClientError({"Error": error}, "CreateTable")
        return self._real.create_table(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_setting_dynamodb_refuses_is_named(
    recorded: TableSettings,
    moto_backend: Backend,  # noqa: F811
) -> None:
    plan = plan_recreate(recorded, SCHEMA, "copy")
    dynamodb = RefusesStreams(moto_backend.dynamodb)
    with pytest.raises(
        UnapplicableSettingsError, match="with the recorded stream: ValidationException"
    ):
        create_from_plan(dynamodb, plan, skip_unapplicable=False)
    unapplied = create_from_plan(dynamodb, plan, skip_unapplicable=True)
    assert unapplied == ["stream: ValidationException: Streams are not available here"]
    table = moto_backend.dynamodb.describe_table(TableName="copy")["Table"]
    assert len(table["GlobalSecondaryIndexes"]) == 2


def test_a_setting_failing_after_the_load_is_reported(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    source.compact()
    source.backend.autoscaling = None  # no Application Auto Scaling client
    with pytest.raises(UnapplicableSettingsError, match="the items were restored into 'copy'"):
        source.restore("copy")
    report = source.restore("copy2", skip_unapplicable=True)
    assert (
        report.settings["unapplied"]
        == [
            "auto scaling: no application-autoscaling client",
        ]
        * 4
    )
    ttl = moto_backend.dynamodb.describe_time_to_live(TableName="copy2")
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"


def test_an_existing_target_prints_its_differences_first(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    source.compact()
    moto_backend.dynamodb.create_table(
        TableName="plain",
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
    announced: list[str] = []
    report = source.restore("plain", announced)
    assert announced[0] == (
        "table 'plain' exists; its settings differ from the backup's (backup -> target), "
        "and are left as they are:"
    )
    lines = [line.strip() for line in announced[1:]]
    assert any(line.startswith("- table.GlobalSecondaryIndexes[by_owner]: ") for line in lines)
    assert any(line.startswith("- table.LocalSecondaryIndexes[by_created]: ") for line in lines)
    assert '~ table.BillingMode: "PROVISIONED" -> "PAY_PER_REQUEST"' in lines
    assert '~ time_to_live.TimeToLiveStatus: "ENABLED" -> "DISABLED"' in lines
    assert report.settings["differences"] == lines
    assert report.puts == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-ttl"], "--no-ttl only apply when the restore creates the table"),
        (["--create-table", "--tags", "novalue"], "--tags 'novalue': write KEY=VALUE"),
        (["--create-table", "--settings-from", "/nonexistent/s.json"], "--settings-from"),
    ],
)
def test_bad_settings_flags_are_one_line(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    capsys.readouterr()
    code = main(["restore", "--bucket", BUCKET, "--table", "orders", "--to", "x", *args])
    _, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1


def test_settings_from_an_edited_file(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    rich_source(moto_backend, "orders").compact()
    capsys.readouterr()
    assert main(["settings", "--bucket", BUCKET, "--table", "orders", "--json"]) == 0
    document = json.loads(capsys.readouterr().out.splitlines()[-1])
    table = document["parts"]["table"]["value"]
    table["GlobalSecondaryIndexes"] = [
        i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == "by_owner"
    ]
    edited = tmp_path / "settings.json"
    edited.write_text(json.dumps(document))
    args = ["--to", "copy", "--create-table", "--settings-from", str(edited)]
    code = main(["restore", "--bucket", BUCKET, "--table", "orders", *args])
    assert code == 0
    created = moto_backend.dynamodb.describe_table(TableName="copy")["Table"]
    assert [i["IndexName"] for i in created["GlobalSecondaryIndexes"]] == ["by_owner"]
    # "status" keyed only the dropped index: CreateTable gets no unused definition.
    assert "status" not in {a["AttributeName"] for a in created["AttributeDefinitions"]}


def test_import_table_parameters_come_from_the_same_plan(recorded: TableSettings) -> None:
    from jobs.restore.tablesettings import import_table_parameters

    plan = plan_recreate(recorded, SCHEMA, "copy")
    params, before, lost = import_table_parameters(plan)
    assert set(params) == {
        "TableName",
        "AttributeDefinitions",
        "KeySchema",
        "BillingMode",
        "ProvisionedThroughput",
        "SSESpecification",
        "GlobalSecondaryIndexes",
    }
    # "created" keyed the local index too, and a global one: still defined.
    assert [a["AttributeName"] for a in params["AttributeDefinitions"]] == [
        "created",
        "owner",
        "pk",
        "sk",
        "status",
    ]
    # One change per UpdateTable (DynamoDB takes one at a time), then the tags.
    assert [(r.operation, r.setting) for r in before] == [
        ("UpdateTable", "stream"),
        ("UpdateTable", "deletion protection"),
        ("TagResource", "tags"),
    ]
    assert [r.params for r in before[:2]] == [
        {
            "TableName": "copy",
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        },
        {"TableName": "copy", "DeletionProtectionEnabled": True},
    ]
    assert lost == [
        "local index by_created: ImportTable creates no local indexes (restore without "
        "--via import-table to keep them)"
    ]
