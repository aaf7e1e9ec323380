"""Validation and canonical forms of raw DynamoDB JSON (`{"S": "x"}`, `{"N": "1"}`, ...).

Images stay in the raw typed JSON the stream delivers; nothing here converts them to
Python values, which is what keeps 38-digit numbers and binary values exact.
"""

from __future__ import annotations

import base64
import binascii
import decimal
from collections.abc import Mapping
from typing import Any

from backup_lambda.errors import InvalidValueError

SCALAR_TAGS = frozenset({"S", "N", "B"})
SET_TAGS = {"SS": "S", "NS": "N", "BS": "B"}
ALL_TAGS = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})

# DynamoDB numbers: up to 38 significant digits, magnitude 1E-130 .. 9.99..E+125.
_MAX_DIGITS = 38
_MIN_ADJUSTED_EXP = -130
_MAX_ADJUSTED_EXP = 125

# Enough precision that normalize() never rounds a DynamoDB number (the default is 28).
EXACT = decimal.Context(prec=200, Emax=999_999, Emin=-999_999)

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


def _parse_number(text: object, where: str) -> decimal.Decimal:
    if not isinstance(text, str) or not text.strip() or text != text.strip():
        raise InvalidValueError(f"{where}: number must be a string of digits, got {text!r}")
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise InvalidValueError(f"{where}: {text!r} is not a number") from None
    if not value.is_finite():
        raise InvalidValueError(f"{where}: {text!r} is not a finite number")
    if value != 0:
        # Checked without arithmetic: normalize() would round to the context's 28 digits
        # and raise decimal.Overflow on huge exponents.
        digits = len(_significand(value)[1])
        if digits > _MAX_DIGITS:
            raise InvalidValueError(f"{where}: {text!r} has more than 38 significant digits")
        if not _MIN_ADJUSTED_EXP <= value.adjusted() <= _MAX_ADJUSTED_EXP:
            raise InvalidValueError(f"{where}: {text!r} is outside DynamoDB's number range")
    return value


def _significand(value: decimal.Decimal) -> tuple[int, str, int]:
    """(sign, digits without trailing zeros, exponent) of a finite non-zero value, exactly."""
    sign, digits, exponent = value.as_tuple()
    text = "".join(map(str, digits))
    stripped = text.rstrip("0")
    return sign, stripped, int(exponent) + len(text) - len(stripped)


def _parse_binary(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidValueError(
            f"{where}: binary must be a base64 string, got {type(text).__name__}"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValueError(f"{where}: {text[:40]!r} is not valid base64") from None


def validate_value(value: object, where: str = "value") -> None:
    """Raise InvalidValueError unless `value` is one valid DynamoDB attribute value."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise InvalidValueError(
            f"{where}: expected one type tag like {{'S': ...}}, got {value!r:.80}"
        )
    ((tag, inner),) = value.items()
    if tag not in ALL_TAGS:
        raise InvalidValueError(f"{where}: unknown DynamoDB type tag {tag!r}")
    if tag == "S":
        if not isinstance(inner, str):
            raise InvalidValueError(f"{where}: S must be a string")
        _check_utf8(inner, where)
    elif tag == "N":
        _parse_number(inner, where)
    elif tag == "B":
        _parse_binary(inner, where)
    elif tag == "BOOL":
        if not isinstance(inner, bool):
            raise InvalidValueError(f"{where}: BOOL must be true or false")
    elif tag == "NULL":
        if inner is not True:
            raise InvalidValueError(f"{where}: NULL must be true")
    elif tag == "M":
        validate_item(inner, where)
    elif tag == "L":
        if not isinstance(inner, list):
            raise InvalidValueError(f"{where}: L must be a list")
        for i, element in enumerate(inner):
            validate_value(element, f"{where}[{i}]")
    else:
        _validate_set(tag, inner, where)


def _validate_set(tag: str, inner: object, where: str) -> None:
    if not isinstance(inner, list) or not inner:
        raise InvalidValueError(f"{where}: {tag} must be a non-empty list")
    member = SET_TAGS[tag]
    seen: set[object] = set()
    for element in inner:
        if member == "S":
            if not isinstance(element, str):
                raise InvalidValueError(f"{where}: SS members must be strings")
            _check_utf8(element, where)
            canon: object = element
        elif member == "N":
            canon = canonical_number(element, where)
        else:
            canon = _parse_binary(element, where)
        if canon in seen:
            raise InvalidValueError(f"{where}: {tag} has a duplicate member {element!r:.40}")
        seen.add(canon)


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValueError(f"{where}: string is not valid UTF-8 (lone surrogate)") from None


def validate_item(item: object, where: str = "item") -> None:
    """Raise InvalidValueError unless `item` maps attribute names to valid values."""
    if not isinstance(item, Mapping):
        raise InvalidValueError(f"{where}: expected a map of attributes, got {type(item).__name__}")
    for name, value in item.items():
        if not isinstance(name, str):
            raise InvalidValueError(f"{where}: attribute name {name!r} is not a string")
        _check_utf8(name, where)
        validate_value(value, f"{where}.{name}")


def canonical_number(text: str, where: str = "number") -> str:
    """One spelling per numeric value: '1', '1.0' and '10E-1' all give '1e0'."""
    value = _parse_number(text, where)
    if value == 0:
        return "0"
    sign, digits, exponent = _significand(value)
    return f"{'-' if sign else ''}{digits}e{exponent}"


def canonical_key_value(value: object, where: str = "key") -> list[str]:
    """A key attribute value (S, N or B) as [tag, canonical text]."""
    validate_value(value, where)
    if not isinstance(value, Mapping):  # validate_value has checked; this narrows the type
        raise InvalidValueError(f"{where}: not an attribute value")
    ((tag, inner),) = value.items()
    if tag == "S":
        return ["S", inner]
    if tag == "N":
        return ["N", canonical_number(inner, where)]
    if tag == "B":
        return ["B", base64.b64encode(_parse_binary(inner, where)).decode("ascii")]
    raise InvalidValueError(f"{where}: key attributes must be S, N or B, not {tag}")
