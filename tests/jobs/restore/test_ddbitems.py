"""jobs.restore.ddbitems: stored form <-> low-level client form, item digests and sizes."""

from __future__ import annotations

import base64
import copy

import pytest

from backup_lambda.ddbjson import Item
from jobs.restore.ddbitems import from_client_item, item_digest, item_size, to_client_item


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


STORED: Item = {
    "pk": {"S": "a"},
    "n": {"N": "12345678901234567890123456789012345678"},
    "b": {"B": b64(b"\x00\xff\x10")},
    "b_empty": {"B": ""},
    "bs": {"BS": [b64(b"\x00"), b64(b"\xff")]},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2.5"]},
    "t": {"BOOL": True},
    "null": {"NULL": True},
    "empty": {"S": ""},
    "m": {"M": {"inner": {"B": b64(b"\xfe")}, "l": {"L": [{"BS": [b64(b"\x01")]}, {"N": "1"}]}}},
    "l": {"L": [{"M": {"deep": {"B": b64(b"\x00")}}}, {"L": []}, {"M": {}}]},
}


def test_to_client_decodes_every_binary_value() -> None:
    client = to_client_item(STORED)
    assert client["b"] == {"B": b"\x00\xff\x10"}
    assert client["b_empty"] == {"B": b""}
    assert client["bs"] == {"BS": [b"\x00", b"\xff"]}
    assert client["m"]["M"]["inner"] == {"B": b"\xfe"}
    assert client["m"]["M"]["l"]["L"][0] == {"BS": [b"\x01"]}
    assert client["l"]["L"][0]["M"]["deep"] == {"B": b"\x00"}
    assert client["n"] == STORED["n"]
    assert client["ss"] == STORED["ss"]
    assert client["null"] == {"NULL": True}


def test_round_trip_is_exact() -> None:
    original = copy.deepcopy(STORED)
    assert from_client_item(to_client_item(STORED)) == STORED
    assert original == STORED  # inputs are not modified


def test_from_client_accepts_bytearray_and_sets_as_any_iterable() -> None:
    client = {
        "b": {"B": bytearray(b"\x00\x01")},
        "ss": {"SS": ("a", "b")},
        "bs": {"BS": [memoryview(b"\xff")]},
    }
    assert from_client_item(client) == {
        "b": {"B": b64(b"\x00\x01")},
        "ss": {"SS": ["a", "b"]},
        "bs": {"BS": [b64(b"\xff")]},
    }


def test_digest_ignores_set_order_number_spelling_and_attribute_order() -> None:
    one = {
        "pk": {"S": "a"},
        "n": {"N": "1.50"},
        "ns": {"NS": ["1", "2"]},
        "ss": {"SS": ["x", "y"]},
        "bs": {"BS": [b64(b"\x00"), b64(b"\x01")]},
        "m": {"M": {"a": {"N": "10"}, "b": {"N": "1E1"}}},
    }
    two = {
        "m": {"M": {"b": {"N": "10.0"}, "a": {"N": "1e1"}}},
        "bs": {"BS": [b64(b"\x01"), b64(b"\x00")]},
        "ss": {"SS": ["y", "x"]},
        "ns": {"NS": ["2.0", "1"]},
        "n": {"N": "1.5"},
        "pk": {"S": "a"},
    }
    assert item_digest(one) == item_digest(two)


@pytest.mark.parametrize(
    "change",
    [
        {"n": {"N": "1.51"}},
        {"n": {"S": "1.5"}},
        {"extra": {"NULL": True}},
        {"pk": {"S": "A"}},
        {"l": {"L": [{"N": "2"}, {"N": "1"}]}},  # list order matters
        {"ss": {"SS": ["x"]}},
        {"b": {"B": b64(b"\x00\x00")}},
        {"flag": {"BOOL": False}},
        {"empty": {"S": " "}},
    ],
)
def test_digest_sees_every_real_difference(change: Item) -> None:
    base = {
        "pk": {"S": "a"},
        "n": {"N": "1.5"},
        "l": {"L": [{"N": "1"}, {"N": "2"}]},
        "ss": {"SS": ["x", "y"]},
        "b": {"B": b64(b"\x00")},
        "flag": {"BOOL": True},
        "empty": {"S": ""},
    }
    assert item_digest(base) != item_digest({**base, **change})


def test_digest_is_stable_through_the_client_form() -> None:
    assert item_digest(from_client_item(to_client_item(STORED))) == item_digest(STORED)


def test_item_size_is_an_upper_bound_of_dynamodb_size() -> None:
    item = {"pk": {"S": "a" * 1000}, "blob": {"B": b64(b"\x00" * 3000)}}
    # DynamoDB counts name lengths plus value bytes: 2 + 1000 + 4 + 3000.
    assert item_size(item) >= 2 + 1000 + 4 + 3000
    assert item_size({"pk": {"S": "ü"}}) >= 2 + 2
