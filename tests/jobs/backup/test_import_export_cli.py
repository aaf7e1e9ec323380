"""`ddb-backup import-export` end to end: the round trip snapshot -> our DynamoDB-style
export -> import into another table name -> restore gives identical items; one-line
errors with their exit codes."""

from __future__ import annotations

import base64
import json

import pytest

from backup_lambda.layout import format_time_us
from compaction.exportmanifests import export_root
from compaction.policy import SnapshotPolicy
from jobs.backup.import_export import parse_key_schema
from jobs.main import main
from tests.compaction.awsexports import SOURCE_BUCKET, ExportFolder, change_line
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)

RICH = {
    "big": {"N": "-12345678901234567890123456789012345678"},
    "small": {"N": "0.00000000000000000000000000000000000001"},
    "bin": {"B": base64.b64encode(bytes(range(256))).decode()},
    "bs": {"BS": ["AAE=", "/w=="]},
    "ns": {"NS": ["1", "99999999999999999999999999999999999999"]},
    "ss": {"SS": ["", "ü"]},
    "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": True}, {"M": {"e": {"S": ""}}}]}}},
    "quote": {"S": 'a "quoted" \\ back\nslash\t\u2028'},
}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip_snapshot_export_import_restore(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a backup of orders with every kind of value, a removal, and a snapshot as of T
    start = now_us() - 3600 * SECOND
    for sk in range(30):
        image = {**key_of(f"user#{sk}", sk), **RICH, "n": {"N": str(sk)}}
        backup.put(key_of(f"user#{sk}", sk), start + sk * SECOND, image)
    backup.remove("user#7", 7, start + 40 * SECOND)
    as_of = start + 50 * SECOND
    manifest = backup.compact(as_of)
    # WHEN its DynamoDB-style export is imported into another table name
    source = f"s3://{BUCKET}/{export_root('', manifest)}"
    code, out, err = _cli(
        capsys,
        "import-export",
        "--bucket", BUCKET, "--table", "orders_copy", "--from", source, "--json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    result = json.loads(out.splitlines()[-1])
    assert [e["status"] for e in result["exports"]] == ["imported"]
    assert result["exports"][0]["items"] == 29
    # AND both tables are restored as of T
    when = format_time_us(as_of)
    for table, target in ((TABLE, "from_orders"), ("orders_copy", "from_copy")):
        code, _, err = _cli(
            capsys,
            "restore",
            "--bucket", BUCKET, "--table", table, "--to", target,
            "--as-of", when, "--create-table",
        )  # fmt: skip
        assert (code, err) == (0, "")
    # THEN the items are identical, and they are the state as of T
    expected = backup.oracle(as_of)
    assert len(expected) == 29
    assert backup.target_items("from_copy") == expected
    assert backup.target_items("from_orders") == expected


@pytest.fixture
def exports(backup: Backup) -> ExportFolder:  # noqa: F811
    backup.s3.create_bucket(Bucket=SOURCE_BUCKET)
    return ExportFolder(backup.s3)


X = (now_us() // SECOND // 60 - 24 * 60) * 60 * SECOND + 123_000
FROM = f"s3://{SOURCE_BUCKET}/exports/"


def _import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return _cli(
        capsys, "import-export", "--bucket", BUCKET, "--table", TABLE, "--from", FROM, *args
    )


def test_text_report(exports: ExportFolder, capsys: pytest.CaptureFixture[str]) -> None:
    items = [{**key_of(f"u{i}", i), "v": {"N": str(i)}} for i in range(5)]
    written = exports.full(items, X)
    exports.incremental(
        [change_line(key_of("u1", 1), X + 60 * SECOND, new={**key_of("u1", 1), "v": {"N": "9"}})],
        X,
        X + 3600 * SECOND,
    )
    code, out, err = _import(capsys, "--key-schema", "pk:S:HASH,sk:N:RANGE")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(
        f"full export {written.export_id} as of {format_time_us(X)}: 5 items"
    )
    assert lines[0].endswith("(imported)")
    assert "1 puts, 0 deletes (imported)" in lines[1]
    code, out, _ = _import(capsys, "--key-schema", "pk:S:HASH,sk:N:RANGE")
    assert out.count("(already imported)") == 2


def test_the_key_schema_comes_from_the_source_table(
    exports: ExportFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    # the backup fixture created the live table `orders` (pk S, sk N)
    exports.full([key_of("a", 1)], X)
    code, out, err = _import(capsys, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out.splitlines()[-1])["key_schema_source"] == "describe_table"


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        ("gap", (), 2, "add --allow-gap to import anyway"),
        ("md5", (), 6, "does not match md5Checksum"),
        ("none", (), 3, "no DynamoDB export under"),
        ("full", ("--key-schema", "pk:X:HASH"), 2, "--key-schema 'pk:X:HASH': expected"),
        ("full", ("--export-id", "nope"), 3, "no finished export nope"),
        ("bad-line", (), 2, "line 1: not a JSON line"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    exports: ExportFolder,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    if setup in {"gap", "full", "md5"}:
        written = exports.full([key_of("a", 1)], X)
        if setup == "md5":
            exports.replace_data(written, 0, [])
    if setup == "gap":
        exports.incremental([], X + 3600 * SECOND, X + 7200 * SECOND)
    if setup == "bad-line":
        exports.incremental([b"{oops"], X, X + 60 * SECOND, files=1, empty_files=0)
    status, _, err = _import(capsys, *args)
    assert status == code
    assert err.count("\n") == 1
    assert err.startswith("ddb-backup: error: ")
    assert message in err
    assert "Traceback" not in err


def test_key_schema_option() -> None:
    schema = parse_key_schema("sk:N:RANGE,pk:B:hash")
    assert [(k.name, k.attribute_type, k.key_type) for k in schema] == [
        ("pk", "B", "HASH"),
        ("sk", "N", "RANGE"),
    ]
    for bad in ("pk:S:RANGE", "pk:S:HASH,sk:S:HASH", "pk:S", "pk:S:HASH,pk:N:RANGE"):
        with pytest.raises(Exception, match="--key-schema"):
            parse_key_schema(bad)


def test_help_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "import-export" in capsys.readouterr().out


def test_round_trip_of_a_full_and_a_delta_snapshot(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a full snapshot at T1 and a delta snapshot at T2 (changes, a removal, and a key
    # created and removed between them)
    start = now_us() - 3600 * SECOND
    for sk in range(20):
        backup.put(key_of("a", sk), start + sk * SECOND, {**key_of("a", sk), **RICH})
    t1 = start + 30 * SECOND
    full = backup.compact(t1)
    backup.put(key_of("a", 1), t1 + SECOND, {**key_of("a", 1), "v": {"N": "2"}})
    backup.remove("a", 2, t1 + 2 * SECOND)
    backup.put(key_of("b", 1), t1 + 3 * SECOND, {**key_of("b", 1), **RICH})
    backup.put(key_of("c", 1), t1 + 4 * SECOND, {**key_of("c", 1)})
    backup.remove("c", 1, t1 + 5 * SECOND)
    t2 = t1 + 10 * SECOND
    delta = backup.compact(t2, policy=SnapshotPolicy(kind="delta"))
    assert delta.kind == "delta"
    # WHEN both DynamoDB-style exports are imported into another table name
    for manifest in (full, delta):
        source = f"s3://{BUCKET}/{export_root('', manifest)}"
        code, out, err = _cli(
            capsys,
            "import-export",
            "--bucket", BUCKET, "--table", "orders_copy", "--from", source, "--json",
        )  # fmt: skip
        assert (code, err) == (0, ""), err
        (outcome,) = json.loads(out.splitlines()[-1])["exports"]
        assert outcome["type"] == ("FULL_EXPORT" if manifest is full else "INCREMENTAL_EXPORT")
    # THEN a restore of the copy as of T2 holds exactly the items as of T2
    code, _, err = _cli(
        capsys,
        "restore",
        "--bucket", BUCKET, "--table", "orders_copy", "--to", "from_copy",
        "--as-of", format_time_us(t2), "--create-table",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert backup.target_items("from_copy") == backup.oracle(t2)
