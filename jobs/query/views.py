"""The SQL behind the view `items`: per snapshot, its typed columns, the lossless item and
the system columns; over a chain of snapshots, merge on read (each level's rows whose key
no newer level mentions, as an anti-join on the canonical key text).

Data layout 2 keeps each attribute once: the item is rebuilt here from the typed columns
(rendered back to DynamoDB JSON exactly as compaction.rowformat renders them in Python)
overlaid by `__rest`. Typed columns are taken by position (#n): DuckDB binds names without
case, so by name "status" could read the attribute "Status". System columns are taken by
name: layout 2 gives no attribute a typed column whose name folds to a system name.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from compaction.manifest import Column
from compaction.rowformat import renders

SYSTEM = ["__key_hash", "__event_time", "__event_name", "__sequence_number"]
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def quote(name: str) -> str:
    """A SQL identifier for any attribute name (keywords, spaces, quotes)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fold(name: str) -> str:
    """How DuckDB compares identifiers: ASCII letters without case, all else exactly."""
    return name.translate(_ASCII_LOWER)


def sql_type(column_type: str) -> str:
    if column_type.startswith("decimal("):
        return column_type.upper()
    return {
        "varchar": "VARCHAR",
        "boolean": "BOOLEAN",
        "blob": "BLOB",
        "double": "DOUBLE",
        "json": "JSON",
    }[column_type]


@dataclass(frozen=True)
class Level:
    """One snapshot's files as DuckDB reads them."""

    data: str | None  # a relation: read_parquet([...]) or a registered name; None: no rows
    names: Sequence[str]  # the data files' column names, in order
    columns: Sequence[Column]  # the snapshot's typed columns
    data_layout: int
    keys: str | None = None  # a relation of the level's __key values (rows and tombstones)


def typed_output(columns: Sequence[Column]) -> list[Column]:
    """The typed columns `items` shows: those whose name DuckDB can tell apart from every
    other column (the others stay in `__item`, which keeps them apart)."""
    taken = Counter(fold(name) for name in [*(c.name for c in columns), "__item", *SYSTEM])
    return [c for c in columns if taken[fold(c.name)] == 1]


def _renderer(column_type: str, ref: str) -> str | None:
    """SQL for one typed value as the DynamoDB JSON value text (NULL stays NULL)."""
    if column_type == "varchar":
        return f"""'{{"S":' || to_json({ref}) || '}}'"""
    if column_type == "boolean":
        return f"""'{{"BOOL":' || CAST({ref} AS VARCHAR) || '}}'"""
    if column_type == "blob":
        return f"""'{{"B":"' || to_base64({ref}) || '"}}'"""
    if column_type.startswith("decimal("):
        scale = int(column_type[len("decimal(") : -1].split(",")[1])
        text = f"CAST({ref} AS VARCHAR)"
        if scale > 0:
            # As compaction.rowformat.render_number: no trailing fraction zeros, and a
            # leading zero before the point. DuckDB spells a DECIMAL(38,38) without its
            # integer digit (".5", "-.5", and zero as ".000..."), which trimming would
            # turn into ".5" and "".
            trimmed = f"rtrim(rtrim({text}, '0'), '.')"
            text = (
                f"CASE WHEN {ref} = 0 THEN '0' "
                f"ELSE regexp_replace({trimmed}, '^(-?)[.]', '\\10.') END"
            )
        return f"""'{{"N":"' || {text} || '"}}'"""
    return None


def item_sql(level: Level) -> str:
    """The lossless item of a layout-2 row, as JSON."""
    position = {name: i + 1 for i, name in enumerate(level.names)}
    parts = []
    for column in level.columns:
        if column.name not in position or not renders(column.type):
            continue
        value = _renderer(column.type, f"#{position[column.name]}")
        name = json.dumps(column.name, ensure_ascii=False)
        parts.append(f"{literal(name + ':')} || {value}")
    typed = "'{' || concat_ws(',', " + ", ".join([*parts, "NULL"]) + ") || '}'"
    disjoint = (
        "'{' || concat_ws(',', "
        + ", ".join([*parts, "substr(__rest, 2, length(__rest) - 2)"])
        + ") || '}'"
    )
    return (
        f"CASE WHEN __rest_overrides THEN json_merge_patch({typed}, __rest) "
        f"ELSE CAST({disjoint} AS JSON) END"
    )


def select_list(level: Level, view_columns: Sequence[Column]) -> str:
    """The `items` columns of one level, in the view's order and types."""
    position = {name: i + 1 for i, name in enumerate(level.names)}
    mine = {c.name: c.type for c in level.columns}
    out = []
    for column in typed_output(view_columns):
        target = sql_type(column.type)
        if column.name not in position or column.name not in mine:
            out.append(f"CAST(NULL AS {target}) AS {quote(column.name)}")
        elif mine[column.name] == column.type:
            out.append(f"#{position[column.name]} AS {quote(column.name)}")
        else:
            out.append(f"CAST(#{position[column.name]} AS {target}) AS {quote(column.name)}")
    if level.data_layout >= 2:
        out += [
            f"{item_sql(level)} AS __item",
            "sha256(__key) AS __key_hash",
            "__event_time",
            "__event_name",
            "__sequence_number",
        ]
    else:  # layout 1: the whole item and the key hash are stored
        out.append(f"CAST(#{position['__item']} AS JSON) AS __item")
        out += [f"#{position[name]} AS {name}" for name in SYSTEM]
    return ", ".join(out)


def items_sql(levels: Sequence[Level], view_columns: Sequence[Column]) -> str:
    """The `items` query over a chain (full snapshot first): each level's rows whose key no
    newer level holds (as a row or a tombstone). One level: a plain scan."""
    branches = []
    for i, level in enumerate(levels):
        if level.data is None:
            continue
        newer = [lv.keys for lv in levels[i + 1 :] if lv.keys is not None]
        where = ""
        if newer:
            # every name and literal here went through quote()/literal() or is our own
            union = " UNION ALL ".join(f"SELECT __key FROM {k}" for k in newer)  # noqa: S608
            where = f" WHERE __key NOT IN ({union})"
        select = select_list(level, view_columns)
        branches.append(f"SELECT {select} FROM {level.data}{where}")  # noqa: S608
    return " UNION ALL ".join(branches)
