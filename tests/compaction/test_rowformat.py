"""Data layout 2 round-trips every item exactly: typed columns hold what they can give back
exactly, `__rest` the rest, and the item is rebuilt from both (compaction.rowformat)."""

from __future__ import annotations

import decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from backup_lambda.ddbjson import Item
from backup_lambda.layout import canonical_key_bytes
from compaction.columns import choose_columns, collect
from compaction.manifest import Column
from compaction.rowformat import decode_items, encode, render_number, write
from tests.items_strategies import items

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def layout2_file(path: Path, rows: list[Item]) -> tuple[Path, list[Column]]:
    """Rows written as compaction writes them: key order, columns chosen from their stats."""
    keyed = sorted(
        ((canonical_key_bytes({"pk": r["pk"], "sk": r["sk"]}).decode(), r) for r in rows),
        key=lambda pair: pair[0],
    )
    columns = [Column(n, t) for n, t in choose_columns(collect(rows), ["pk", "sk"])]
    table = encode(
        [k for k, _ in keyed],
        [r for _, r in keyed],
        [1_000_000 + i for i in range(len(keyed))],
        ["INSERT"] * len(keyed),
        [str(i) for i in range(len(keyed))],
        columns,
    )
    write(path, table)
    return path, columns


@FUZZ
@given(rows=items())
def test_items_round_trip_through_the_parquet(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Item]
) -> None:
    path, columns = layout2_file(tmp_path_factory.mktemp("rows") / "part.parquet", rows)
    table = pq.read_table(path)
    by_key = {(r["pk"]["S"], r["sk"]["N"]): r for r in rows}
    decoded = decode_items(table, columns)
    assert len(decoded) == len(rows)
    for item in decoded:
        assert item == by_key[(item["pk"]["S"], item["sk"]["N"])]


def test_each_attribute_is_stored_once_when_it_can_be() -> None:
    rows = [
        {"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1.5"}, "s": {"S": "x"}},
        {"pk": {"S": "b"}, "sk": {"N": "2"}, "n": {"N": "1.50"}, "s": {"NULL": True}},
    ]
    columns = [Column(n, t) for n, t in choose_columns(collect(rows), ["pk", "sk"])]
    keys = [canonical_key_bytes({"pk": r["pk"], "sk": r["sk"]}).decode() for r in rows]
    table = encode(keys, rows, [0, 0], ["INSERT"] * 2, ["1", "2"], columns)
    # The first item lives in its typed columns alone; the second keeps "1.50" (the
    # decimal would give back "1.5") and its NULL in __rest, which then overrides.
    assert table.column("__rest").to_pylist() == [None, '{"n":{"N":"1.50"},"s":{"NULL":true}}']
    assert table.column("__rest_overrides").to_pylist() == [None, True]
    assert table.column("n").to_pylist() == [decimal.Decimal("1.5"), decimal.Decimal("1.5")]
    assert "__item" not in table.column_names


@pytest.mark.parametrize(
    ("value", "text"),
    [("1.500", "1.5"), ("100", "100"), ("100.00", "100"), ("0.000", "0"), ("-0.50", "-0.5")],
)
def test_numbers_render_as_dynamodb_spells_them(value: str, text: str) -> None:
    assert render_number(decimal.Decimal(value)) == text


@pytest.mark.parametrize(
    ("column_type", "value"),
    [
        ("decimal(38,38)", "0.12345678901234567890123456789012345678"),
        ("decimal(38,38)", "-0.5"),
        ("decimal(38,38)", "0"),
        ("decimal(38,38)", "0.10"),
        ("decimal(38,38)", "0.00000000000000000000000000000000000001"),
        ("decimal(38,2)", "0.10"),
        ("decimal(38,2)", "-3.25"),
        ("decimal(38,2)", "-0.05"),
        ("decimal(38,2)", "0"),
        ("decimal(38,2)", "12"),
        ("decimal(38,0)", "12"),
        ("decimal(38,0)", "-7"),
        ("decimal(38,0)", "0"),
    ],
)
def test_the_query_view_renders_numbers_as_python_does(column_type: str, value: str) -> None:
    """The view's SQL renderer (jobs/query/views.py) spells a DECIMAL as render_number
    does, for every scale DuckDB stores; DuckDB writes DECIMAL(38,38) without its leading
    zero, so a plain trim gave ".5" and an empty string for zero."""
    import duckdb

    from jobs.query.views import _renderer

    sql = _renderer(column_type, "v")
    assert sql is not None
    row = (
        duckdb.connect()
        # the SQL is the view's own renderer and a fixed column type, not input
        .execute(f"SELECT {sql} FROM (SELECT CAST(? AS {column_type}) AS v)", [value])  # noqa: S608
        .fetchone()
    )
    assert row == ('{"N":"' + render_number(decimal.Decimal(value)) + '"}',)
