"""Functional (moto): removals are self-describing versions; TTL expiries stay distinguishable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup_lambda import handler as backup_handler
from backup_lambda.errors import ConfigError, NotFoundError
from backup_lambda.layout import object_key
from jobs.demo.standin import FakeLambdaContext
from tests.conftest import Deliver, History
from tests.support import StreamTable, load_event, records_of, sequence, stored_bodies

BOB = {"customer": {"S": "bob"}, "order_id": {"N": "2"}}
CAROL = {"customer": {"S": "carol"}, "order_id": {"N": "3"}}


def test_a_user_delete_is_stored_with_keys_time_and_sequence(
    deliver: Deliver, s3: Any, bucket: str
) -> None:
    # GIVEN the stored Lambda event with a user delete of bob's order
    records = records_of("stream_event_orders")
    # WHEN delivered
    assert deliver(records) == {"batchItemFailures": []}
    # THEN the object's only version is a real body (not a delete marker) saying it all
    key = object_key("", "orders", BOB)
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    assert listing.get("DeleteMarkers", []) == []
    (version,) = listing["Versions"]
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
    document = json.loads(body["Body"].read())
    assert document["eventName"] == "REMOVE"
    assert document["keys"] == BOB
    assert document["eventTime"] == "2026-11-28T00:02:00Z"
    assert document["eventTimeMicros"] == 1_795_824_120_000_000
    assert document["sequenceNumber"] == "111100000000000000000003"
    assert document["eventID"] == "eccbc87e4b5ce2fe28308fd9f2a7baf3"
    assert document["ttlExpiry"] is False
    assert document["newImage"] is None
    assert body["Metadata"]["ddb-event-name"] == "REMOVE"


def test_a_ttl_expiry_is_distinguishable_from_a_user_delete(
    deliver: Deliver, history: History
) -> None:
    deliver(records_of("stream_event_orders"))
    (user_delete,) = history(BOB)
    (expiry,) = history(CAROL)
    assert user_delete.change.is_removal
    assert expiry.change.is_removal
    assert user_delete.change.ttl_expiry is False
    assert expiry.change.ttl_expiry is True
    assert expiry.change.keys == CAROL


def test_a_real_delete_on_a_table_keeps_its_event_time_and_keys(
    orders: StreamTable, deliver: Deliver, history: History
) -> None:
    key = {"pk": {"S": "gone"}, "sk": {"N": "-1.5"}}
    orders.put({**key, "v": {"S": "x"}})
    orders.delete(key)
    records = orders.new_records()
    assert deliver(records) == {"batchItemFailures": []}
    insert, removal = history(key)
    assert removal.change.event_name == "REMOVE"
    assert removal.change.keys == key
    assert removal.change.new_image is None
    assert removal.change.sequence_number == sequence(records[1])
    assert removal.change.event_time_us == round(
        records[1]["dynamodb"]["ApproximateCreationDateTime"] * 1_000_000
    )
    assert insert.change.order < removal.change.order


def test_every_stored_version_names_its_change(deliver: Deliver, s3: Any, bucket: str) -> None:
    event = load_event("stream_event_orders")
    deliver(event["Records"])
    bodies = stored_bodies(s3, bucket)
    assert sorted(b["sequenceNumber"] for b in bodies) == [sequence(r) for r in event["Records"]]
    for body in bodies:
        assert {"eventName", "eventID", "eventTime", "sequenceNumber", "keys", "table"} <= set(body)
        assert body["table"] == "orders"


@pytest.mark.parametrize("prefix", ["backups/prod", "/backups/prod/"])
def test_backup_prefix_puts_everything_under_that_folder(
    monkeypatch: pytest.MonkeyPatch,
    deliver: Deliver,
    history: History,
    s3: Any,
    bucket: str,
    prefix: str,
) -> None:
    # GIVEN the Lambda configured with a prefix
    monkeypatch.setenv("BACKUP_PREFIX", prefix)
    # WHEN a batch is delivered
    assert deliver(records_of("stream_event_orders")) == {"batchItemFailures": []}
    # THEN every object lies under <prefix>/<table>/ and is found there (and only there)
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith("backups/prod/orders/v1/") for k in keys)
    items = [k for k in keys if k.startswith("backups/prod/orders/v1/items/")]
    assert len(items) == 3
    journal = [k for k in keys if k.startswith("backups/prod/orders/v1/journal/")]
    assert len(journal) == 1  # the batch's journal object (and a coverage marker)
    assert len(history(BOB, prefix="backups/prod")) == 1
    with pytest.raises(NotFoundError):
        history(BOB, prefix="")


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_handler_without_a_bucket_fails_loudly(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    monkeypatch.delenv("BACKUP_BUCKET", raising=False)
    with pytest.raises(ConfigError, match="BACKUP_BUCKET"):
        backup_handler.handler(load_event("stream_event_orders"), FakeLambdaContext())
