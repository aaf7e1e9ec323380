"""The object layout: change documents, times, prefixes (see also test_layout_properties)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from backup_lambda.errors import CorruptVersionError, InvalidValueError
from backup_lambda.layout import (
    LAYOUT_VERSION,
    MAX_PREFIX_BYTES,
    Change,
    decode_change,
    encode_change,
    event_time_us,
    format_time_us,
    items_prefix,
    key_hash,
    normalize_prefix,
    object_key,
    table_root,
)

KEYS = {"customer": {"S": "alice"}, "order_id": {"N": "1"}}
EVERY_TYPE_IMAGE = {
    **KEYS,
    "s": {"S": "ünïcode / .. 😀"},
    "empty": {"S": ""},
    "n": {"N": "-1.2345678901234567890123456789012345678E-120"},
    "b": {"B": "AAH+/w=="},
    "bool": {"BOOL": False},
    "null": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "12345678901234567890123456789012345678"]},
    "bs": {"BS": ["AA==", "/w=="]},
    "m": {"M": {"l": {"L": [{"M": {"x": {"N": "2"}}}, {"S": ""}]}}},
}


def make_change(**overrides: Any) -> Change:
    fields: dict[str, Any] = {
        "table": "orders",
        "keys": KEYS,
        "event_name": "INSERT",
        "event_id": "c4ca4238a0b923820dcc509a6f75849b",
        "sequence_number": "111100000000000000000001",
        "event_time_us": 1_795_824_000_123_456,
        "new_image": EVERY_TYPE_IMAGE,
    }
    return Change(**(fields | overrides))


@pytest.mark.parametrize(
    "change",
    [
        make_change(),
        make_change(event_name="MODIFY", event_time_us=1_795_824_000_000_000),
        make_change(event_name="REMOVE", new_image=None),
        make_change(event_name="REMOVE", new_image=None, ttl_expiry=True),
    ],
    ids=["insert", "modify", "user delete", "ttl expiry"],
)
def test_encode_decode_round_trip(change: Change) -> None:
    assert decode_change(encode_change(change), "test") == change


def test_removal_document_is_self_describing() -> None:
    # GIVEN a user delete WHEN encoded THEN the body alone holds keys, time and sequence
    document = json.loads(encode_change(make_change(event_name="REMOVE", new_image=None)))
    assert document == {
        "layout": LAYOUT_VERSION,
        "table": "orders",
        "eventName": "REMOVE",
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "sequenceNumber": "111100000000000000000001",
        "eventTime": "2026-11-28T00:00:00.123456Z",
        "eventTimeMicros": 1_795_824_000_123_456,
        "ttlExpiry": False,
        "keys": KEYS,
        "newImage": None,
    }


def test_encoded_image_keeps_raw_dynamodb_json_exactly() -> None:
    document = json.loads(encode_change(make_change()))
    assert document["newImage"] == EVERY_TYPE_IMAGE
    assert json.dumps(document["newImage"], ensure_ascii=False) == json.dumps(
        EVERY_TYPE_IMAGE, ensure_ascii=False
    )


def test_change_order_compares_sequence_numbers_as_integers() -> None:
    earlier = make_change(sequence_number="9")
    later = make_change(sequence_number="10")
    assert earlier.order < later.order
    assert make_change(event_time_us=1, sequence_number="99").order < later.order


def valid_document(**overrides: Any) -> bytes:
    document = json.loads(encode_change(make_change())) | overrides
    return json.dumps(document).encode()


GARBAGE = {
    "not json": b"this is not json",
    "not utf-8": b"\xff\xfe\x00",
    "empty": b"",
    "json list": b"[1, 2]",
    "json string": b'"change"',
    "empty object": b"{}",
    "unknown layout": valid_document(layout=99),
    "no layout": json.dumps(
        {k: v for k, v in json.loads(encode_change(make_change())).items() if k != "layout"}
    ).encode(),
    "unknown event name": valid_document(eventName="UPSERT"),
    "sequence not digits": valid_document(sequenceNumber="12a"),
    "sequence not ascii digits": valid_document(sequenceNumber="\u00b2"),
    "time not an integer": valid_document(eventTimeMicros="1795824000"),
    "time is a bool": valid_document(eventTimeMicros=True),
    "no keys": valid_document(keys=None),
    "bad key value": valid_document(keys={"customer": {"S": 1}}),
    "insert without image": valid_document(newImage=None),
    "bad image": valid_document(newImage={"a": {"N": "NaN"}}),
    "no sequence": json.dumps(
        {k: v for k, v in json.loads(encode_change(make_change())).items() if k != "sequenceNumber"}
    ).encode(),
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_decode_change_rejects_garbage_with_corrupt_version_error(body: bytes) -> None:
    with pytest.raises(CorruptVersionError, match="s3://bucket/key"):
        decode_change(body, "s3://bucket/key")


@pytest.mark.parametrize(
    ("raw", "micros"),
    [
        (1795824000, 1_795_824_000_000_000),
        (1795824000.5, 1_795_824_000_500_000),
        (1795824000.123456, 1_795_824_000_123_456),
        ("1795824000.25", 1_795_824_000_250_000),
        (0, 0),
    ],
)
def test_event_time_us(raw: object, micros: int) -> None:
    assert event_time_us(raw) == micros


@pytest.mark.parametrize(
    "raw", [None, True, "soon", "NaN", "Infinity", -1, 1e20, [1795824000], {"s": 1}]
)
def test_event_time_us_rejects_non_times(raw: object) -> None:
    with pytest.raises(InvalidValueError):
        event_time_us(raw)


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1_795_824_000_000_000, "2026-11-28T00:00:00Z"),
        (1_795_824_000_000_001, "2026-11-28T00:00:00.000001Z"),
        (1_795_824_000_500_000, "2026-11-28T00:00:00.500000Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_format_time_us(micros: int, text: str) -> None:
    assert format_time_us(micros) == text


@pytest.mark.parametrize(
    ("prefix", "normalized", "root"),
    [
        ("", "", "orders/"),
        ("/", "", "orders/"),
        ("backups", "backups", "backups/orders/"),
        ("/backups/prod/", "backups/prod", "backups/prod/orders/"),
        ("backups/prod", "backups/prod", "backups/prod/orders/"),
    ],
)
def test_prefix_is_a_folder(prefix: str, normalized: str, root: str) -> None:
    assert normalize_prefix(prefix) == normalized
    assert table_root(prefix, "orders") == root
    assert items_prefix(prefix, "orders") == root + "v1/items/"
    assert object_key(prefix, "orders", KEYS).startswith(root + "v1/items/")


def test_prefix_longer_than_the_limit_is_rejected() -> None:
    normalize_prefix("p" * MAX_PREFIX_BYTES)
    with pytest.raises(InvalidValueError):
        normalize_prefix("p" * (MAX_PREFIX_BYTES + 1))
    with pytest.raises(InvalidValueError):
        normalize_prefix("é" * (MAX_PREFIX_BYTES // 2 + 1))  # the limit counts UTF-8 bytes


def test_object_key_shape() -> None:
    key = object_key("backups", "orders", KEYS)
    digest = key_hash(KEYS)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key == f"backups/orders/v1/items/{digest[:2]}/{digest}.json"


def test_object_key_rejects_keys_it_cannot_name() -> None:
    with pytest.raises(InvalidValueError):
        object_key("", "orders", {})
    with pytest.raises(InvalidValueError):
        object_key("", "orders", {"pk": {"BOOL": True}})
