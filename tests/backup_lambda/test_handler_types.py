"""Functional (moto): real stream records through the handler; every type round-trips exactly."""

from __future__ import annotations

import base64
import json
from typing import Any

from backup_lambda.layout import object_key
from tests.conftest import Deliver, History
from tests.support import StreamTable, keys_of, stored_bodies

DIGITS_38 = "12345678901234567890123456789012345678"
ALL_BYTES = bytes(range(256))

EVERY_TYPE: dict[str, Any] = {
    "pk": {"S": "every-type"},
    "sk": {"N": "1"},
    "n38": {"N": DIGITS_38},
    "n38_negative": {"N": "-" + DIGITS_38},
    "n38_point": {"N": "-1234567890123456789.0123456789012345678"},
    "n_tiny": {"N": "1.2345678901234567890123456789012345678E-120"},
    "n_tiny_negative": {"N": "-1E-130"},
    "n_huge": {"N": "9.9999999999999999999999999999999999999E+125"},
    "n_zero": {"N": "0"},
    "b_all_bytes": {"B": ALL_BYTES},
    "b_nul_ff": {"B": b"\x00\xff\x00\xff"},
    "bs": {"BS": [b"\x00", b"\xff", b"\x00\xff\xfe", ALL_BYTES]},
    "ss": {"SS": ["a", "ünïcödé 😀", "/..", " "]},
    "ns": {"NS": ["1", "-0.5", DIGITS_38, "1E-130"]},
    "s_empty": {"S": ""},
    "b_empty": {"B": b""},
    "s_unicode": {"S": '𝄞 \u00e9 e\u0301 \u200b \\ " \n \t \x00'},
    "bool_true": {"BOOL": True},
    "bool_false": {"BOOL": False},
    "null": {"NULL": True},
    "l_empty": {"L": []},
    "m_empty": {"M": {}},
    "nested": {
        "M": {
            "level1": {
                "M": {
                    "list": {
                        "L": [
                            {"N": DIGITS_38},
                            {"S": ""},
                            {"B": b"\x00\xff"},
                            {"BOOL": False},
                            {"NULL": True},
                            {"SS": ["x"]},
                            {"L": [{"M": {"deep": {"BS": [b"\xff"]}}}]},
                        ]
                    },
                    "name with spaces/and.dots": {"S": "ok"},
                }
            }
        }
    },
}


def as_lambda_json(value: Any) -> Any:
    """What Lambda delivers for a boto3-typed value: bytes become base64 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: as_lambda_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_lambda_json(v) for v in value]
    return value


def test_every_dynamodb_type_round_trips_exactly(
    orders: StreamTable, deliver: Deliver, history: History, s3: Any, bucket: str
) -> None:
    # GIVEN an item holding every DynamoDB type, written to a table with a stream
    orders.put(EVERY_TYPE)
    (record,) = orders.new_records()
    # WHEN the real stream record goes through the handler
    assert deliver([record]) == {"batchItemFailures": []}
    # THEN the stored image is exactly the stream's NewImage (and what was written)
    (entry,) = history(keys_of(record))
    stored_image = entry.change.new_image
    assert stored_image == record["dynamodb"]["NewImage"]
    assert stored_image == as_lambda_json(EVERY_TYPE)
    # ... byte for byte, down to the spelling of every number and the order of set members
    (body,) = stored_bodies(s3, bucket)
    assert json.dumps(body["newImage"], sort_keys=True) == json.dumps(
        record["dynamodb"]["NewImage"], sort_keys=True
    )
    assert base64.b64decode(stored_image["b_all_bytes"]["B"]) == ALL_BYTES
    assert stored_image["ns"]["NS"] == ["1", "-0.5", DIGITS_38, "1E-130"]
    assert entry.change.event_time_us == round(
        record["dynamodb"]["ApproximateCreationDateTime"] * 1_000_000
    )
    assert entry.change.sequence_number == record["dynamodb"]["SequenceNumber"]


def test_a_400_kb_item_round_trips(orders: StreamTable, deliver: Deliver, history: History) -> None:
    # GIVEN an item at the size limit (moto counts 400,000 bytes of names and values)
    filler = "é€😀/a" * 28_200  # 11 UTF-8 bytes per repeat
    big = {
        "pk": {"S": "big"},
        "sk": {"N": "400"},
        "payload": {"S": filler},
        "blob": {"B": ALL_BYTES * 260},
    }
    # moto's size: names plus values, binary counted as its base64 text.
    size = sum(len(k) for k in big) + len("big400") + len(filler.encode())
    size += len(base64.b64encode(ALL_BYTES * 260))
    assert 395_000 < size <= 400_000
    orders.put(big)
    (record,) = orders.new_records()
    # WHEN delivered
    assert deliver([record]) == {"batchItemFailures": []}
    # THEN it comes back whole
    (entry,) = history(keys_of(record))
    assert entry.change.new_image == record["dynamodb"]["NewImage"] == as_lambda_json(big)


KEY_STRINGS = [
    "/",
    "..",
    "../../etc/passwd",
    "a//b/",
    "%2F?#[]*",
    "ünïcödé 😀 \u200b",
    "\x00",
    "e\u0301",
    "\u00e9",
]


def test_keys_with_any_characters_get_their_own_objects(
    make_table: Any, deliver: Deliver, history: History, s3: Any, bucket: str
) -> None:
    # GIVEN items whose keys are path-like, unicode, or as long as DynamoDB allows
    table = make_table("odd-keys.v2", pk="S", sk="S")
    longest_pk = "😀/.." * 128 + "é" * 576  # 2,048 UTF-8 bytes
    longest_sk = "/" * 1024
    assert len(longest_pk.encode()) == 2048
    keys = [(text, "sk") for text in KEY_STRINGS] + [(longest_pk, longest_sk)]
    for pk, sk in keys:
        table.put({"pk": {"S": pk}, "sk": {"S": sk}, "v": {"S": pk}})
    records = table.new_records()
    # WHEN delivered
    assert deliver(records) == {"batchItemFailures": []}
    # THEN each item has exactly its own one-version history, under an S3 key within limits
    for pk, sk in keys:
        (entry,) = history({"pk": {"S": pk}, "sk": {"S": sk}}, table="odd-keys.v2")
        assert entry.change.keys == {"pk": {"S": pk}, "sk": {"S": sk}}
        assert entry.change.new_image is not None
        assert entry.change.new_image["v"] == {"S": pk}
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="odd-keys.v2/v1/items/")["Contents"]
    assert len(listed) == len(keys)
    assert all(len(obj["Key"].encode()) <= 1024 for obj in listed)


def test_binary_keys_round_trip(
    make_table: Any, deliver: Deliver, history: History, s3: Any, bucket: str
) -> None:
    # GIVEN a table keyed by binary values, including NUL and 0xFF bytes
    table = make_table("binary_keys", pk="B")
    values = [b"\x00", b"\xff", b"\x00\xff", b"/..", ALL_BYTES, bytes([0xFF]) * 2048]
    for value in values:
        table.put({"pk": {"B": value}, "note": {"S": "v1"}})
    table.update({"pk": {"B": b"\x00"}}, "SET #n = :n", {":n": {"S": "v2"}}, {"#n": "note"})
    table.delete({"pk": {"B": b"\xff"}})
    records = table.new_records()
    # WHEN delivered
    assert deliver(records) == {"batchItemFailures": []}
    # THEN every binary key has its history, keys stored as base64 of the exact bytes
    for value in values:
        keys = {"pk": {"B": base64.b64encode(value).decode()}}
        entries = history(keys, table="binary_keys")
        assert entries[0].change.event_name == "INSERT"
        assert entries[0].change.keys == keys
        assert base64.b64decode(entries[0].change.keys["pk"]["B"]) == value
    assert [e.change.event_name for e in history({"pk": {"B": "AA=="}}, table="binary_keys")] == [
        "INSERT",
        "MODIFY",
    ]
    removed = history({"pk": {"B": "/w=="}}, table="binary_keys")
    assert [e.change.event_name for e in removed] == ["INSERT", "REMOVE"]
    assert removed[-1].change.keys == {"pk": {"B": "/w=="}}
    # Object names come from the canonical key, whatever the record's base64 spelling.
    expected = {
        object_key("", "binary_keys", {"pk": {"B": base64.b64encode(v).decode()}}) for v in values
    }
    listed = {
        obj["Key"]
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix="binary_keys/v1/items/")["Contents"]
    }
    assert listed == expected
