"""docs/DEPLOY.md's first day, followed literally (issue 17): an existing table, its stream
switched on, the Lambda live, `backfill`, then `compact` and the README's `query`, with the
default options. The first snapshot holds the backfilled items, and `compact` says when
stream changes are newer than the as-of it chose."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from backup_lambda import handler as backup_handler
from backup_lambda.layout import key_hash
from jobs.demo.standin import FakeLambdaContext
from jobs.demo.streams import StreamReader, lambda_event
from jobs.main import main
from jobs.restore.ddbitems import to_client_item
from tests.ops.helpers import TABLE, create_table, item, table_items

ITEMS = 20


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


class Lambda:
    """The backup Lambda on the table's stream (DEPLOY.md step 3): what the stream gained,
    delivered to the handler."""

    def __init__(self, streams: Any, dynamodb: Any) -> None:
        arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        self._reader = StreamReader(streams, arn)

    def deliver(self) -> int:
        records = self._reader.poll()
        if records:
            response = backup_handler.handler(lambda_event(records), FakeLambdaContext())
            assert response == {"batchItemFailures": []}
        return len(records)


@pytest.fixture
def first_day(monkeypatch: pytest.MonkeyPatch, dynamodb: Any, streams: Any, bucket: str) -> Lambda:
    """An existing table with items; then steps 2 and 3: its stream on, the Lambda live."""
    monkeypatch.setenv("BACKUP_BUCKET", bucket)
    create_table(dynamodb, TABLE)
    for i in range(ITEMS):
        dynamodb.put_item(TableName=TABLE, Item=to_client_item(item(f"order-{i:02d}", total=i)))
    dynamodb.update_table(
        TableName=TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    backup = Lambda(streams, dynamodb)
    assert backup.deliver() == 0  # nothing written since the stream was switched on
    return backup


def query_items(capsys: pytest.CaptureFixture[str], bucket: str) -> dict[str, Any]:
    code, out, err = cli(
        capsys,
        "query",
        "--bucket",
        bucket,
        "--table",
        TABLE,
        "--format",
        "jsonl",
        "SELECT __item FROM items",
    )
    assert code == 0, err
    items = [json.loads(line)["__item"] for line in out.splitlines()]
    items = [json.loads(i) if isinstance(i, str) else i for i in items]
    return {key_hash({"pk": i["pk"]}): i for i in items}


def test_backfill_compact_query_gives_the_tables_items(
    first_day: Lambda, dynamodb: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN steps 4 and 5 as DEPLOY.md writes them, run one after the other
    code, _, err = cli(capsys, "backfill", "--table", TABLE, "--bucket", bucket)
    assert code == 0, err
    code, out, err = cli(capsys, "compact", "--bucket", bucket, "--table", TABLE)
    assert code == 0, err
    # THEN the first snapshot holds the backfill (its as-of is the backfill's time, not
    # now minus the settle window, which lies before it), and says why
    assert f": {ITEMS} items," in out
    assert "the time of backfill" in err
    # and the README's query answers with the table's items, saying from which snapshot
    count_code, count_out, count_err = cli(
        capsys, "query", "--bucket", bucket, "--table", TABLE, "SELECT count(*) FROM items"
    )
    assert count_code == 0
    assert str(ITEMS) in count_out.split()
    assert count_err.startswith("ddb-backup: answered from snapshot ")
    assert query_items(capsys, bucket) == table_items(dynamodb, TABLE)


def test_compact_says_when_changes_are_newer_than_its_as_of(
    first_day: Lambda, dynamodb: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the backfill, then stream changes the Lambda writes (a new item, a change)
    assert cli(capsys, "backfill", "--table", TABLE, "--bucket", bucket)[0] == 0
    dynamodb.put_item(TableName=TABLE, Item=to_client_item(item("order-new", total=99)))
    dynamodb.put_item(TableName=TABLE, Item=to_client_item(item("order-00", total=100)))
    assert first_day.deliver() == 2
    # WHEN compact runs with the default as-of (the backfill's time, before those changes)
    code, out, err = cli(capsys, "compact", "--bucket", bucket, "--table", TABLE, "--json")
    # THEN it says so: how many, and what to do
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["items"] == ITEMS
    assert summary["newer_changes"] == 2
    assert "2 changes are newer than the as-of" in err
    assert "pass a later --as-of, or wait" in err
    # and a later as-of takes them in
    code, out, err = cli(
        capsys,
        "compact",
        "--bucket",
        bucket,
        "--table",
        TABLE,
        "--as-of",
        str(int(time.time())),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["items"] == ITEMS + 1
    assert "newer_changes" not in summary
    assert query_items(capsys, bucket) == table_items(dynamodb, TABLE)


def test_the_first_scheduled_compaction_after_a_backfill_holds_it(
    first_day: Lambda, dynamodb: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the backfill WHEN the scheduled compaction runs at once (DEPLOY.md step 5's
    # other way: invoke the scheduled function)
    assert cli(capsys, "backfill", "--table", TABLE, "--bucket", bucket)[0] == 0
    code, out, err = cli(capsys, "scheduled", "--bucket", bucket, "--tables", TABLE, "--json")
    # THEN its snapshot holds the backfilled items
    assert code == 0, err
    (result,) = json.loads(out.strip().splitlines()[-1])["results"]
    assert (result["status"], result["items"]) == ("compacted", ITEMS)
    assert query_items(capsys, bucket) == table_items(dynamodb, TABLE)
