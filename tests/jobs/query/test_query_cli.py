"""`ddb-backup query` on the command line: output formats, --output, errors, the
`snapshots` view, and a session that cannot touch local files."""

from __future__ import annotations

import csv
import decimal
import io
import json
import time
from pathlib import Path

import pytest

from backup_lambda.layout import format_time_us
from compaction.manifest import snapshot_id
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

BUCKET = "query-cli"
EMPTY_BUCKET = "query-cli-no-snapshot"
EMPTY_SNAPSHOT_BUCKET = "query-cli-empty-snapshot"


class Data:
    def __init__(self, backup: Backup, first: int, second: int) -> None:
        self.backup = backup
        self.first = first
        self.second = second


@pytest.fixture(scope="module")
def data(standin_server: Server) -> Data:  # noqa: F811
    b = standin_server.backup(BUCKET)
    base = now_us() - 1800 * SECOND
    for sk in range(6):
        image = {
            **key_of("a" if sk < 4 else "b", sk),
            "status": {"S": "paid" if sk % 2 else "placed"},
            "total": {"N": f"{sk}.25"},
            "note": {"S": 'comma, "quote"\nnewline'} if sk == 0 else {"S": "ü"},
            "tags": {"SS": ["x", str(sk)]},
            "blob": {"B": "AP8="},
        }
        b.put(key_of(image["pk"]["S"], sk), base + sk * SECOND, image)
    first = base + 10 * SECOND
    b.compact(first)
    b.remove("a", 0, base + 20 * SECOND)
    b.item("c", 9, base + 21 * SECOND, status="late")
    second = base + 30 * SECOND
    b.compact(second)
    empty = standin_server.backup(EMPTY_BUCKET)
    empty.item("a", 1, base, status="only versions")
    nothing_yet = standin_server.backup(EMPTY_SNAPSHOT_BUCKET)
    nothing_yet.item("a", 1, base + 10 * SECOND, status="after the snapshot")
    assert nothing_yet.compact(base).counts.items == 0
    return Data(b, first, second)


def query(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    *args: str,
    bucket: str = BUCKET,
) -> tuple[int, str, str]:
    return run_cli(capsys, server, bucket, "query", *args)


def one_line_error(code: int, out: str, err: str) -> str:
    assert code != 0
    assert out == ""
    assert err.startswith("ddb-backup: error: ")
    assert err.count("\n") == 1
    assert err.endswith("\n")
    assert "Traceback" not in err
    return err


SQL = "SELECT pk, sk, status, total, note, tags, blob FROM items ORDER BY sk"


def test_table_format(capsys: pytest.CaptureFixture[str], server: Server, data: Data) -> None:  # noqa: F811
    code, out, err = query(capsys, server, "SELECT sk, status, total FROM items ORDER BY sk")
    assert (code, answered(err)) == (0, "")
    lines = out.splitlines()
    assert lines[0].split(" | ") == ["sk", "status", "total"]
    assert set(lines[1]) <= {"-", "+"}
    statuses = [line.split("|")[1].strip() for line in lines[2:-1]]
    assert statuses == ["paid", "placed", "paid", "placed", "paid", "late"]
    assert lines[-1] == "(6 rows)"
    assert [cell.strip() for cell in lines[2].split("|")] == ["1", "paid", "1.25"]


def test_csv_format(capsys: pytest.CaptureFixture[str], server: Server, data: Data) -> None:  # noqa: F811
    code, out, err = query(capsys, server, "--format", "csv", SQL)
    assert (code, answered(err)) == (0, "")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["pk", "sk", "status", "total", "note", "tags", "blob"]
    assert len(rows) == 7
    assert rows[1][:4] == ["a", "1", "paid", "1.25"]
    assert json.loads(rows[1][5]) == ["x", "1"]
    assert rows[1][6] == "AP8="  # bytes as base64
    assert rows[1][4] == "ü"


def test_csv_quotes_awkward_values(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    code, out, _ = query(
        capsys, server, "--format", "csv", "--as-of", str(data.first / SECOND), SQL
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[1][:5] == ["a", "0", "placed", "0.25", 'comma, "quote"\nnewline']


def test_jsonl_format(capsys: pytest.CaptureFixture[str], server: Server, data: Data) -> None:  # noqa: F811
    code, out, err = query(capsys, server, "--format", "jsonl", SQL + ", __item")
    assert (code, answered(err)) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 6
    first = rows[0]
    assert first["pk"] == "a"
    assert decimal.Decimal(str(first["sk"])) == 1
    assert decimal.Decimal(str(first["total"])) == decimal.Decimal("1.25")
    assert first["tags"] == ["x", "1"]  # JSON columns nest
    assert first["blob"] == "AP8="


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_time_spans_and_other_duckdb_types_print_in_every_format(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    fmt: str,
) -> None:
    """Comparing times gives INTERVALs: they (and UUIDs, nested or not) print, no crash."""
    code, out, err = query(
        capsys,
        server,
        "--format",
        fmt,
        "SELECT max(__event_time) - min(__event_time) AS span, "
        "'00000000-0000-0000-0000-00000000002a'::UUID AS id, "
        "{'span': INTERVAL 90 MINUTE, 'ids': ['00000000-0000-0000-0000-00000000002a'::UUID]} "
        "AS nested, 'nan'::DOUBLE AS nan, -'inf'::DOUBLE AS minus_inf FROM items",
    )
    assert (code, answered(err)) == (0, "")
    assert "00000000-0000-0000-0000-00000000002a" in out
    if fmt == "jsonl":
        row = json.loads(out, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
        assert row["id"] == "00000000-0000-0000-0000-00000000002a"
        assert row["nested"]["ids"] == ["00000000-0000-0000-0000-00000000002a"]
        assert row["span"] == "0:00:20"  # event times 1 s .. 21 s after the base
        assert row["nested"]["span"] == "1:30:00"
        assert (row["nan"], row["minus_inf"]) == ("nan", "-inf")  # strict JSON: no NaN


def test_output_file_gets_the_result_and_stdout_nothing(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    tmp_path: Path,
) -> None:
    target = tmp_path / "result.jsonl"
    code, out, err = query(capsys, server, "--format", "jsonl", "--output", str(target), SQL)
    assert code == 0
    assert out == ""
    assert err.startswith("6 rows from snapshot ")
    assert err.endswith(f"written to {target}\n")
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [int(json.loads(line)["sk"]) for line in lines] == [1, 2, 3, 4, 5, 9]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.jsonl"]

    csv_target = tmp_path / "result.csv"
    code, out, _ = query(capsys, server, "--format", "csv", "--output", str(csv_target), SQL)
    assert (code, out) == (0, "")
    assert len(list(csv.reader(io.StringIO(csv_target.read_text(encoding="utf-8"))))) == 7


def test_bad_sql_with_output_creates_no_file(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    tmp_path: Path,
) -> None:
    target = tmp_path / "never.csv"
    code, out, err = query(capsys, server, "--output", str(target), "SELEC nothing")
    assert "Parser Error" in one_line_error(code, out, err)
    assert not target.exists()


def test_output_into_a_missing_directory_is_one_line(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    tmp_path: Path,
) -> None:
    code, out, err = query(capsys, server, "--output", str(tmp_path / "no" / "x.csv"), SQL)
    assert code == 2
    assert "--output" in one_line_error(code, out, err)


def test_newest_snapshot_without_as_of(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    code, out, _ = query(capsys, server, "--format", "jsonl", "SELECT count(*) AS n FROM items")
    assert (code, json.loads(out)) == (0, {"n": 6})
    code, out, _ = query(
        capsys,
        server,
        "--format",
        "jsonl",
        "--as-of",
        str(data.first / SECOND),
        "SELECT count(*) AS n FROM items",
    )
    assert (code, json.loads(out)) == (0, {"n": 6})
    code, out, _ = query(
        capsys,
        server,
        "--format",
        "jsonl",
        "--as-of",
        str((data.first + 10 * SECOND) / SECOND),
        "SELECT list(sk ORDER BY sk) AS sks FROM items",
    )
    assert [int(sk) for sk in json.loads(out)["sks"]] == [1, 2, 3, 4, 5]


def test_snapshots_view_lists_committed_snapshots(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    # An uncommitted snapshot (data files without a manifest) is not listed.
    data.backup.s3.put_object(
        Bucket=BUCKET,
        Key="orders/v1/snapshots/20991231T000000.000000Z/run-x/parquet/part-all.parquet",
        Body=b"not committed",
    )
    code, out, err = query(
        capsys,
        server,
        "--format",
        "jsonl",
        "SELECT id, epoch_us(as_of) AS as_of, items, bytes > 0 AS has_bytes, base "
        "FROM snapshots ORDER BY as_of",
    )
    assert (code, answered(err)) == (0, "")
    first, second = (json.loads(line) for line in out.splitlines())
    assert (first["as_of"], first["items"], first["has_bytes"], first["base"]) == (
        data.first,
        6,
        True,
        None,
    )
    assert (second["as_of"], second["items"], second["base"]) == (data.second, 6, first["id"])


def test_no_snapshot_and_no_as_of_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    code, out, err = query(capsys, server, "SELECT 1", bucket=EMPTY_BUCKET)
    assert code == 3
    assert "no committed snapshot of table 'orders'" in one_line_error(code, out, err)
    assert "--as-of" in err
    code, out, err = query(
        capsys,
        server,
        "--format",
        "jsonl",
        "--as-of",
        str(now_us() / SECOND),
        "SELECT status, (SELECT count(*) FROM snapshots) AS snapshots FROM items",
        bucket=EMPTY_BUCKET,
    )
    assert (code, answered(err)) == (0, "")
    assert json.loads(out) == {"status": "only versions", "snapshots": 0}


def test_empty_states_give_empty_results(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    count = "SELECT count(*) AS n, count(__item) AS items FROM items"
    code, out, err = query(capsys, server, "--format", "jsonl", count, bucket=EMPTY_SNAPSHOT_BUCKET)
    assert (code, answered(err), json.loads(out)) == (0, "", {"n": 0, "items": 0})
    before = str((data.first - 3600 * SECOND) / SECOND)
    code, out, err = query(capsys, server, "--format", "jsonl", "--as-of", before, count)
    assert (code, answered(err), json.loads(out)) == (0, "", {"n": 0, "items": 0})
    code, out, err = query(
        capsys, server, "--format", "csv", "--as-of", before, "SELECT * FROM items"
    )
    assert code == 0
    assert out.splitlines()[0].split(",")[0] == "__item"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["SELEC 1"], 2, "Parser Error"),
        (["SELECT nope FROM items"], 1, "Binder Error"),
        (["SELECT * FROM missing_view"], 1, "Catalog Error"),
        (["SELECT 1/0::INTEGER, 'x'::INTEGER"], 1, "Conversion Error"),
        (["--as-of", "last week", "SELECT 1"], 2, "bad time 'last week'"),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    args: list[str],
    code: int,
    message: str,
) -> None:
    actual, out, err = query(capsys, server, *args)
    assert actual == code
    assert message in one_line_error(actual, out, err)


# Limits: one read-only statement, time and memory ----------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 1; SELECT 2", "exactly one SQL statement, got 2"),
        ("CREATE TABLE t AS SELECT * FROM items", "not CREATE"),
        ("INSERT INTO items VALUES (1)", "not INSERT"),
        ("ATTACH 'x.db'", "not ATTACH"),
        ("SET memory_limit = '64GB'", "not SET"),
    ],
)
def test_several_or_writing_statements_are_refused_before_any_download(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    sql: str,
    message: str,
) -> None:
    # No bucket exists: the refusal comes before anything is read from S3.
    code, out, err = query(capsys, server, sql, bucket="no-such-bucket-for-query-limits")
    assert code == 2
    assert message in one_line_error(code, out, err)


def test_a_query_past_its_time_limit_stops_with_one_line(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    slow = "SELECT count(*) FROM items, range(1000000000000) r"
    started = time.monotonic()
    code, out, err = query(capsys, server, "--timeout", "0.5", slow)
    assert code == 1
    assert "time limit of 0.5 s (--timeout)" in one_line_error(code, out, err)
    assert time.monotonic() - started < 60


def test_a_query_past_its_memory_limit_stops_with_one_line(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    hungry = "SELECT string_agg(i::VARCHAR, ',') FROM items, range(5000000) t(i)"
    code, out, err = query(capsys, server, "--memory-limit", "20MB", hungry)
    assert code == 1
    assert "more memory than its limit of 20MB (--memory-limit)" in one_line_error(code, out, err)
    # A query that fits answers under the same limit.
    small = "SELECT count(*) AS n FROM items"
    code, out, err = query(capsys, server, "--memory-limit", "20MB", "--format", "csv", small)
    assert (code, out.split()) == (0, ["n", "6"])


def test_bad_limits_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    code, _, err = query(capsys, server, "--memory-limit", "lots", "SELECT 1")
    assert code == 2
    assert "--memory-limit 'lots'" in err
    with pytest.raises(SystemExit) as exit_info:
        query(capsys, server, "--timeout", "0", "SELECT 1")
    assert exit_info.value.code == 2
    assert "--timeout: expected a number of seconds > 0" in capsys.readouterr().err


def test_unknown_table_and_bucket(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    code, out, err = query(capsys, server, "--as-of", "1700000000", "SELECT 1", bucket="no-such-b")
    assert code == 3
    assert (
        one_line_error(code, out, err) == "ddb-backup: error: bucket 'no-such-b' does not exist\n"
    )


# The session is locked down -----------------------------------------------------------

REFUSED = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/hostname')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('{parquet}')",
    "SELECT * FROM read_json('{json}')",
    "COPY (SELECT * FROM items) TO '{out}'",
    "COPY items TO '{out}' (FORMAT parquet)",
    "EXPORT DATABASE '{dir}'",
    "ATTACH '{db}' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET enable_external_access",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "SELECT * FROM read_xlsx('/etc/passwd')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "SET python_enable_replacements = true",
    "SELECT * FROM read_parquet('s3://query-cli/orders/v1/snapshots/*/*/parquet/*')",
]


@pytest.fixture
def local_files(tmp_path: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "local.parquet"
    pq.write_table(pa.table({"marker_7f3a": [1]}), parquet)
    json_file = tmp_path / "local.json"
    json_file.write_text('{"marker_7f3a": 1}\n', encoding="utf-8")
    return {
        "parquet": parquet,
        "json": json_file,
        "out": tmp_path / "out.csv",
        "dir": tmp_path / "export",
        "db": tmp_path / "other.duckdb",
    }


@pytest.mark.parametrize("sql", REFUSED)
def test_local_files_urls_and_settings_are_refused(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    local_files: dict[str, Path],
    sql: str,
) -> None:
    statement = sql.format(**{k: str(v) for k, v in local_files.items()})
    before = sorted(p.name for p in local_files["out"].parent.iterdir())
    code, out, err = query(capsys, server, statement)
    one_line_error(code, out, err)
    assert "marker_7f3a" not in err
    assert "root:" not in err
    assert sorted(p.name for p in local_files["out"].parent.iterdir()) == before
    for created in ("out", "dir", "db"):
        assert not local_files[created].exists()


def test_refused_in_as_of_mode_too(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    tmp_path: Path,
) -> None:
    target = tmp_path / "leak.csv"
    code, out, err = query(
        capsys, server, "--as-of", str(data.first / SECOND), f"COPY items TO '{target}'"
    )
    one_line_error(code, out, err)
    assert not target.exists()
    code, out, err = query(
        capsys, server, "--as-of", str(data.first / SECOND), "SELECT * FROM read_csv('/etc/passwd')"
    )
    assert "root:" not in one_line_error(code, out, err)


def test_python_variables_are_not_visible(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DuckDB can scan an Arrow table by the name of a variable of the calling frame; the
    query runs from jobs.query, so one there must stay invisible."""
    import pyarrow as pa

    from jobs.query import command as query_module

    monkeypatch.setattr(query_module, "leak_rows", pa.table({"marker_7f3a": [1]}), raising=False)
    code, out, err = query(capsys, server, "SELECT * FROM leak_rows")
    assert "Catalog Error" in one_line_error(code, out, err)


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_endpoint_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """The standard boto3 settings reach pyarrow's S3 filesystem too (no --endpoint-url)."""
    from jobs.main import main

    monkeypatch.setenv(variable, server.endpoint_url)
    capsys.readouterr()
    code = main(
        [
            *("query", "--bucket", BUCKET, "--table", "orders", "--format", "csv"),
            "SELECT count(*) AS n FROM items",
        ]
    )
    out, err = capsys.readouterr()
    assert (code, answered(err), out.split()) == (0, "", ["n", "6"])


def test_stderr_says_which_snapshot_and_as_of_answered(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    # GIVEN two snapshots WHEN the newest is queried THEN stderr names it and its as-of
    code, _, err = query(capsys, server, "SELECT count(*) FROM items")
    second = snapshot_id(data.second)
    assert (code, err) == (
        0,
        f"ddb-backup: answered from snapshot {second}, as of {format_time_us(data.second)}\n",
    )
    # WHEN a time between them is asked for THEN the older snapshot plus changes, at that time
    between = data.first + 5 * SECOND
    code, _, err = query(capsys, server, "--as-of", str(between / SECOND), "SELECT 1")
    assert code == 0
    assert err.startswith(f"ddb-backup: answered from snapshot {snapshot_id(data.first)} + ")
    assert err.endswith(f", as of {format_time_us(between)}\n")
    # and --quiet drops the note
    code, _, err = query(capsys, server, "--quiet", "SELECT 1")
    assert (code, err) == (0, "")
