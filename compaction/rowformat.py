"""How a snapshot's rows are stored in Parquet (data layout 2), and read back as items.

Layout 2 stores each attribute once: the typed columns hold what they can hold exactly
(`S` in a VARCHAR column, `BOOL` in a BOOLEAN, `B` in a BLOB when its base64 is canonical,
`N` in a DECIMAL when the number's spelling is the decimal's own), and `__rest` holds the
rest of the item as raw DynamoDB JSON (sets, maps, lists, NULL, attributes without a typed
column, and any value a typed column would not give back exactly). The lossless item is the
typed values rendered back to DynamoDB JSON, overlaid by `__rest`. Rows are sorted by
`__key`, the canonical key text (`backup_lambda.layout.canonical_key_bytes`; its SHA-256 is
the key hash), so that neighbouring rows share prefixes and values compress.

Layout 1 (release 1) stored the key hash, the whole item in `__item`, the S3 version id and
write time of every row, in key-hash order; it is still read (`decode_v1`).
"""

from __future__ import annotations

import base64
import binascii
import decimal
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from backup_lambda.ddbjson import AttributeValue, Item
from compaction.columns import typed_value
from compaction.manifest import Column

DATA_LAYOUT = 2  # what this release writes (manifest field `data_layout`)
TIMESTAMP = pa.timestamp("us", tz="UTC")

KEY = "__key"
REST = "__rest"
OVERRIDES = "__rest_overrides"  # __rest holds an attribute that also has a typed value
EVENT_TIME = "__event_time"
EVENT_NAME = "__event_name"
SEQUENCE = "__sequence_number"
SYSTEM_V2 = (KEY, REST, OVERRIDES, EVENT_TIME, EVENT_NAME, SEQUENCE)
ORDER_COLUMNS = [KEY, EVENT_TIME, EVENT_NAME, SEQUENCE]  # what a fold needs of a row

# Parquet writing, chosen by measurement (docs/FORMAT.md, BENCHMARKS.md query_1m).
ZSTD_LEVEL = 9
ROW_GROUP_ROWS = 100_000
DICTIONARY_SHARE = 0.1  # a column with at most this share of distinct values: dictionary
# Text columns in key order share long prefixes: delta (prefix) encoding, unless dictionary.
_PREFIX_ENCODED = (KEY, SEQUENCE)

RENDERED_TYPES = ("varchar", "boolean", "blob")  # and decimal(38,s): typed -> item exactly


def renders(column_type: str) -> bool:
    """Whether a typed column's values are rendered back into the item (else: in __rest)."""
    return column_type in RENDERED_TYPES or column_type.startswith("decimal(")


def render_number(value: decimal.Decimal) -> str:
    """A DECIMAL's value as DynamoDB spells numbers: plain digits, no trailing fraction
    zeros. The query view renders DECIMALs the same way (jobs/query/views.py)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def render(value: Any, column_type: str) -> AttributeValue:
    """A typed column's (non-NULL) Python value as the DynamoDB JSON it was written from."""
    if column_type == "varchar":
        return {"S": value}
    if column_type == "boolean":
        return {"BOOL": bool(value)}
    if column_type == "blob":
        return {"B": base64.b64encode(value).decode("ascii")}
    return {"N": render_number(value)}


def _canonical_b64(text: str) -> bool:
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode("ascii") == text
    except (binascii.Error, ValueError):
        return False


def arrow_type(column_type: str) -> pa.DataType:
    if column_type == "varchar":
        return pa.string()
    if column_type == "boolean":
        return pa.bool_()
    if column_type == "blob":
        return pa.binary()
    if column_type == "double":
        return pa.float64()
    if column_type == "json":
        return pa.json_(pa.string())
    if column_type.startswith("decimal("):
        precision, scale = column_type[len("decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    raise ValueError(f"unknown column type {column_type!r}")


def item_text(item: Item) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def encode(
    keys: Sequence[str],
    items: Sequence[Item],
    event_times: Sequence[int],
    event_names: Sequence[str],
    sequences: Sequence[str],
    columns: Sequence[Column],
) -> pa.Table:
    """Rows (already in `__key` order) as a layout-2 table: typed columns, then system."""
    arrays: dict[str, pa.Array] = {}
    rest: list[dict[str, AttributeValue]] = [dict(item) for item in items]
    overrides = [False] * len(items)
    with decimal.localcontext() as context:
        context.prec = 100
        for column in columns:
            values = [typed_value(item.get(column.name), column.type) for item in items]
            array = pa.array(values, arrow_type(column.type))
            arrays[column.name] = array
            if not renders(column.type):
                continue
            stored = array.to_pylist()
            for i, item in enumerate(items):
                raw = item.get(column.name)
                if raw is None or stored[i] is None:
                    continue
                if _exact(raw, stored[i], column.type):
                    del rest[i][column.name]
                else:
                    overrides[i] = True
    arrays[KEY] = pa.array(keys, pa.string())
    arrays[REST] = pa.array([item_text(r) if r else None for r in rest], pa.string())
    arrays[OVERRIDES] = pa.array([True if o else None for o in overrides], pa.bool_())
    arrays[EVENT_TIME] = pa.array(event_times, pa.int64()).cast(TIMESTAMP)
    arrays[EVENT_NAME] = pa.array(event_names, pa.string())
    arrays[SEQUENCE] = pa.array(sequences, pa.string())
    return pa.table(arrays)


def _exact(raw: AttributeValue, stored: Any, column_type: str) -> bool:
    ((tag, inner),) = raw.items()
    if column_type == "blob":
        return tag == "B" and _canonical_b64(inner)
    if column_type.startswith("decimal("):
        return tag == "N" and render_number(stored) == inner
    return True  # varchar holds S, boolean BOOL: always exactly


def write(path: Path, table: pa.Table) -> int:
    """The Parquet file: zstd, dictionaries for repetitive columns, prefix (delta) encoding
    for the sorted key text, statistics on (for filters on key columns)."""
    dictionary: list[str] = []
    encodings: dict[str, str] = {}
    rows = max(1, table.num_rows)
    for name in table.column_names:
        column = table.column(name)
        if isinstance(column.type, pa.BaseExtensionType):
            column = pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
        distinct = pc.count_distinct(column, mode="all").as_py() if table.num_rows else 0
        if distinct <= max(1, rows * DICTIONARY_SHARE):
            dictionary.append(name)
        elif name in _PREFIX_ENCODED:
            encodings[name] = "DELTA_BYTE_ARRAY"
    pq.write_table(
        table,
        str(path),
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=dictionary,
        column_encoding=encodings or None,
    )
    return int(table.num_rows)


def key_hash_of(key_text: str) -> str:
    return hashlib.sha256(key_text.encode("utf-8")).hexdigest()


def decode_items(table: pa.Table, columns: Iterable[Column]) -> list[Item]:
    """The lossless items of a layout-2 table (rest first; typed values fill the others)."""
    rest_column = table.column(REST) if REST in table.column_names else None
    items: list[Item] = (
        [json.loads(text) if text else {} for text in rest_column.to_pylist()]
        if rest_column is not None
        else [{} for _ in range(table.num_rows)]
    )
    names = set(table.column_names)
    for column in columns:
        if not renders(column.type) or column.name not in names:
            continue
        array = table.column(column.name)
        if array.null_count == array.length():
            continue
        for i, value in enumerate(array.to_pylist()):
            if value is not None and column.name not in items[i]:
                items[i][column.name] = render(value, column.type)
    return items


def times(table: pa.Table, name: str) -> list[int]:
    """A timestamp column as epoch microseconds."""
    return [int(v) for v in table.column(name).cast(pa.int64()).to_pylist()]
