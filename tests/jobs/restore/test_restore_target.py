"""The restore target: created from the manifest's key schema, missing, or with other keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup_lambda.errors import NotFoundError
from compaction.manifest import KeyAttribute
from jobs.main import main
from jobs.restore.tablesettings import create_from_plan, plan_recreate
from jobs.restore.target import SchemaMismatchError, check_schema, describe_target
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
    put_items,
)


def _fill(b: Backup, items: int = 5) -> int:
    base = now_us() - 1800 * SECOND
    for sk in range(items):
        b.item("a", sk, base + sk * SECOND, status="placed")
    return base + 100 * SECOND


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["restore", "--bucket", BUCKET, "--table", TABLE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_create_table_uses_the_manifest_key_schema(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup)
    manifest = backup.compact(as_of)
    assert manifest.key_schema_source == "describe_table"
    # The source table is gone: the key schema now comes from the manifest only.
    backup.dynamodb.delete_table(TableName=TABLE)
    announced: list[str] = []
    backup.restorer("fresh", as_of, announce=announced.append, create_table=True).run()

    table = backup.dynamodb.describe_table(TableName="fresh")["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted(
        (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
    ) == [("pk", "S"), ("sk", "N")]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # The snapshot recorded the (deleted) source's settings; the table is made from them.
    assert announced[0] == "created table 'fresh' (on-demand)"
    assert announced[1].startswith("settings captured at ")
    assert announced[1].endswith(f"(snapshot {manifest.id})")
    assert len(announced) == 2
    assert backup.target_items("fresh") == backup.oracle(as_of)


def test_create_table_without_snapshot_uses_the_source_table(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup)
    backup.restore("fresh", as_of, create_table=True)
    key_schema = backup.dynamodb.describe_table(TableName="fresh")["Table"]["KeySchema"]
    assert [(k["AttributeName"], k["KeyType"]) for k in key_schema] == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]


def test_create_table_dry_run_creates_nothing(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup)
    announced: list[str] = []
    report = backup.restorer(
        "fresh", as_of, announce=announced.append, create_table=True, dry_run=True
    ).run()
    assert report.puts == 5
    assert report.writes.requests == 0
    # No snapshot, so no recorded settings: the request is the one of earlier releases.
    assert announced[:2] == [
        "would create table 'fresh' (on-demand)",
        "the backup records no table settings: key schema only, on-demand billing",
    ]
    assert announced[2:] == [
        "CreateTable "
        + json.dumps(
            {
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "TableName": "fresh",
            },
            indent=2,
            sort_keys=True,
        )
    ]
    assert "fresh" not in backup.dynamodb.list_tables()["TableNames"]


def test_missing_target_without_create_table(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup)
    with pytest.raises(NotFoundError, match=r"'nowhere' does not exist.*--create-table"):
        backup.restore("nowhere", as_of)
    assert "nowhere" not in backup.dynamodb.list_tables()["TableNames"]


def test_missing_target_cli_exits_3_with_one_line(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(backup)
    code, out, err = _cli(capsys, "--to", "nowhere")
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("ddb-backup: error: target table 'nowhere' does not exist")


MISMATCHES = [
    ("other key names", {"id": "S", "sk": "N"}),
    ("other key type", {"pk": "S", "sk": "S"}),
    ("partition key type", {"pk": "N", "sk": "N"}),
    ("no sort key", {"pk": "S"}),
    ("roles swapped", {"sk": "N", "pk": "S"}),
]


@pytest.mark.parametrize(("label", "key_types"), MISMATCHES, ids=[m[0] for m in MISMATCHES])
def test_key_schema_mismatch_is_detected_before_any_write(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    label: str,
    key_types: dict[str, str],
) -> None:
    as_of = _fill(backup)
    create_table(backup.dynamodb, "other", key_types)
    existing = {
        name: ({"S": "x"} if kind == "S" else {"N": "1"}) for name, kind in key_types.items()
    }
    existing["note"] = {"S": "must stay"}
    put_items(backup.dynamodb, "other", [existing])
    before = backup.dynamodb.scan(TableName="other")["Items"]

    with pytest.raises(SchemaMismatchError, match=r"key schema mismatch.*nothing was written"):
        backup.restore("other", as_of)
    code, out, err = _cli(capsys, "--to", "other", "--as-of", str(as_of / SECOND))
    assert code != 0, label
    assert err.count("\n") == 1
    assert err.startswith("ddb-backup: error: key schema mismatch: table 'other' has (")
    assert "Traceback" not in err + out
    assert backup.dynamodb.scan(TableName="other")["Items"] == before


def test_check_schema_accepts_the_same_keys_in_any_order(mocked: tuple[Any, Any]) -> None:  # noqa: F811
    _, dynamodb = mocked
    create_table(dynamodb, "same")
    actual = describe_target(dynamodb, "same")
    assert actual is not None
    check_schema("same", actual, tuple(reversed(actual)))
    assert describe_target(dynamodb, "absent") is None


def test_a_matching_target_with_data_is_accepted(backup: Backup) -> None:  # noqa: F811
    as_of = _fill(backup)
    create_table(backup.dynamodb, "same")
    put_items(backup.dynamodb, "same", [{**key_of("zz", 1), "x": {"S": "extra"}}])
    report = backup.restore("same", as_of)
    assert report.mode == "diff"
    assert backup.target_items("same") == backup.oracle(as_of)


def test_without_snapshot_or_source_table_composite_keys_cannot_be_created(
    mocked: tuple[Any, Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The stored versions record key names and types, not which is the partition key."""
    from tests.jobs.restore.restore_fixtures import make_backup

    s3, dynamodb = mocked
    b = make_backup(s3, dynamodb, source_table=False)
    as_of = _fill(b)
    code, out, err = _cli(capsys, "--to", "fresh", "--create-table")
    assert code == 2
    assert err.startswith("ddb-backup: error: cannot create the target: the backup records")
    assert err.count("\n") == 1
    assert out == ""
    code, _, err = _cli(capsys, "--to", "fresh", "--key-prefix", "a")
    assert code == 2
    assert "--key-prefix needs to know the partition key" in err
    assert "fresh" not in dynamodb.list_tables()["TableNames"]

    # A table the user created with the right keys works: names and types are checked.
    create_table(dynamodb, "fresh")
    code, _, err = _cli(capsys, "--to", "fresh", "--as-of", str(as_of / SECOND))
    assert (code, err) == (0, "")
    assert b.target_items("fresh") == b.oracle(as_of)
    create_table(dynamodb, "wrong", {"pk": "S", "sk": "S"})
    code, _, err = _cli(capsys, "--to", "wrong")
    assert code == 1
    assert "key schema mismatch" in err


def test_single_key_tables_are_created_from_the_versions_alone(
    mocked: tuple[Any, Any],  # noqa: F811
) -> None:
    from tests.jobs.restore.restore_fixtures import make_backup

    s3, dynamodb = mocked
    b = make_backup(s3, dynamodb, source_table=False)
    b.key_names = ["id"]
    base = now_us() - 600 * SECOND
    for i in range(5):
        b.put({"id": {"N": str(i)}}, base + i * SECOND, {"id": {"N": str(i)}, "v": {"S": "x"}})
    report = b.restore("single", base + 60 * SECOND, create_table=True)
    assert report.state_items == 5
    table = dynamodb.describe_table(TableName="single")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "N"}]
    assert b.target_items("single") == b.oracle(base + 60 * SECOND)


def test_key_prefix_of_the_wrong_type_is_a_usage_error(
    mocked: tuple[Any, Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.jobs.restore.restore_fixtures import make_backup

    s3, dynamodb = mocked
    b = make_backup(s3, dynamodb, source_table=False)
    create_table(dynamodb, TABLE, {"pk": "N", "sk": "N"})
    b.put({"pk": {"N": "1"}, "sk": {"N": "1"}}, now_us() - 60 * SECOND, {"pk": {"N": "1"}})
    create_table(dynamodb, "numbers", {"pk": "N", "sk": "N"})
    capsys.readouterr()
    code = main(
        ["restore", "--bucket", BUCKET, "--table", TABLE, "--to", "numbers", "--key-prefix", "x"]
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("ddb-backup: error: --key-prefix")
    assert err.count("\n") == 1


class _AnswerLost:
    """CreateTable goes through, its answer is lost, and botocore sends it again."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def create_table(self, **kwargs: Any) -> Any:
        self._client.create_table(**kwargs)
        return self._client.create_table(**kwargs)  # the retry: ResourceInUseException

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_create_table_whose_answer_was_lost_goes_on(mocked: tuple[Any, Any]) -> None:  # noqa: F811
    _, dynamodb = mocked
    schema = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))
    create_from_plan(_AnswerLost(dynamodb), plan_recreate(None, schema, "fresh"), False)
    assert describe_target(dynamodb, "fresh") == schema


def test_a_table_someone_else_created_with_other_keys_is_refused(
    mocked: tuple[Any, Any],  # noqa: F811
) -> None:
    _, dynamodb = mocked
    create_table(dynamodb, "taken", {"id": "S"})
    schema = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))
    with pytest.raises(SchemaMismatchError, match="key schema mismatch"):
        create_from_plan(dynamodb, plan_recreate(None, schema, "taken"), False)
