"""restore --create-table recreates the source table from its recorded settings, on moto
and on dynalite: indexes, capacity, stream, encryption, deletion protection, tags, TTL,
PITR and auto scaling match the source's, and each index answers queries as the source's."""

from __future__ import annotations

import json
from typing import Any

from tests.jobs.restore.settings_fixtures import (
    Backend,
    backend,  # noqa: F401 - fixture
    rich_source,
)

TARGET = "orders-restored"


def _projection(raw: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    return raw["ProjectionType"], tuple(sorted(raw.get("NonKeyAttributes", [])))


def _capacity(raw: dict[str, Any] | None) -> tuple[int, int] | None:
    if not raw:
        return None
    return raw["ReadCapacityUnits"], raw["WriteCapacityUnits"]


def _keys(raw: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in raw]


def observed(b: Backend, name: str) -> dict[str, Any]:
    """Every compared field, read with the service's own calls (not our capture code)."""
    dynamodb = b.dynamodb
    table = dynamodb.describe_table(TableName=name)["Table"]
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    sse = table.get("SSEDescription") or {}
    fields: dict[str, Any] = {
        "KeySchema": _keys(table["KeySchema"]),
        "AttributeDefinitions": sorted(
            (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
        ),
        "BillingMode": billing,
        "ProvisionedThroughput": _capacity(table.get("ProvisionedThroughput")),
        "GlobalSecondaryIndexes": {
            i["IndexName"]: (
                _keys(i["KeySchema"]),
                _projection(i["Projection"]),
                _capacity(i.get("ProvisionedThroughput")),
            )
            for i in table.get("GlobalSecondaryIndexes", [])
        },
        "LocalSecondaryIndexes": {
            i["IndexName"]: (_keys(i["KeySchema"]), _projection(i["Projection"]))
            for i in table.get("LocalSecondaryIndexes", [])
        },
        "StreamSpecification": table.get("StreamSpecification"),
        "SSEDescription": (sse.get("Status"), sse.get("SSEType"), sse.get("KMSMasterKeyArn")),
        "TableClass": (table.get("TableClassSummary") or {}).get("TableClass"),
        "DeletionProtectionEnabled": table.get("DeletionProtectionEnabled"),
        "TimeToLive": dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"],
        "Tags": sorted(
            (t["Key"], t["Value"])
            for t in dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
        ),
    }
    if b.name == "moto":  # APIs dynalite does not have
        pitr = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        fields["PointInTimeRecovery"] = pitr["PointInTimeRecoveryDescription"][
            "PointInTimeRecoveryStatus"
        ]
    if b.autoscaling is not None:
        prefix = f"table/{name}"
        targets = b.autoscaling.describe_scalable_targets(ServiceNamespace="dynamodb")
        fields["ScalableTargets"] = sorted(
            (
                t["ResourceId"].removeprefix(prefix),
                t["ScalableDimension"],
                t["MinCapacity"],
                t["MaxCapacity"],
            )
            for t in targets["ScalableTargets"]
            if t["ResourceId"] == prefix or t["ResourceId"].startswith(prefix + "/")
        )
        policies = b.autoscaling.describe_scaling_policies(ServiceNamespace="dynamodb")
        fields["ScalingPolicies"] = sorted(
            (
                p["ResourceId"].removeprefix(prefix),
                p["PolicyName"],
                json.dumps(p["TargetTrackingScalingPolicyConfiguration"], sort_keys=True),
            )
            for p in policies["ScalingPolicies"]
            if p["ResourceId"] == prefix or p["ResourceId"].startswith(prefix + "/")
        )
    return fields


COMPARED = [
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
    "SSEDescription",
    "TableClass",
    "DeletionProtectionEnabled",
    "TimeToLive",
    "Tags",
]
MOTO_ONLY = ["PointInTimeRecovery", "ScalableTargets", "ScalingPolicies"]

QUERIES = {
    "by_status": ("#k = :v", {"#k": "status"}, {":v": {"S": "open"}}),
    "by_owner": (
        "#k = :v AND #r > :r",
        {"#k": "owner", "#r": "created"},
        {":v": {"S": "alice"}, ":r": {"N": "0"}},
    ),
    "by_created": (
        "#k = :v AND #r >= :r",
        {"#k": "pk", "#r": "created"},
        {":v": {"S": "a"}, ":r": {"N": "0"}},
    ),
}


def query(dynamodb: Any, table: str, index: str) -> list[str]:
    condition, names, values = QUERIES[index]
    response = dynamodb.query(
        TableName=table,
        IndexName=index,
        KeyConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
    return sorted(json.dumps(i, sort_keys=True) for i in response["Items"])


def test_restore_recreates_every_captured_setting(backend: Backend) -> None:  # noqa: F811
    source = rich_source(backend)
    source.compact()
    announced: list[str] = []
    report = source.restore(TARGET + "-" + source.name, announced)
    target = TARGET + "-" + source.name

    before, after = observed(backend, source.name), observed(backend, target)
    compared = COMPARED + (MOTO_ONLY if backend.name == "moto" else [])
    assert set(before) == set(compared), "the test compares every field it reads"
    for name in compared:
        assert after[name] == before[name], name
    # Not vacuous: the source holds what this implementation supports.
    assert len(before["GlobalSecondaryIndexes"]) == 2
    assert len(before["LocalSecondaryIndexes"]) == 1
    assert before["ProvisionedThroughput"] == (5, 4)
    assert before["Tags"] == [("env", "prod"), ("team", "payments")]
    if backend.name == "moto":
        assert before["StreamSpecification"]["StreamEnabled"] is True
        assert before["DeletionProtectionEnabled"] is True
        assert before["SSEDescription"][1] == "KMS"
        assert before["TimeToLive"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
        assert before["PointInTimeRecovery"] == "ENABLED"
        assert len(before["ScalableTargets"]) == 2
        assert len(before["ScalingPolicies"]) == 2
        assert report.settings["applied_after_load"] == [
            "UpdateContinuousBackups",
            "RegisterScalableTarget",
            "RegisterScalableTarget",
            "PutScalingPolicy",
            "PutScalingPolicy",
            "UpdateTimeToLive",  # last: after the items are in
        ]
    assert report.settings["unapplied"] == []
    assert report.state_items == len(source.items)
    for index in QUERIES:
        expected = query(backend.dynamodb, source.name, index)
        assert expected, index
        assert query(backend.dynamodb, target, index) == expected, index
    # KEYS_ONLY holds the keys only; INCLUDE adds its attributes and nothing else.
    assert set(json.loads(query(backend.dynamodb, target, "by_status")[0])) == {
        "pk",
        "sk",
        "status",
    }
    assert set(json.loads(query(backend.dynamodb, target, "by_owner")[0])) == {
        "pk",
        "sk",
        "owner",
        "created",
        "total",
        "note",
    }
    assert (
        announced[0]
        == f"created table {target!r} (provisioned 5 RCU/4 WCU, 2 global indexes, 1 local index)"
    )
