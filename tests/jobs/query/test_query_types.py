"""`ddb-backup query`: column types for every DynamoDB type, the lossless item, quoted
identifiers and exact decimal sums; over a snapshot and over the state --as-of a time."""

from __future__ import annotations

import base64
import csv
import decimal
import io
import json
from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from tests.jobs.restore.restore_fixtures import (
    SECOND,
    Backup,
    Server,
    key_of,
    now_us,
    run_cli,
    server,  # noqa: F401 - fixture
    standin_server,  # noqa: F401 - fixture
)
from tests.support import answered

BIG = "1234567890123456789012345678901234567"  # 37 digits: three of them still fit 38
TINY = "0.0000000000000000000000000000000000001"  # scale 37


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _item(sk: int, **attributes: Any) -> Item:
    return {**key_of("t", sk), **attributes}


ITEMS = [
    _item(
        1,
        s={"S": "hello ü"},
        n_dec={"N": "1.5"},
        n_dbl={"N": "1E+100"},
        flag={"BOOL": True},
        blob={"B": b64(b"\x00\xff")},
        ss={"SS": ["a", "b"]},
        ns={"NS": ["1", "2.5"]},
        bs={"BS": [b64(b"\x00"), b64(b"\xff")]},
        l={"L": [{"N": "1"}, {"S": "x"}, {"M": {"k": {"N": BIG}}}]},
        m={"M": {"a": {"N": "1"}, "b": {"L": []}, "c": {"M": {"d": {"S": "deep"}}}}},
        nul={"NULL": True},
        mixed={"S": "text"},
        opt={"NULL": True},
        big={"N": BIG},
        tiny={"N": TINY},
        **{
            "select": {"S": "keyword"},
            "with space": {"S": "space"},
            'quo"te': {"S": "quote"},
            "dot.ted": {"S": "dot"},
        },
    ),
    _item(
        2,
        s={"S": ""},
        n_dec={"N": "-20.25"},
        n_dbl={"N": "0.5"},
        flag={"BOOL": False},
        blob={"B": ""},
        mixed={"N": "5"},
        opt={"S": "set"},
        big={"N": "-" + BIG},
        tiny={"N": "-" + TINY},
        **{"select": {"S": "keyword 2"}},
    ),
    _item(3, n_dec={"N": "0"}, mixed={"M": {"x": {"BOOL": True}}}, big={"N": "0"}),
]

EXPECTED_TYPES = {
    "pk": "VARCHAR",
    "sk": "DECIMAL(38,0)",
    "s": "VARCHAR",
    "n_dec": "DECIMAL(38,2)",
    "n_dbl": "DOUBLE",
    "flag": "BOOLEAN",
    "blob": "BLOB",
    "ss": "JSON",
    "ns": "JSON",
    "bs": "JSON",
    "l": "JSON",
    "m": "JSON",
    "nul": "JSON",
    "mixed": "JSON",
    "opt": "VARCHAR",
    "big": "DECIMAL(38,0)",
    "tiny": "DECIMAL(38,37)",
    "select": "VARCHAR",
    "with space": "VARCHAR",
    'quo"te': "VARCHAR",
    "dot.ted": "VARCHAR",
    "__item": "JSON",
}

AMOUNTS = [decimal.Decimal(i) / 10 for i in range(1, 61)]  # 0.1 .. 6.0
CENTS = [decimal.Decimal(i * 7919 % 10007) / 100 for i in range(1, 61)]


class Data:
    def __init__(self, types: Backup, sums: Backup, as_of: int) -> None:
        self.types = types
        self.sums = sums
        self.as_of = as_of


@pytest.fixture(scope="module")
def data(standin_server: Server) -> Data:  # noqa: F811
    types = standin_server.backup("query-types")
    base = now_us() - 1800 * SECOND
    for i, image in enumerate(ITEMS):
        types.put({"pk": image["pk"], "sk": image["sk"]}, base + i * SECOND, image)
    sums = standin_server.backup("query-sums")
    for i, (amount, cents) in enumerate(zip(AMOUNTS, CENTS, strict=True)):
        image = {**key_of("s", i), "amount": {"N": str(amount)}, "cents": {"N": str(cents)}}
        if i < 3:
            image |= {"big": {"N": BIG}, "tiny": {"N": TINY}}
        sums.put(key_of("s", i), base + i * SECOND // 100, image)
    as_of = base + 100 * SECOND
    types.compact(as_of)
    sums.compact(as_of)
    return Data(types, sums, as_of)


MODES = ["snapshot", "as-of"]


def query(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    backup: Backup,
    mode: str,
    sql: str,
    *args: str,
) -> str:
    as_of = ["--as-of", str(data.as_of / SECOND)] if mode == "as-of" else []
    code, out, err = run_cli(capsys, server, backup.bucket, "query", *as_of, *args, sql)
    assert (code, answered(err)) == (0, ""), err
    return out


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line, parse_float=decimal.Decimal) for line in text.splitlines()]


@pytest.mark.parametrize("mode", MODES)
def test_column_types(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    mode: str,
) -> None:
    out = query(
        capsys,
        server,
        data,
        data.types,
        mode,
        "SELECT column_name, column_type FROM (DESCRIBE items)",
        "--format",
        "jsonl",
    )
    described = {row["column_name"]: row["column_type"] for row in jsonl(out)}
    for name, kind in EXPECTED_TYPES.items():
        assert described.get(name) == kind, name
    assert described["__event_time"] == "TIMESTAMP WITH TIME ZONE"

    out = query(
        capsys,
        server,
        data,
        data.types,
        mode,
        "SELECT typeof(n_dec) AS n, typeof(mixed) AS mixed, typeof(blob) AS b, "
        'typeof("select") AS kw FROM items WHERE sk = 1',
        "--format",
        "jsonl",
    )
    assert jsonl(out) == [{"n": "DECIMAL(38,2)", "mixed": "JSON", "b": "BLOB", "kw": "VARCHAR"}]


@pytest.mark.parametrize("mode", MODES)
def test_values_in_typed_columns(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    mode: str,
) -> None:
    out = query(
        capsys,
        server,
        data,
        data.types,
        mode,
        "SELECT sk, s, n_dec, n_dbl, flag, hex(blob) AS blob, octet_length(blob) AS blob_len, "
        "ss, ns, bs, l, m, nul, mixed, json_type(mixed) AS mixed_type, opt, big, tiny "
        "FROM items ORDER BY sk",
        "--format",
        "jsonl",
    )
    one, two, three = jsonl(out)
    D = decimal.Decimal  # noqa: N806
    assert D(one["sk"]) == 1
    assert one["s"] == "hello ü"
    assert D(one["n_dec"]) == D("1.5")
    assert float(one["n_dbl"]) == 1e100
    assert one["flag"] is True
    assert (one["blob"], one["blob_len"]) == ("00FF", 2)
    assert one["ss"] == ["a", "b"]
    assert one["ns"] == [1, D("2.5")]
    assert one["bs"] == [b64(b"\x00"), b64(b"\xff")]
    assert one["l"] == [1, "x", {"k": int(BIG)}]
    assert one["m"] == {"a": 1, "b": [], "c": {"d": "deep"}}
    assert one["nul"] is None
    assert (one["mixed"], one["mixed_type"]) == ("text", "VARCHAR")
    assert one["opt"] is None
    assert D(one["big"]) == D(BIG)
    assert D(one["tiny"]) == D(TINY)

    assert (two["s"], D(two["n_dec"]), float(two["n_dbl"]), two["flag"]) == (
        "",
        D("-20.25"),
        0.5,
        False,
    )
    assert (two["blob"], two["blob_len"]) == ("", 0)
    assert (two["mixed"], two["opt"]) == (5, "set")
    assert two["mixed_type"] in {"UBIGINT", "BIGINT"}
    assert D(two["big"]) == D("-" + BIG)
    assert D(two["tiny"]) == D("-" + TINY)

    assert (three["s"], three["flag"], three["blob"], three["ss"]) == (None, None, None, None)
    assert (three["mixed"], three["mixed_type"]) == ({"x": True}, "OBJECT")


@pytest.mark.parametrize("mode", MODES)
def test_the_lossless_item_holds_the_exact_value(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    mode: str,
) -> None:
    out = query(
        capsys,
        server,
        data,
        data.types,
        mode,
        "SELECT __item FROM items ORDER BY sk",
        "--format",
        "jsonl",
    )
    assert [row["__item"] for row in jsonl(out)] == ITEMS
    # Numbers of the lossless item are DynamoDB's strings, so no digit is ever lost.
    out = query(
        capsys,
        server,
        data,
        data.types,
        mode,
        "SELECT __item->'n_dbl'->>'N' AS n, __item->'l'->'L'->2->'M'->'k'->>'N' AS k "
        "FROM items WHERE sk = 1",
        "--format",
        "csv",
    )
    assert list(csv.reader(io.StringIO(out))) == [["n", "k"], ["1E+100", BIG]]


def test_quoted_identifiers_for_odd_attribute_names(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    out = query(
        capsys,
        server,
        data,
        data.types,
        "snapshot",
        'SELECT "select", "with space", "quo""te", "dot.ted" FROM items '
        'WHERE "select" IS NOT NULL ORDER BY "select"',
        "--format",
        "csv",
    )
    assert list(csv.reader(io.StringIO(out))) == [
        ["select", "with space", 'quo"te', "dot.ted"],
        ["keyword", "space", "quote", "dot"],
        ["keyword 2", "", "", ""],
    ]


def test_nested_attributes_through_json_functions(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    out = query(
        capsys,
        server,
        data,
        data.types,
        "snapshot",
        "SELECT m->>'$.c.d' AS d, json_extract_string(l, '$[1]') AS second, "
        "json_array_length(ss) AS n_ss, list_contains(ss::VARCHAR[], 'b') AS has_b "
        "FROM items WHERE sk = 1",
        "--format",
        "jsonl",
    )
    assert jsonl(out) == [{"d": "deep", "second": "x", "n_ss": 2, "has_b": True}]


@pytest.mark.parametrize("mode", MODES)
def test_decimal_sums_are_exact(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    mode: str,
) -> None:
    out = query(
        capsys,
        server,
        data,
        data.sums,
        mode,
        "SELECT sum(amount) AS amount, sum(cents) AS cents, sum(big) AS big, "
        "sum(tiny) AS tiny, typeof(sum(amount)) AS t, count(*) AS n FROM items",
        "--format",
        "csv",
    )
    header, row = list(csv.reader(io.StringIO(out)))
    result = dict(zip(header, row, strict=True))
    assert result["n"] == "60"
    assert decimal.Decimal(result["amount"]) == sum(AMOUNTS) == decimal.Decimal("183")
    assert result["amount"] == "183.0"
    assert decimal.Decimal(result["cents"]) == sum(CENTS)
    with decimal.localcontext(prec=80):
        assert decimal.Decimal(result["big"]) == 3 * decimal.Decimal(BIG)
        assert decimal.Decimal(result["tiny"]) == 3 * decimal.Decimal(TINY)
    assert result["big"] == "3703703670370370367037037036703703701"
    assert result["t"].startswith("DECIMAL(38,")

    out = query(
        capsys,
        server,
        data,
        data.sums,
        mode,
        "SELECT sum(amount) AS amount FROM items",
        "--format",
        "jsonl",
    )
    (row_json,) = jsonl(out)
    assert decimal.Decimal(str(row_json["amount"])) == decimal.Decimal("183.0")


@pytest.fixture(scope="module")
def clashing(standin_server: Server) -> tuple[Backup, int]:  # noqa: F811
    """Attribute names DuckDB cannot tell apart: its identifiers ignore case."""
    b = standin_server.backup("query-clashing-names")
    base = now_us() - 1800 * SECOND
    for sk in range(3):
        image = {
            **key_of("c", sk),
            "Status": {"S": f"upper {sk}"},
            "status": {"S": f"lower {sk}"},
            "__Item": {"S": "an attribute, not the lossless item"},
            "__event_name": {"S": "an attribute named like a system column"},
            "Ä": {"N": "1"},
            "ä": {"N": "2"},
        }
        b.put(key_of("c", sk), base + sk * SECOND, image)
    as_of = base + 10 * SECOND
    b.compact(as_of)
    return b, as_of


@pytest.mark.parametrize("mode", MODES)
def test_names_differing_only_in_case_never_show_another_attribute(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    clashing: tuple[Backup, int],
    mode: str,
) -> None:
    """ "status" must not silently read the attribute "Status" (or the other way round):
    such attributes are left to the lossless item, which tells them apart."""
    b, as_of = clashing
    as_of_args = ["--as-of", str(as_of / SECOND)] if mode == "as-of" else []

    def run(sql: str) -> tuple[int, str, str]:
        return run_cli(capsys, server, b.bucket, "query", *as_of_args, "--format", "jsonl", sql)

    code, out, err = run(
        "SELECT __item->'Status'->>'S' AS upper, __item->'status'->>'S' AS lower, "
        "__item->'__Item'->>'S' AS item_attribute, __event_name, json_type(__item) AS t, "
        '"Ä", "ä" FROM items ORDER BY sk'
    )
    assert (code, answered(err)) == (0, "")
    rows = jsonl(out)
    assert [(r["upper"], r["lower"]) for r in rows] == [
        (f"upper {i}", f"lower {i}") for i in range(3)
    ]
    assert {r["item_attribute"] for r in rows} == {"an attribute, not the lossless item"}
    assert {r["__event_name"] for r in rows} == {"MODIFY"}  # the system column
    assert {r["t"] for r in rows} == {"OBJECT"}
    assert {(str(r["Ä"]), str(r["ä"])) for r in rows} == {("1", "2")}  # DuckDB folds ASCII only

    for name in ("status", "Status", "STATUS"):
        code, out, err = run(f'SELECT "{name}" FROM items')  # noqa: S608 - a test constant
        assert code == 1
        assert err.startswith("ddb-backup: error: Binder Error: Referenced column")
