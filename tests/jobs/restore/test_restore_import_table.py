"""`restore --via import-table`: the ImportTable request, the files it loads (read with our
strict reader, since moto's ImportTable parser mangles escaped strings), the whole restore
against moto, and every refusal."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from backup_lambda.errors import CorruptSnapshotError, NotFoundError, UserInputError
from backup_lambda.layout import format_time_us, key_hash
from compaction.awsexport import parse_item_line
from compaction.manifest import KeyAttribute, Manifest
from jobs.main import main
from jobs.restore.importtable import (
    ImportTableError,
    ImportTableOptions,
    ImportTableRestorer,
    check_import_source,
    data_prefix,
    import_table_request,
)
from jobs.restore.tablesettings import SettingsOverrides, UnapplicableSettingsError
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    create_table,
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)

SCHEMA = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))
PARAMS = {
    "TableName": "copy",
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "N"},
    ],
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
ESCAPES = {"S": 'a "quoted" \\ back\nslash\t\u2028 ü \u0000'}


def _history(b: Backup) -> tuple[Manifest, int, int]:
    """30 items, a snapshot at T1, then changes (a modify, a removal, an insert) up to T2."""
    start = now_us() - 3600 * SECOND
    for sk in range(30):
        b.item("a", sk, start + sk * SECOND, status="new")
    b.remove("a", 29, start + 35 * SECOND)
    t1 = start + 40 * SECOND
    snapshot = b.compact(t1)
    b.item("a", 3, t1 + 5 * SECOND, status="paid")
    b.remove("a", 4, t1 + 6 * SECOND)
    b.item("b", 1, t1 + 7 * SECOND, status="new")
    b.item("b", 2, t1 + 500 * SECOND, status="after")  # after T2
    return snapshot, t1, t1 + 60 * SECOND


def restorer(b: Backup, target: str, as_of: int, **options: Any) -> ImportTableRestorer:
    options.setdefault("poll_seconds", 0.01)
    messages: list[str] = options.pop("messages", [])
    progress = options.pop("progress", None)
    return ImportTableRestorer(
        b.s3,
        options.pop("dynamodb", b.dynamodb),
        BUCKET,
        TABLE,
        target,
        options=ImportTableOptions(as_of_us=as_of, **options),
        announce=messages.append,
        progress=progress,
    )


def test_the_import_table_request(backup: Backup) -> None:  # noqa: F811
    snapshot, _, _ = _history(backup)
    request = import_table_request(BUCKET, "", snapshot, dict(PARAMS))
    assert request == {
        "S3BucketSource": {
            "S3Bucket": BUCKET,
            "S3KeyPrefix": f"{TABLE}/v1/snapshots/{snapshot.id}/run-{snapshot.run_id}/export/data/",
        },
        "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": "GZIP",
        "TableCreationParameters": PARAMS,
        "ClientToken": request["ClientToken"],
    }
    assert len(request["ClientToken"]) == 32
    # the same restore asks with the same token (a retry returns the same import)
    assert import_table_request(BUCKET, "", snapshot, dict(PARAMS)) == request
    # another target, or other parameters (DynamoDB refuses a token reused with them): another
    for other in ({**PARAMS, "TableName": "other"}, {**PARAMS, "BillingMode": "PROVISIONED"}):
        assert (
            import_table_request(BUCKET, "", snapshot, other)["ClientToken"]
            != (request["ClientToken"])
        )


def test_the_prefix_import_table_loads_holds_exactly_the_snapshot(backup: Backup) -> None:  # noqa: F811
    # GIVEN a snapshot of items with escapes, control characters and line separators
    start = now_us() - 3600 * SECOND
    for sk in range(20):
        image = {**key_of("e", sk), "text": ESCAPES, "n": {"N": "1" * 38}}
        backup.put(key_of("e", sk), start + sk * SECOND, image)
    as_of = start + 30 * SECOND
    snapshot = backup.compact(as_of, shard_digits=1)
    # WHEN the objects under the request's prefix are read as ImportTable reads them
    prefix = import_table_request(BUCKET, "", snapshot, dict(PARAMS))["S3BucketSource"]
    listing = backup.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix["S3KeyPrefix"])
    items = {}
    for entry in listing["Contents"]:
        body = backup.s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
        for number, line in enumerate(gzip.decompress(body).split(b"\n")[:-1], start=1):
            item = parse_item_line(line, f"{entry['Key']} line {number}")
            items[key_hash({"pk": item["pk"], "sk": item["sk"]})] = item
    # THEN they are the snapshot's items, exactly, and nothing else
    assert items == backup.oracle(as_of)
    assert {e["Key"] for e in listing["Contents"]} == {f.key for f in snapshot.files_of("json.gz")}


def test_restore_via_import_table_then_the_changes(backup: Backup) -> None:  # noqa: F811
    # GIVEN a snapshot at T1 and changes after it
    snapshot, _, t2 = _history(backup)
    # WHEN the state as of T2 is restored through ImportTable
    report = restorer(backup, "copy", t2).run()
    # THEN ImportTable loaded the snapshot, the changes were applied, and the target is T2
    assert report.status == "COMPLETED"
    assert report.imported == snapshot.counts.items == 29
    assert (report.puts, report.deletes) == (2, 1)
    assert (report.writes.requests, report.writes.items) == (1, 3)  # one unit, one request
    assert backup.target_items("copy") == backup.oracle(t2)


def test_an_existing_target_is_refused(backup: Backup) -> None:  # noqa: F811
    _, _, t2 = _history(backup)
    create_table(backup.dynamodb, "copy")
    with pytest.raises(UserInputError, match="exists: ImportTable only creates new tables"):
        restorer(backup, "copy", t2).run()


def test_without_a_full_snapshot_it_says_what_to_do(backup: Backup) -> None:  # noqa: F811
    backup.item("a", 1, now_us() - 100 * SECOND, status="new")
    with pytest.raises(NotFoundError, match="run `ddb-backup compact` first"):
        restorer(backup, "copy", now_us()).run()


def test_a_foreign_object_under_the_prefix_is_refused(backup: Backup) -> None:  # noqa: F811
    snapshot, _, t2 = _history(backup)
    backup.s3.put_object(Bucket=BUCKET, Key=data_prefix("", snapshot) + "stray.json.gz", Body=b"")
    with pytest.raises(CorruptSnapshotError, match=r"stray\.json\.gz is under the prefix"):
        restorer(backup, "copy", t2).run()
    assert backup.dynamodb.list_tables()["TableNames"] == [TABLE]


def test_a_replaced_file_is_refused(backup: Backup) -> None:  # noqa: F811
    snapshot, _, _ = _history(backup)
    data_file = snapshot.files_of("json.gz")[0]
    body = backup.s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
    backup.s3.put_object(Bucket=BUCKET, Key=data_file.key, Body=body)  # same bytes, new version
    with pytest.raises(CorruptSnapshotError, match="ImportTable reads the current one"):
        check_import_source(backup.s3, BUCKET, "", snapshot)


class Stubbed:
    """The moto client, with ImportTable answers scripted."""

    def __init__(self, real: Any, answers: list[dict[str, Any]]) -> None:
        self._real = real
        self._answers = answers
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def import_table(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"ImportTableDescription": {"ImportArn": "arn:import/1", **self._answers.pop(0)}}

    def describe_import(self, ImportArn: str) -> dict[str, Any]:  # noqa: N803
        return {"ImportTableDescription": {"ImportArn": ImportArn, **self._answers.pop(0)}}


def test_waiting_reports_progress(backup: Backup) -> None:  # noqa: F811
    snapshot, _, t2 = _history(backup)
    answers = [
        {"ImportStatus": "IN_PROGRESS", "ProcessedItemCount": 0},
        {"ImportStatus": "IN_PROGRESS", "ProcessedItemCount": 10},
        {"ImportStatus": "COMPLETED", "ProcessedItemCount": 29, "ImportedItemCount": 29},
    ]
    stub = Stubbed(backup.dynamodb, answers)
    # ImportTable is scripted: the table it would create is made here, and DescribeTable
    # says it is missing when the restore first looks
    create_table(backup.dynamodb, "copy")
    stub.describe_table = _missing_then_real(backup.dynamodb)  # type: ignore[method-assign]
    seen: list[tuple[str, int, int]] = []
    run = restorer(backup, "copy", t2, dynamodb=stub, progress=lambda *step: seen.append(step))
    report = run.run()
    assert [s for s in seen if s[0] == "import-table"] == [
        ("import-table", 0, 29),
        ("import-table", 10, 29),
        ("import-table", 29, 29),
    ]
    assert report.imported == 29
    assert stub.requests[0]["TableCreationParameters"]["TableName"] == "copy"
    assert snapshot.id == report.snapshot


def _missing_then_real(real: Any) -> Any:
    """DescribeTable of the target says it is missing the first time (before the import)."""
    calls = {"copy": 0}

    def describe(TableName: str) -> Any:  # noqa: N803
        if TableName == "copy" and calls["copy"] == 0:
            calls["copy"] += 1
            raise real.exceptions.ResourceNotFoundException(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "DescribeTable"
            )
        return real.describe_table(TableName=TableName)

    return describe


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            {"ImportStatus": "FAILED", "FailureCode": "S3NoSuchBucket", "ErrorCount": 0},
            "FAILED: S3NoSuchBucket",
        ),
        (
            {
                "ImportStatus": "COMPLETED",
                "ImportedItemCount": 27,
                "ErrorCount": 2,
                "CloudWatchLogGroupArn": "arn:logs:group/imports",
            },
            "imported 27 of 29 items of snapshot .* 2 errors \\(rejected items are logged in "
            "arn:logs:group/imports\\)",
        ),
    ],
)
def test_an_import_that_did_not_load_everything_fails(
    backup: Backup,  # noqa: F811
    answer: dict[str, Any],
    message: str,
) -> None:
    _, _, t2 = _history(backup)
    stub = Stubbed(backup.dynamodb, [answer])
    with pytest.raises(ImportTableError, match=message):
        restorer(backup, "copy", t2, dynamodb=stub).run()


def test_local_indexes_are_refused_unless_skipped(backup: Backup) -> None:  # noqa: F811
    # GIVEN a source table with a local and a global secondary index, recorded by compaction
    backup.dynamodb.delete_table(TableName=TABLE)
    create_table(
        backup.dynamodb,
        TABLE,
        {"pk": "S", "sk": "N"},
        LocalSecondaryIndexes=[
            {
                "IndexName": "by_status",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_sk",
                "KeySchema": [{"AttributeName": "sk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    _, _, t2 = _history(backup)
    # WHEN it is restored through ImportTable: THEN the local index it cannot create stops
    # the restore before anything is created, as an unapplicable setting of CreateTable does
    with pytest.raises(UnapplicableSettingsError, match="local index by_status: ImportTable"):
        restorer(backup, "copy", t2).run()
    assert "copy" not in backup.dynamodb.list_tables()["TableNames"]
    # AND with --skip-unapplicable it is named and left out; the global index is created
    messages: list[str] = []
    report = restorer(
        backup, "copy", t2, messages=messages, settings=SettingsOverrides(skip_unapplicable=True)
    ).run()
    assert any("local index by_status" in m for m in messages)
    assert "local index by_status" in report.as_json()["settings"]["unapplied"][0]
    created = backup.dynamodb.describe_table(TableName="copy")["Table"]
    assert [i["IndexName"] for i in created["GlobalSecondaryIndexes"]] == ["by_sk"]
    assert not created.get("LocalSecondaryIndexes")
    assert backup.target_items("copy") == backup.oracle(t2)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["restore", "--bucket", BUCKET, "--table", TABLE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json(backup: Backup, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    snapshot, _, t2 = _history(backup)
    code, out, err = _cli(
        capsys,
        "--to", "copy", "--as-of", format_time_us(t2), "--create-table",
        "--via", "import-table", "--json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    result = json.loads(out.splitlines()[-1])
    assert result["via"] == "import-table"
    assert result["snapshot"] == snapshot.id
    assert (result["imported_items"], result["puts"], result["deletes"]) == (29, 2, 1)
    assert result["import_status"] == "COMPLETED"
    assert backup.target_items("copy") == backup.oracle(t2)


def test_cli_dry_run_calls_nothing(backup: Backup, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    _, _, t2 = _history(backup)
    code, out, _ = _cli(
        capsys,
        "--to", "copy", "--as-of", format_time_us(t2), "--create-table",
        "--via", "import-table", "--dry-run",
    )  # fmt: skip
    assert code == 0
    assert out.startswith("would import table 'copy' (on-demand) from snapshot ")
    assert "\nImportTable {\n" in out
    assert "would put 2, would delete 1" in out
    assert "copy" not in backup.dynamodb.list_tables()["TableNames"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--via import-table creates the target table: add --create-table"),
        (("--create-table", "--verify"), "--keys, --key-prefix and --verify need"),
        (("--create-table", "--key-prefix", "a"), "--keys, --key-prefix and --verify need"),
    ],
)
def test_cli_refusals(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    code, _, err = _cli(capsys, "--to", "copy", "--via", "import-table", *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
