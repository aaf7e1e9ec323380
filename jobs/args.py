"""Parsing user-supplied values: times and item keys."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import re
from typing import Any

from backup_lambda.ddbjson import ALL_TAGS, Item, canonical_key_value
from backup_lambda.errors import InvalidValueError, UserInputError

_EPOCH = re.compile(r"^\d+(\.\d{1,6})?$")


def parse_time(text: str) -> int:
    """ISO-8601 with an offset or 'Z', or epoch seconds -> epoch microseconds."""
    value = text.strip()
    if _EPOCH.match(value):
        return int(decimal.Decimal(value) * 1_000_000)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserInputError(
            f"bad time {text!r}: use ISO-8601 with an offset or Z "
            "(2026-11-28T14:00:00Z) or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        raise UserInputError(f"bad time {text!r}: add an offset or Z, e.g. {value}Z")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_key(text: str) -> Item:
    """An item key as DynamoDB JSON ({"pk": {"S": "a"}}) or plain JSON ({"pk": "a", "sk": 5})."""
    try:
        raw = json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)
    except json.JSONDecodeError as e:
        raise UserInputError(f"--key is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(raw, dict) or not raw:
        raise UserInputError('--key must be a JSON object such as {"pk": "a"}')
    keys: Item = {}
    for name, value in raw.items():
        keys[name] = _key_value(name, value)
        try:
            canonical_key_value(keys[name], f"--key {name}")
        except InvalidValueError as e:
            raise UserInputError(str(e)) from None
    return keys


def _key_value(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ALL_TAGS:
        ((tag, inner),) = value.items()
        return {tag: str(inner) if isinstance(inner, decimal.Decimal) else inner}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, decimal.Decimal):
        return {"N": str(value)}
    raise UserInputError(
        f'--key {name}: key values are strings, numbers or typed like {{"B": "<base64>"}}'
    )


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value
