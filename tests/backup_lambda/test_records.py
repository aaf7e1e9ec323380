"""Stream records -> Changes: valid records parse, malformed ones become errors, not exceptions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from backup_lambda.records import (
    MissingSequenceNumberError,
    parse_record,
    sequence_number_of,
    table_from_arn,
)
from tests.support import records_of

Record = dict[str, Any]


@pytest.fixture
def insert() -> Record:
    return records_of("stream_event_orders")[0]


@pytest.fixture
def user_delete() -> Record:
    return records_of("stream_event_orders")[2]


@pytest.fixture
def ttl_delete() -> Record:
    return records_of("stream_event_orders")[3]


def test_insert_parses_into_a_change(insert: Record) -> None:
    parsed = parse_record(insert)
    assert parsed.error is None
    change = parsed.change
    assert change is not None
    assert parsed.sequence_number == "111100000000000000000001"
    assert change.table == "orders"
    assert change.event_name == "INSERT"
    assert change.event_id == "c4ca4238a0b923820dcc509a6f75849b"
    assert change.event_time_us == 1_795_824_000_000_000
    assert change.keys == {"customer": {"S": "alice"}, "order_id": {"N": "1"}}
    assert change.new_image == insert["dynamodb"]["NewImage"]
    assert change.ttl_expiry is False


def test_user_delete_keeps_keys_and_drops_the_old_image(user_delete: Record) -> None:
    change = parse_record(user_delete).change
    assert change is not None
    assert change.is_removal
    assert change.keys == {"customer": {"S": "bob"}, "order_id": {"N": "2"}}
    assert change.new_image is None
    assert change.ttl_expiry is False


def test_ttl_expiry_is_marked(ttl_delete: Record) -> None:
    change = parse_record(ttl_delete).change
    assert change is not None
    assert change.is_removal
    assert change.ttl_expiry is True


@pytest.mark.parametrize(
    "identity",
    [
        {"type": "User", "principalId": "dynamodb.amazonaws.com"},
        {"type": "Service", "principalId": "lambda.amazonaws.com"},
        "Service",
        None,
    ],
)
def test_only_the_dynamodb_service_principal_marks_a_ttl_expiry(
    user_delete: Record, identity: object
) -> None:
    user_delete["userIdentity"] = identity
    change = parse_record(user_delete).change
    assert change is not None
    assert change.ttl_expiry is False


def test_ttl_identity_on_an_insert_is_not_an_expiry(insert: Record, ttl_delete: Record) -> None:
    insert["userIdentity"] = ttl_delete["userIdentity"]
    change = parse_record(insert).change
    assert change is not None
    assert change.ttl_expiry is False


def test_fractional_event_time_is_kept_to_the_microsecond(insert: Record) -> None:
    insert["dynamodb"]["ApproximateCreationDateTime"] = 1795824000.123
    change = parse_record(insert).change
    assert change is not None
    assert change.event_time_us == 1_795_824_000_123_000


def _set(path: str, value: object) -> Callable[[Record], None]:
    def mutate(record: Record) -> None:
        *parents, last = path.split(".")
        target = record
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _drop(path: str) -> Callable[[Record], None]:
    def mutate(record: Record) -> None:
        *parents, last = path.split(".")
        target = record
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def _both(*mutations: Callable[[Record], None]) -> Callable[[Record], None]:
    def mutate(record: Record) -> None:
        for one in mutations:
            one(record)

    return mutate


MALFORMED: dict[str, Callable[[Record], None]] = {
    "unknown eventName": _set("eventName", "UPSERT"),
    "no eventName": _drop("eventName"),
    "no Keys": _drop("dynamodb.Keys"),
    "empty Keys": _set("dynamodb.Keys", {}),
    "Keys not a map": _set("dynamodb.Keys", ["customer"]),
    "undecodable key value": _set("dynamodb.Keys.customer", {"S": 7}),
    "key of a non-key type": _both(
        _set("dynamodb.Keys.customer", {"BOOL": True}),
        _set("dynamodb.NewImage.customer", {"BOOL": True}),
    ),
    "INSERT without NewImage": _drop("dynamodb.NewImage"),
    "NewImage not a map": _set("dynamodb.NewImage", "image"),
    "NewImage without the key": _drop("dynamodb.NewImage.customer"),
    "NewImage with another key value": _set("dynamodb.NewImage.customer", {"S": "mallory"}),
    "undecodable number": _set("dynamodb.NewImage.total", {"N": "12abc"}),
    "number overflowing decimal": _set("dynamodb.NewImage.total", {"N": "1e9999999"}),
    "too many digits": _set("dynamodb.NewImage.total", {"N": "1" * 39}),
    "bad base64": _set("dynamodb.NewImage.receipt", {"B": "@@@"}),
    "empty set": _set("dynamodb.NewImage.tags", {"SS": []}),
    "unknown type tag": _set("dynamodb.NewImage.status", {"STRING": "placed"}),
    "lone surrogate": _set("dynamodb.NewImage.status", {"S": "\ud800"}),
    "no eventSourceARN": _drop("eventSourceARN"),
    "not a DynamoDB stream ARN": _set(
        "eventSourceARN", "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
    ),
    "no event time": _drop("dynamodb.ApproximateCreationDateTime"),
    "event time not a number": _set("dynamodb.ApproximateCreationDateTime", "yesterday"),
    "negative event time": _set("dynamodb.ApproximateCreationDateTime", -5),
    "event time past year 9999": _set("dynamodb.ApproximateCreationDateTime", 1e20),
}


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_record_gives_an_error_not_an_exception(
    insert: Record, mutate: Callable[[Record], None]
) -> None:
    record = copy.deepcopy(insert)
    mutate(record)
    parsed = parse_record(record)
    assert parsed.change is None
    assert parsed.sequence_number == "111100000000000000000001"
    assert parsed.error


def test_modify_without_new_image_names_the_likely_cause(insert: Record) -> None:
    insert["eventName"] = "MODIFY"
    del insert["dynamodb"]["NewImage"]
    parsed = parse_record(insert)
    assert parsed.error is not None
    assert "NewImage" in parsed.error


def test_remove_needs_no_image(user_delete: Record) -> None:
    del user_delete["dynamodb"]["OldImage"]
    assert parse_record(user_delete).change is not None


@pytest.mark.parametrize(
    "mutate",
    [
        _drop("dynamodb.SequenceNumber"),
        _set("dynamodb.SequenceNumber", ""),
        _set("dynamodb.SequenceNumber", "12a"),
        _set("dynamodb.SequenceNumber", 111100000000000000000001),
        _set("dynamodb.SequenceNumber", "\u00b2"),
        _set("dynamodb.SequenceNumber", "-1"),
        _drop("dynamodb"),
        _set("dynamodb", "not a map"),
    ],
    ids=["missing", "empty", "not digits", "a number", "superscript", "negative", "no ddb", "bad"],
)
def test_record_without_a_sequence_number_raises(
    insert: Record, mutate: Callable[[Record], None]
) -> None:
    mutate(insert)
    with pytest.raises(MissingSequenceNumberError):
        parse_record(insert)


def test_sequence_number_of_a_non_mapping_record_raises() -> None:
    with pytest.raises(MissingSequenceNumberError):
        sequence_number_of(["not", "a", "record"])


@pytest.mark.parametrize(
    ("arn", "table"),
    [
        (
            "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-28T00:00:00.000",
            "orders",
        ),
        (
            "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/My.Table_1-a/stream/label",
            "My.Table_1-a",
        ),
    ],
)
def test_table_from_arn(arn: str, table: str) -> None:
    assert table_from_arn(arn) == table
