"""A source table with every setting we recreate, on moto or on dynalite, and its backup.

`Backend` is one DynamoDB implementation (S3 is moto's either way). `rich_source` creates
the table the issue names: two global indexes (KEYS_ONLY and INCLUDE), one local index,
provisioned capacity, a stream, deletion protection, KMS encryption, tags, and where the
implementation has them TTL, point-in-time recovery and auto scaling. dynalite silently
drops the stream, encryption and deletion protection and lacks TTL and PITR, so on dynalite
those are absent on both sides; `Source.features` says what the source really holds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto import mock_aws

from backup_lambda.ddbjson import Item
from compaction.compactor import CompactionConfig, Compactor
from compaction.manifest import Manifest
from jobs.restore.restorer import RestoreOptions, Restorer, RestoreReport
from jobs.restore.tablesettings import SettingsOverrides
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    Backup,
    fake_aws_env,
    new_session,
    now_us,
    share_sessions,
)

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0b4a5c1e-1111-2222-3333-444455556666"
ACCOUNT = "123456789012"  # moto's


@dataclass
class Backend:
    name: str
    s3: Any
    dynamodb: Any
    autoscaling: Any | None  # Application Auto Scaling (moto only)


@pytest.fixture(params=["moto", "dynalite"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """S3 on in-process moto; DynamoDB on moto or on a dynalite server."""
    fake_aws_env(monkeypatch)
    share_sessions(monkeypatch)
    endpoint = request.getfixturevalue("dynalite_endpoint") if request.param == "dynalite" else None
    with mock_aws():
        session = new_session()
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        if endpoint is None:
            yield Backend(
                "moto", s3, session.client("dynamodb"), session.client("application-autoscaling")
            )
        else:
            yield Backend("dynalite", s3, session.client("dynamodb", endpoint_url=endpoint), None)


@pytest.fixture
def moto_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    fake_aws_env(monkeypatch)
    share_sessions(monkeypatch)
    with mock_aws():
        session = new_session()
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield Backend(
            "moto", s3, session.client("dynamodb"), session.client("application-autoscaling")
        )


CREATE = {
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
        {"AttributeName": "status", "AttributeType": "S"},
        {"AttributeName": "owner", "AttributeType": "S"},
        {"AttributeName": "created", "AttributeType": "N"},
    ],
    "BillingMode": "PROVISIONED",
    "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 4},
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by_status",
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2},
        },
        {
            "IndexName": "by_owner",
            "KeySchema": [
                {"AttributeName": "owner", "KeyType": "HASH"},
                {"AttributeName": "created", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["total", "note"]},
            "ProvisionedThroughput": {"ReadCapacityUnits": 2, "WriteCapacityUnits": 1},
        },
    ],
    "LocalSecondaryIndexes": [
        {
            "IndexName": "by_created",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "created", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
    "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    "DeletionProtectionEnabled": True,
    "SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": KMS_KEY},
}
TAGS = [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "payments"}]
READ = "dynamodb:table:ReadCapacityUnits"
INDEX_READ = "dynamodb:index:ReadCapacityUnits"


def scaling_policy(resource: str, dimension: str, metric: str) -> dict[str, Any]:
    return {
        "PolicyName": f"{dimension.split(':')[1]}-reads",
        "ServiceNamespace": "dynamodb",
        "ResourceId": resource,
        "ScalableDimension": dimension,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 70.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": metric},
        },
    }


@dataclass
class Source:
    backend: Backend
    name: str
    backup: Backup
    items: list[Item] = field(default_factory=list)
    features: set[str] = field(default_factory=set)  # what this implementation holds
    as_of_us: int = 0

    def compact(self, as_of_us: int | None = None) -> Manifest:
        as_of = as_of_us or self.as_of_us
        return (
            Compactor(
                self.backend.s3,
                BUCKET,
                self.name,
                config=CompactionConfig(read_concurrency=8),
                dynamodb=self.backend.dynamodb,
                autoscaling=self.backend.autoscaling,
            )
            .run(as_of)
            .manifest
        )

    def restore(
        self,
        target: str,
        announced: list[str] | None = None,
        account: str = ACCOUNT,
        **overrides: Any,
    ) -> RestoreReport:
        return Restorer(
            self.backend.s3,
            self.backend.dynamodb,
            BUCKET,
            self.name,
            target,
            options=RestoreOptions(
                as_of_us=now_us(),
                create_table=True,
                workers=4,
                read_concurrency=8,
                settings=SettingsOverrides(**overrides),
                target_account=account,
            ),
            announce=(announced.append if announced is not None else (lambda text: None)),
            autoscaling=self.backend.autoscaling,
        ).run()


def item(pk: str, sk: int, status: str, owner: str, created: int) -> Item:
    return {
        "pk": {"S": pk},
        "sk": {"N": str(sk)},
        "status": {"S": status},
        "owner": {"S": owner},
        "created": {"N": str(created)},
        "total": {"N": f"{sk * 10}.5"},
        "note": {"S": f"note {pk}{sk}"},
        "other": {"S": "not projected"},
        "expires": {"N": str(4_000_000_000 + sk)},  # far in the future
    }


def rich_source(backend: Backend, name: str | None = None) -> Source:
    """The table, its items in the table and in the backup (changes an hour ago)."""
    name = name or f"orders-{uuid.uuid4().hex[:8]}"
    dynamodb = backend.dynamodb
    dynamodb.create_table(TableName=name, **json.loads(json.dumps(CREATE)))
    arn = dynamodb.describe_table(TableName=name)["Table"]["TableArn"]
    dynamodb.tag_resource(ResourceArn=arn, Tags=TAGS)
    source = Source(backend, name, Backup(backend.s3, dynamodb, table=name))
    source.features = {"indexes", "provisioned", "tags"}
    if backend.name == "moto":
        source.features |= {"stream", "deletion protection", "encryption", "ttl", "pitr"}
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"}
        )
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    if backend.autoscaling is not None:
        source.features.add("auto scaling")
        scaling = backend.autoscaling
        for resource, dimension, metric in (
            (f"table/{name}", READ, "DynamoDBReadCapacityUtilization"),
            (f"table/{name}/index/by_owner", INDEX_READ, "DynamoDBReadCapacityUtilization"),
        ):
            scaling.register_scalable_target(
                ServiceNamespace="dynamodb",
                ResourceId=resource,
                ScalableDimension=dimension,
                MinCapacity=2,
                MaxCapacity=40,
            )
            scaling.put_scaling_policy(**scaling_policy(resource, dimension, metric))
    base = now_us() - 3600 * SECOND
    rows = [
        item("a", 1, "open", "alice", 100),
        item("a", 2, "closed", "bob", 200),
        item("a", 3, "open", "alice", 300),
        item("b", 1, "open", "bob", 150),
        item("b", 2, "closed", "alice", 250),
        item("c", 1, "open", "carol", 50),
    ]
    for n, row in enumerate(rows):
        dynamodb.put_item(TableName=name, Item=row)
        source.backup.put({"pk": row["pk"], "sk": row["sk"]}, base + n * SECOND, row)
    source.items = rows
    source.as_of_us = base + 60 * SECOND
    return source
