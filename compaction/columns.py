"""Typed columns for the snapshot's Parquet: natural types where an attribute is consistent.

Rules (the same for key attributes): S -> VARCHAR, BOOL -> BOOLEAN, B -> BLOB, N -> exact
DECIMAL(38, s) when every value fits one, else DOUBLE; sets, lists and maps -> JSON; an
attribute whose type differs between items -> JSON. NULL values are SQL NULL in a typed
column. The lossless item is always kept in the `__item` column.
"""

from __future__ import annotations

import base64
import decimal
import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.ddbjson import EXACT, AttributeValue, Item

# Names a typed column never takes (an attribute so named stays in the lossless item):
# the system columns of data layouts 1 and 2.
SYSTEM_COLUMNS = (
    "__key",
    "__rest",
    "__rest_overrides",
    "__key_hash",
    "__item",
    "__event_time",
    "__event_name",
    "__sequence_number",
    "__version_id",
    "__written_at",
)
MAX_TYPED_COLUMNS = 1000
DECIMAL_PRECISION = 38
_JSON_TAGS = frozenset({"M", "L", "SS", "NS", "BS"})


@dataclass
class AttributeStats:
    """What one attribute's values look like across items (mergeable across shards)."""

    tags: set[str] = field(default_factory=set)
    max_integer_digits: int = 0
    max_scale: int = 0
    count: int = 0

    def add(self, value: AttributeValue) -> None:
        ((tag, inner),) = value.items()
        self.count += 1
        if tag == "NULL":
            return
        self.tags.add(tag)
        if tag == "N":
            integer_digits, scale = _digits(inner)
            self.max_integer_digits = max(self.max_integer_digits, integer_digits)
            self.max_scale = max(self.max_scale, scale)

    def merge(self, other: AttributeStats) -> None:
        self.tags |= other.tags
        self.max_integer_digits = max(self.max_integer_digits, other.max_integer_digits)
        self.max_scale = max(self.max_scale, other.max_scale)
        self.count += other.count

    def column_type(self) -> str:
        if len(self.tags) != 1:
            return "json"
        (tag,) = self.tags
        if tag == "S":
            return "varchar"
        if tag == "BOOL":
            return "boolean"
        if tag == "B":
            return "blob"
        if tag == "N":
            if self.max_integer_digits + self.max_scale <= DECIMAL_PRECISION:
                return f"decimal({DECIMAL_PRECISION},{self.max_scale})"
            return "double"
        return "json"


def _digits(text: str) -> tuple[int, int]:
    value = decimal.Decimal(text)
    if value == 0:
        return (1, 0)
    _, digits, exponent = value.normalize(EXACT).as_tuple()
    exponent = int(exponent)  # finite: checked when the item was validated
    scale = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    return (integer_digits, scale)


Stats = dict[str, AttributeStats]


def collect(items: Iterable[Item], stats: Stats | None = None) -> Stats:
    stats = {} if stats is None else stats
    for item in items:
        for name, value in item.items():
            stats.setdefault(name, AttributeStats()).add(value)
    return stats


def merge_stats(parts: Iterable[Stats]) -> Stats:
    merged: Stats = {}
    for part in parts:
        for name, attribute in part.items():
            merged.setdefault(name, AttributeStats()).merge(attribute)
    return merged


def _ascii_lower(name: str) -> str:
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_SYSTEM_FOLDED = frozenset(_ascii_lower(n) for n in SYSTEM_COLUMNS)


def is_system_name(name: str) -> bool:
    """Named like a system column as SQL sees names (ASCII letters without case)."""
    return _ascii_lower(name) in _SYSTEM_FOLDED


def choose_columns(
    stats: Mapping[str, AttributeStats], key_names: Iterable[str]
) -> list[tuple[str, str]]:
    """(name, type) of the typed columns: key attributes first, then the most common ones."""
    # An attribute named like a system column stays only in the lossless item.
    keys = [k for k in key_names if k in stats and not is_system_name(k)]
    others = sorted(
        (name for name in stats if name not in keys and not is_system_name(name)),
        key=lambda name: (-stats[name].count, name),
    )[: max(0, MAX_TYPED_COLUMNS - len(keys))]
    return [(name, stats[name].column_type()) for name in [*keys, *sorted(others)]]


def plain_json(value: AttributeValue) -> str:
    """A value as natural JSON text; numbers keep their exact digits."""
    return _plain(value)


def _plain(value: AttributeValue) -> str:
    ((tag, inner),) = value.items()
    if tag == "S":
        return json.dumps(inner, ensure_ascii=False)
    if tag == "N":
        return _number(inner)
    if tag == "B":
        return json.dumps(inner)
    if tag == "BOOL":
        return "true" if inner else "false"
    if tag == "NULL":
        return "null"
    if tag == "SS":
        return json.dumps(inner, ensure_ascii=False)
    if tag == "NS":
        return "[" + ",".join(_number(n) for n in inner) + "]"
    if tag == "BS":
        return json.dumps(inner)
    if tag == "L":
        return "[" + ",".join(_plain(v) for v in inner) + "]"
    return (
        "{"
        + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_plain(v)}" for k, v in inner.items())
        + "}"
    )


def _number(text: str) -> str:
    # JSON has no leading '+', '.5' or '5.' forms; normalise the spelling, never the digits.
    value = decimal.Decimal(text)
    spelled = str(value)
    return spelled if "E" not in spelled else format(value, "e").replace("E", "e")


def typed_value(value: AttributeValue | None, column_type: str) -> Any:
    """The Python value Arrow stores for this attribute in a column of `column_type`."""
    if value is None:
        return None
    ((tag, inner),) = value.items()
    if column_type == "json":
        return plain_json(value)
    if tag == "NULL":
        return None
    if column_type in {"varchar", "boolean"}:
        return inner
    if column_type == "blob":
        return base64.b64decode(inner)
    if column_type == "double":
        return float(inner)
    return decimal.Decimal(inner)
