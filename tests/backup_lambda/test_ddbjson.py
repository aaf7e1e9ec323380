"""Validation and canonical forms of raw DynamoDB JSON."""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda.ddbjson import (
    canonical_key_value,
    canonical_number,
    validate_item,
    validate_value,
)
from backup_lambda.errors import InvalidValueError

DIGITS_38 = "12345678901234567890123456789012345678"

VALID_VALUES: dict[str, Any] = {
    "S": {"S": "héllo / .. 😀"},
    "S empty": {"S": ""},
    "N integer": {"N": "42"},
    "N zero": {"N": "0"},
    "N negative 38 digits": {"N": "-" + DIGITS_38},
    "N 38 digits with point": {"N": "1234567890123456789.0123456789012345678"},
    "N smallest magnitude": {"N": "1E-130"},
    "N tiny 38 digits": {"N": "-1.2345678901234567890123456789012345678E-120"},
    "N largest": {"N": "9.9999999999999999999999999999999999999E+125"},
    "N trailing zeros beyond 38 digits": {"N": DIGITS_38 + "000"},
    "B": {"B": "AAH+/w=="},
    "B empty": {"B": ""},
    "BOOL true": {"BOOL": True},
    "BOOL false": {"BOOL": False},
    "NULL": {"NULL": True},
    "M": {"M": {"a": {"S": "x"}, "b": {"M": {"c": {"L": [{"N": "1"}]}}}}},
    "M empty": {"M": {}},
    "L": {"L": [{"S": "a"}, {"N": "1"}, {"NULL": True}, {"L": []}]},
    "L empty": {"L": []},
    "SS": {"SS": ["a", "b", ""]},
    "NS": {"NS": ["1", "2.5", "-3E+10"]},
    "NS 38-digit members differing in the last digit": {"NS": [DIGITS_38, DIGITS_38[:-1] + "9"]},
    "BS": {"BS": ["AA==", "/w==", "AAH+/w=="]},
}

INVALID_VALUES: dict[str, Any] = {
    "not a map": "x",
    "no tag": {},
    "two tags": {"S": "a", "N": "1"},
    "unknown tag": {"X": "1"},
    "lowercase tag": {"s": "a"},
    "S not a string": {"S": 1},
    "S lone surrogate": {"S": "a\ud800b"},
    "N not a string": {"N": 1},
    "N empty": {"N": ""},
    "N with spaces": {"N": " 1"},
    "N garbage": {"N": "one"},
    "N NaN": {"N": "NaN"},
    "N Infinity": {"N": "Infinity"},
    "N -inf": {"N": "-inf"},
    "N 39 digits": {"N": DIGITS_38 + "9"},
    "N 39 digits after the point": {"N": "0." + DIGITS_38 + "9"},
    "N 40 digits": {"N": "1" * 40},
    "N too small": {"N": "1E-131"},
    "N too large": {"N": "1E+126"},
    "N huge exponent": {"N": "1e9999999"},
    "N astronomical exponent": {"N": "1E+999999999999999999"},
    "B not base64": {"B": "not base64!"},
    "B bad padding": {"B": "AAH"},
    "B not a string": {"B": 5},
    "BOOL not a bool": {"BOOL": "true"},
    "NULL false": {"NULL": False},
    "M not a map": {"M": []},
    "M bad member": {"M": {"a": {"N": "x"}}},
    "L not a list": {"L": {"S": "a"}},
    "L bad member": {"L": [{"S": "a"}, {"Q": 1}]},
    "SS empty": {"SS": []},
    "NS empty": {"NS": []},
    "BS empty": {"BS": []},
    "SS duplicate": {"SS": ["a", "a"]},
    "NS duplicate": {"NS": ["1", "1"]},
    "NS duplicate by value": {"NS": ["1", "1.0"]},
    "BS duplicate": {"BS": ["AA==", "AA=="]},
    "SS not strings": {"SS": [1]},
    "SS lone surrogate": {"SS": ["\udfff"]},
    "NS bad member": {"NS": ["1", "x"]},
    "BS bad member": {"BS": ["AA==", "%%"]},
    "SS not a list": {"SS": "a"},
}


@pytest.mark.parametrize("value", VALID_VALUES.values(), ids=VALID_VALUES.keys())
def test_every_dynamodb_type_validates(value: Any) -> None:
    validate_value(value)  # GIVEN a valid value WHEN validated THEN nothing is raised


@pytest.mark.parametrize("value", INVALID_VALUES.values(), ids=INVALID_VALUES.keys())
def test_invalid_values_raise_invalid_value_error(value: Any) -> None:
    with pytest.raises(InvalidValueError):
        validate_value(value)


def test_error_names_the_attribute_path() -> None:
    with pytest.raises(InvalidValueError, match=r"item\.outer\.inner\[1\]"):
        validate_item({"outer": {"M": {"inner": {"L": [{"S": "ok"}, {"N": "x"}]}}}})


@pytest.mark.parametrize(
    "item",
    [
        [],
        "item",
        {1: {"S": "a"}},
        {"a\ud800": {"S": "a"}},
        {"nested": {"M": {"b\udc00": {"S": "x"}}}},
    ],
    ids=["list", "string", "non-string name", "lone surrogate name", "nested surrogate name"],
)
def test_invalid_items(item: Any) -> None:
    with pytest.raises(InvalidValueError):
        validate_item(item)


def test_empty_item_is_valid() -> None:
    validate_item({})


@pytest.mark.parametrize(
    ("spellings", "canonical"),
    [
        (["1", "1.0", "10E-1", "0.1e1", "+1", "001", "1.000000000000000000000000000000"], "1e0"),
        (["0", "-0", "0.000", "0E+5"], "0"),
        (["-120", "-1.2E2", "-1200e-1"], "-12e1"),
        ([DIGITS_38, DIGITS_38 + ".000"], DIGITS_38 + "e0"),
        (["1E-130", "0.1E-129"], "1e-130"),
    ],
)
def test_canonical_number_has_one_spelling_per_value(spellings: list[str], canonical: str) -> None:
    assert {canonical_number(text) for text in spellings} == {canonical}


def test_canonical_number_keeps_all_38_digits() -> None:
    # GIVEN two 38-digit numbers that differ only in the last digit
    # WHEN canonicalized THEN they stay distinct (no rounding to a 28-digit context)
    assert canonical_number(DIGITS_38) != canonical_number(DIGITS_38[:-1] + "9")
    assert canonical_number("-0." + DIGITS_38) == "-" + DIGITS_38 + "e-38"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"S": "a/../b"}, ["S", "a/../b"]),
        ({"N": "5.0"}, ["N", "5e0"]),
        ({"B": "AAH+/w=="}, ["B", "AAH+/w=="]),
    ],
)
def test_canonical_key_value(value: Any, expected: list[str]) -> None:
    assert canonical_key_value(value) == expected


@pytest.mark.parametrize(
    "value",
    [{"BOOL": True}, {"NULL": True}, {"SS": ["a"]}, {"M": {}}, {"L": []}, {"N": "x"}, {"S": 1}],
)
def test_key_values_must_be_valid_s_n_or_b(value: Any) -> None:
    with pytest.raises(InvalidValueError):
        canonical_key_value(value)
