"""Helpers for the tests: stored stream events, a streamed moto table, stored versions."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_lambda.ddbjson import Item
from jobs.demo.streams import read_stream

FIXTURES = Path(__file__).parent / "fixtures"
BUCKET = "ddb-backup-tests"
ORDERS_STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-28T00:00:00.000"
)


def load_event(name: str) -> dict[str, Any]:
    """A stored Lambda event (tests/fixtures/<name>.json), fresh each call."""
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return loaded


def records_of(name: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = load_event(name)["Records"]
    return records


def sequence(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def keys_of(record: dict[str, Any]) -> Item:
    keys: Item = copy.deepcopy(record["dynamodb"]["Keys"])
    return keys


@dataclass
class StreamTable:
    """A moto table with a stream; `new_records()` returns what its stream gained since."""

    dynamodb: Any
    streams: Any
    name: str
    stream_arn: str
    _seen: int = field(default=0)

    def put(self, item: Item) -> None:
        self.dynamodb.put_item(TableName=self.name, Item=item)

    def update(self, key: Item, expression: str, values: Item, names: dict[str, str]) -> None:
        self.dynamodb.update_item(
            TableName=self.name,
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
            ExpressionAttributeNames=names,
        )

    def delete(self, key: Item) -> None:
        self.dynamodb.delete_item(TableName=self.name, Key=key)

    def new_records(self) -> list[dict[str, Any]]:
        """The stream's records (Lambda's JSON shape) not returned by an earlier call."""
        records = list(read_stream(self.streams, self.stream_arn))
        fresh = records[self._seen :]
        self._seen = len(records)
        return fresh


def create_stream_table(
    dynamodb: Any, streams: Any, name: str, key_types: dict[str, str]
) -> StreamTable:
    """key_types: attribute name -> S/N/B; the first is the partition key, a second the sort key."""
    roles = ["HASH", "RANGE"]
    response = dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": attr, "KeyType": role}
            for attr, role in zip(key_types, roles, strict=False)
        ],
        AttributeDefinitions=[
            {"AttributeName": attr, "AttributeType": kind} for attr, kind in key_types.items()
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return StreamTable(dynamodb, streams, name, response["TableDescription"]["LatestStreamArn"])


def stored_bodies(s3: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every stored item version's change document under `prefix`, parsed as JSON (the
    journal objects beside them aside)."""
    bodies = []
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            if "/v1/items/" not in version["Key"]:
                continue
            body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            bodies.append(json.loads(body["Body"].read()))
    return bodies


ANSWERED = "ddb-backup: answered from "


def answered(err: str) -> str:
    """A successful query's stderr without its one note of which state answered (and as
    of when): "" when that note was all it printed. A missing note stays visible."""
    lines = err.splitlines(keepends=True)
    notes = [line for line in lines if line.startswith(ANSWERED)]
    if len(notes) != 1:
        return err + f"<expected one line starting {ANSWERED!r}>"
    return "".join(line for line in lines if not line.startswith(ANSWERED))
