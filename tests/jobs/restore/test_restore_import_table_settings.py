"""`restore --create-table --via import-table` builds the table from the recorded settings:
ImportTable's TableCreationParameters carry keys, billing and capacity, global indexes and
encryption (checked on the request sent: moto's ImportTable ignores the encryption); the
stream, deletion protection and tags follow the import, PITR, auto scaling and TTL (last)
follow the changes after the snapshot; local indexes are refused unless skipped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from jobs.restore.importtable import ImportTableOptions, ImportTableReport, ImportTableRestorer
from jobs.restore.tablesettings import SettingsOverrides, UnapplicableSettingsError
from tests.jobs.restore.restore_fixtures import BUCKET, SECOND, now_us
from tests.jobs.restore.settings_fixtures import (
    ACCOUNT,
    INDEX_READ,
    KMS_KEY,
    READ,
    Backend,
    Source,
    item,
    moto_backend,  # noqa: F401 - fixture
    rich_source,
    scaling_policy,
)
from tests.jobs.restore.test_restore_settings import QUERIES, observed, query
from tests.jobs.restore.test_restore_settings_cli import EXPECTED_CREATE, _cli, _request, _target

LSI_LEFT_OUT = (
    "local index by_created: ImportTable creates no local indexes (restore without "
    "--via import-table to keep them)"
)
# What ImportTable is asked for: CreateTable's parameters without what ImportTable does not
# take (local indexes, stream, deletion protection, tags: those come after the import).
EXPECTED_PARAMETERS = {
    k: v
    for k, v in EXPECTED_CREATE.items()
    if k
    not in {"LocalSecondaryIndexes", "StreamSpecification", "DeletionProtectionEnabled", "Tags"}
}


class Recording:
    """The moto client; every call is recorded (name and parameters), in order."""

    def __init__(self, real: Any, refuse: dict[str, str] | None = None) -> None:
        self._real = real
        self._refuse = dict(refuse or {})  # operation -> message of one ValidationException
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if name in {"meta", "exceptions"} or not callable(method):
            return method

        def call(**params: Any) -> Any:
            self.calls.append((name, params))
            if name in self._refuse:
                message = self._refuse.pop(name)
                error = {"Error": {"Code": "ValidationException", "Message": message}}
                raise ClientError(error, name)  # type: ignore[arg-type]
            return method(**params)

        return call

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def sent(self, name: str) -> list[dict[str, Any]]:
        return [params for called, params in self.calls if called == name]


def _restore(
    source: Source, target: str, dynamodb: Any | None = None, **overrides: Any
) -> ImportTableReport:
    backend = source.backend
    return ImportTableRestorer(
        backend.s3,
        dynamodb or backend.dynamodb,
        BUCKET,
        source.name,
        target,
        options=ImportTableOptions(
            as_of_us=now_us(),
            poll_seconds=0.01,
            dry_run=overrides.pop("dry_run", False),
            settings=SettingsOverrides(**overrides),
            target_account=ACCOUNT,
        ),
        announce=lambda text: None,
        autoscaling=backend.autoscaling,
    ).run()


def _with_a_change_after_the_snapshot(source: Source) -> None:
    source.compact()
    late = item("d", 1, "open", "dave", 400)
    source.backup.put({"pk": late["pk"], "sk": late["sk"]}, source.as_of_us + 10 * SECOND, late)
    source.backend.dynamodb.put_item(TableName=source.name, Item=late)
    source.items.append(late)


def test_the_table_is_made_from_the_recorded_settings(moto_backend: Backend) -> None:  # noqa: F811
    # GIVEN a source with every setting, a snapshot, and a change after the snapshot
    source = rich_source(moto_backend, "orders")
    _with_a_change_after_the_snapshot(source)
    dynamodb = Recording(moto_backend.dynamodb)
    # WHEN it is restored through ImportTable (going on without the local index)
    report = _restore(source, "copy", dynamodb, skip_unapplicable=True)
    # THEN ImportTable was asked for the keys, capacity, global indexes and KMS encryption
    (request,) = dynamodb.sent("import_table")
    assert request["TableCreationParameters"] == {**EXPECTED_PARAMETERS, "TableName": "copy"}
    assert request["TableCreationParameters"]["SSESpecification"]["KMSMasterKeyId"] == KMS_KEY
    # AND the rest came after the import, PITR, auto scaling and TTL after the changes
    names = dynamodb.names()
    first_write = names.index("batch_write_item")
    assert names.index("import_table") < names.index("update_table") < first_write
    assert names.index("tag_resource") < first_write
    assert first_write < names.index("update_continuous_backups")
    assert names[-1] == "update_time_to_live"  # last: no item expires during the load
    assert dynamodb.sent("update_table") == [
        {
            "TableName": "copy",
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        },
        {"TableName": "copy", "DeletionProtectionEnabled": True},
    ]
    assert report.applied == [
        "UpdateTable",
        "UpdateTable",
        "TagResource",
        "UpdateContinuousBackups",
        "RegisterScalableTarget",
        "RegisterScalableTarget",
        "PutScalingPolicy",
        "PutScalingPolicy",
        "UpdateTimeToLive",
    ]
    # AND the table matches the source on every field but the local index, and the KMS
    # encryption, which moto's ImportTable drops (the check after the import says so)
    before, after = observed(moto_backend, "orders"), observed(moto_backend, "copy")
    assert set(before) - {"LocalSecondaryIndexes", "SSEDescription"} == {
        name for name in before if after[name] == before[name]
    }
    assert after["LocalSecondaryIndexes"] == {}
    assert report.unapplied == [LSI_LEFT_OUT, "encryption with a KMS key"]
    # AND it holds the source's items, the change after the snapshot too, on every index
    assert (report.imported, report.puts, report.deletes) == (6, 1, 0)
    for index in ("by_status", "by_owner"):
        assert query(moto_backend.dynamodb, "copy", index) == query(
            moto_backend.dynamodb, "orders", index
        )
    assert "by_created" in QUERIES  # the local index: not on the copy, named above


def test_a_setting_not_applied_after_the_import_fails_the_restore_at_the_end(
    moto_backend: Backend,  # noqa: F811
) -> None:
    # GIVEN the same source (moto's ImportTable drops the KMS encryption asked for)
    source = rich_source(moto_backend, "orders")
    _with_a_change_after_the_snapshot(source)
    # WHEN it is restored without the local index but without --skip-unapplicable
    with pytest.raises(UnapplicableSettingsError) as caught:
        _restore(source, "copy", no_indexes=True)
    # THEN the items are all in (data first), the other settings applied, and it says what not
    assert "the items were restored into 'copy'" in str(caught.value)
    assert "encryption with a KMS key" in str(caught.value)
    scanned = moto_backend.dynamodb.scan(TableName="copy")["Items"]
    assert len(scanned) == len(source.items)
    ttl = moto_backend.dynamodb.describe_time_to_live(TableName="copy")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"


def test_a_setting_import_table_refuses(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    source.compact()
    refusal = {"import_table": "KMS key is not accessible"}
    # Without --skip-unapplicable: refused before anything is created
    with pytest.raises(UnapplicableSettingsError, match=r"ImportTable refused .* encryption"):
        _restore(source, "copy", Recording(moto_backend.dynamodb, refusal), no_indexes=True)
    assert "copy" not in moto_backend.dynamodb.list_tables()["TableNames"]
    # With it: asked again without the encryption (another client token), and reported
    dynamodb = Recording(moto_backend.dynamodb, refusal)
    report = _restore(source, "copy", dynamodb, no_indexes=True, skip_unapplicable=True)
    first, second = dynamodb.sent("import_table")
    assert "SSESpecification" in first["TableCreationParameters"]
    assert "SSESpecification" not in second["TableCreationParameters"]
    assert first["ClientToken"] != second["ClientToken"]
    assert report.unapplied == ["encryption: ValidationException: KMS key is not accessible"]
    assert report.imported == len(source.items)


def test_overrides_shape_the_import(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    source.compact()
    report = _restore(
        source,
        "copy",
        dry_run=True,
        billing_mode="PAY_PER_REQUEST",
        no_indexes=True,
        no_stream=True,
        no_ttl=True,
        kms_key="alias/mine",
        tags=(("env", "dev"),),
    )
    parameters = report.request["TableCreationParameters"]
    assert parameters == {
        "TableName": "copy",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        "KeySchema": EXPECTED_CREATE["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
        "SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/mine"},
    }
    operations = [r.operation for r in report.requests()]
    assert operations == ["ImportTable", "UpdateTable", "TagResource", "UpdateContinuousBackups"]
    assert report.after_import[1].params["Tags"] == [
        {"Key": "env", "Value": "dev"},
        {"Key": "team", "Value": "payments"},
    ]
    assert report.not_carried == ["auto scaling: the new table is on-demand"]
    assert "copy" not in moto_backend.dynamodb.list_tables()["TableNames"]


def test_a_kms_key_of_another_account_is_refused_before_anything(
    moto_backend: Backend,  # noqa: F811
) -> None:
    source = rich_source(moto_backend, "orders")
    source.compact()
    with pytest.raises(UnapplicableSettingsError, match="belongs to account 123456789012"):
        ImportTableRestorer(
            moto_backend.s3,
            moto_backend.dynamodb,
            BUCKET,
            "orders",
            "copy",
            options=ImportTableOptions(
                as_of_us=now_us(),
                settings=SettingsOverrides(no_indexes=True),
                target_account="999999999999",
            ),
            announce=lambda text: None,
        ).run()
    assert "copy" not in moto_backend.dynamodb.list_tables()["TableNames"]


def test_dry_run_prints_the_import_and_the_follow_up_requests(
    moto_backend: Backend,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = rich_source(moto_backend, "orders")
    manifest = source.compact()
    args = ["--to", "copy", "--create-table", "--via", "import-table", "--dry-run"]
    # The local index cannot be imported: refused (exit 2), as CreateTable's unapplicable
    code, out, err = _cli(capsys, "restore", *args)
    assert (code, out) == (2, "")
    assert LSI_LEFT_OUT in err
    assert err.count("\n") == 1

    code, out, err = _cli(capsys, "restore", *args, "--skip-unapplicable")
    assert code == 0
    assert err == f"ddb-backup: warning: not carried to copy: {LSI_LEFT_OUT}\n"
    lines = out.splitlines()
    assert lines[0] == (
        f"would import table 'copy' (provisioned 5 RCU/4 WCU, 2 global indexes) from snapshot "
        f"{manifest.id} (6 items)"
    )
    assert lines[1].startswith("settings captured at ")
    assert lines[1].endswith(f"(snapshot {manifest.id})")
    request = json.loads("\n".join(lines[2:]).split("\nonce the import is done:")[0][12:])
    assert lines[2] == "ImportTable {"
    assert request["TableCreationParameters"] == {**EXPECTED_PARAMETERS, "TableName": "copy"}
    assert request["S3BucketSource"]["S3KeyPrefix"].endswith("/export/data/")
    rest = lines[lines.index("once the import is done:") :]
    expected = [
        "once the import is done:",
        *_request(
            "UpdateTable",
            {
                "StreamSpecification": {
                    "StreamEnabled": True,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "TableName": "copy",
            },
        ),
        *_request("UpdateTable", {"DeletionProtectionEnabled": True, "TableName": "copy"}),
        *_request(
            "TagResource",
            {"ResourceArn": "<the ARN of copy>", "Tags": EXPECTED_CREATE["Tags"]},
        ),
        "after the changes since the snapshot are written:",
        *_request(
            "UpdateContinuousBackups",
            {
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "TableName": "copy",
            },
        ),
        *_request("RegisterScalableTarget", _target("table/copy", READ)),
        *_request("RegisterScalableTarget", _target("table/copy/index/by_owner", INDEX_READ)),
        *_request(
            "PutScalingPolicy",
            scaling_policy("table/copy", READ, "DynamoDBReadCapacityUtilization"),
        ),
        *_request(
            "PutScalingPolicy",
            scaling_policy(
                "table/copy/index/by_owner", INDEX_READ, "DynamoDBReadCapacityUtilization"
            ),
        ),
        *_request(
            "UpdateTimeToLive",
            {
                "TableName": "copy",
                "TimeToLiveSpecification": {"AttributeName": "expires", "Enabled": True},
            },
        ),
        f"not carried: {LSI_LEFT_OUT}",
    ]
    assert rest[: len(expected)] == expected
    assert rest[len(expected)].startswith("orders as of ")
    assert "would put 0, would delete 0" in rest[len(expected)]
    assert len(rest) == len(expected) + 1
    assert "copy" not in moto_backend.dynamodb.list_tables()["TableNames"]

    code, out, _ = _cli(capsys, "restore", *args, "--skip-unapplicable", "--json")
    settings = json.loads(out.splitlines()[-1])["settings"]
    assert [r["operation"] for r in settings["requests"]][:4] == [
        "ImportTable",
        "UpdateTable",
        "UpdateTable",
        "TagResource",
    ]
    assert settings["unapplied"] == [LSI_LEFT_OUT]
