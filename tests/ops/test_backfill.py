"""Backfill: the event time it stamps, its refusals, and racing stream changes (moto)."""

from __future__ import annotations

import json
from typing import Any

import moto.core.responses
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_lambda import handler as backup_handler
from backup_lambda.errors import NotFoundError
from backup_lambda.layout import key_hash
from compaction.compactor import CompactionConfig, Compactor
from compaction.history import item_history
from compaction.state import DEFAULT_CLOCK_SKEW_US
from jobs.demo.standin import FakeLambdaContext
from jobs.demo.streams import StreamReader, lambda_event
from jobs.main import main
from jobs.ops.backfill import Backfiller, BackfillError, backfill_event_time_us
from jobs.restore.ddbitems import to_client_item
from jobs.restore.restorer import RestoreOptions, Restorer
from tests.ops.conftest import SetClock
from tests.ops.helpers import (
    SEC,
    TABLE,
    create_table,
    item,
    key,
    naive_utc,
    now_us,
    snapshot_rows,
    table_items,
    versions_under,
    whole_second_ago,
)
from tests.ops.helpers import compact as compact_at

# --- the event time of backfilled changes (pure) ---------------------------------------

starts = st.integers(min_value=10 * SEC, max_value=4_000_000_000 * SEC)
skews = st.integers(min_value=0, max_value=5 * SEC)


@given(start=starts, skew=skews)
def test_backfill_time_is_a_whole_second_below_floor_of_start_minus_skew(
    start: int, skew: int
) -> None:
    stamped = backfill_event_time_us(start, skew)
    assert stamped % SEC == 0
    floor = (start - skew) // SEC * SEC
    assert stamped < floor


@given(start=starts, skew=skews, after=st.integers(min_value=0, max_value=10 * SEC))
def test_a_stream_change_at_or_after_start_minus_skew_orders_after_the_backfill(
    start: int, skew: int, after: int
) -> None:
    # A change that happened at or after start - skew (DynamoDB's clock may lag ours by
    # up to skew), stamped as DynamoDB does: truncated to the second.
    happened = start - skew + after
    stream_time = happened // SEC * SEC
    assert stream_time > backfill_event_time_us(start, skew)


@given(start=starts, skew=skews, seconds_before=st.integers(min_value=1, max_value=100))
def test_a_stream_change_ordered_before_the_backfill_happened_before_the_scan(
    start: int, skew: int, seconds_before: int
) -> None:
    # Stream time e < E (on e == E the stream change wins: sequence 0 is the lowest), so
    # the change happened before e + 1 s, which must be before start - skew.
    stream_time = backfill_event_time_us(start, skew) - seconds_before * SEC
    assert stream_time + SEC <= start - skew


def test_backfill_time_example_with_the_default_skew() -> None:
    assert DEFAULT_CLOCK_SKEW_US == SEC
    assert backfill_event_time_us(1_000 * SEC + SEC // 2) == 998 * SEC
    assert backfill_event_time_us(1_000 * SEC) == 998 * SEC


# --- refusals ----------------------------------------------------------------------------


def test_refuses_a_table_without_a_stream(s3: Any, dynamodb: Any, bucket: str) -> None:
    create_table(dynamodb, TABLE)
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}})
    with pytest.raises(BackfillError, match="no stream"):
        Backfiller(s3, dynamodb, bucket, TABLE).run()
    assert versions_under(s3, "") == ([], []), "nothing was written"


def test_refuses_a_keys_only_stream(s3: Any, dynamodb: Any, bucket: str) -> None:
    create_table(
        dynamodb,
        TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
    )
    with pytest.raises(BackfillError, match="new images"):
        Backfiller(s3, dynamodb, bucket, TABLE).run()


def test_refuses_a_missing_table(s3: Any, dynamodb: Any, bucket: str) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        Backfiller(s3, dynamodb, bucket, "no-such-table").run()


def test_cli_missing_table_is_one_line_exit_3(
    dynamodb: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["backfill", "--bucket", bucket, "--table", "no-such-table"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1
    assert "no-such-table" in err
    assert "Traceback" not in err


# --- racing the stream -------------------------------------------------------------------


class Lambda:
    """Delivers what the table's stream gained to the backup Lambda handler."""

    def __init__(self, streams: Any, stream_arn: str) -> None:
        self._reader = StreamReader(streams, stream_arn)

    def deliver(self) -> int:
        records = self._reader.poll()
        if records:
            response = backup_handler.handler(lambda_event(records), FakeLambdaContext())
            assert response == {"batchItemFailures": []}
        return len(records)


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, bucket: str) -> None:
    monkeypatch.setenv("BACKUP_BUCKET", bucket)


def restore_now(s3: Any, dynamodb: Any, bucket: str, target: str) -> dict[str, Any]:
    Restorer(
        s3,
        dynamodb,
        bucket,
        TABLE,
        target,
        options=RestoreOptions(as_of_us=now_us(), create_table=True, verify=True),
        announce=lambda text: None,
    ).run()
    return table_items(dynamodb, target)


PRE_EXISTING = [
    "untouched-1",
    "untouched-2",
    "early",
    "changed-before-read",
    "deleted-before-read",
    "changed-after-read",
    "deleted-after-read",
    "boundary",
]
LIVE_AT_THE_END = [
    "untouched-1",
    "untouched-2",
    "early",
    "changed-before-read",
    "changed-after-read",
    "boundary",
    "new-early",
    "new-during",
    "new-after",
]


class Table:
    """The source table, its changes made at chosen stream event times."""

    def __init__(self, dynamodb: Any, stream_clock: SetClock, t0: int) -> None:
        self.dynamodb = dynamodb
        self.stream_clock = stream_clock
        self.t0 = t0

    def at(self, seconds: float) -> int:
        return self.t0 + round(seconds * SEC)

    def put(self, pk: str, v: int, when: float | None = None) -> None:
        if when is not None:
            self.stream_clock(self.at(when))
        self.dynamodb.put_item(TableName=TABLE, Item=_client(item(pk, v=v)))

    def delete(self, pk: str, when: float) -> None:
        self.stream_clock(self.at(when))
        self.dynamodb.delete_item(TableName=TABLE, Key=_client(key(pk)))


def test_backfill_racing_stream_changes(
    s3: Any,
    dynamodb: Any,
    streams: Any,
    bucket: str,
    lambda_env: None,
    stream_clock: SetClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = Table(dynamodb, stream_clock, whole_second_ago(3600))
    at = table.at

    # GIVEN a table with items written before its stream was switched on
    create_table(dynamodb, TABLE)
    for pk in PRE_EXISTING:
        table.put(pk, 1)
    arn = dynamodb.update_table(
        TableName=TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    backup = Lambda(streams, arn)
    # ... stream changes well before the backfill, already backed up
    table.put("early", 2, when=10)
    table.put("new-early", 2, when=10)
    assert backup.deliver() == 2
    # The backfill starts at t0 + 100.5 s: its changes carry t0 + 98 s.
    start = at(100.5)
    stamped = backfill_event_time_us(start)
    assert stamped == at(98)
    # ... changes after the start that the scan will see (made before it reads them)
    table.put("changed-before-read", 3, when=101)
    table.delete("deleted-before-read", when=101)
    table.put("new-during", 3, when=101)

    # WHEN the backfill runs (its clock reads `start` before the scan, S3's Date agrees)
    s3_date(monkeypatch, start)
    report = Backfiller(
        s3, dynamodb, bucket, TABLE, segments=2, writers=4, clock=lambda: start / SEC
    ).run()
    assert report.event_time_us == stamped
    assert report.items == len(PRE_EXISTING) - 1 + 2  # one deleted; two inserted
    assert report.failed == 0

    # ... and changes after the start that the scan did not see (it read the old image)
    table.put("changed-after-read", 4, when=102)
    table.delete("deleted-after-read", when=102)
    table.put("new-after", 4, when=102)
    # the earliest event time a change after the start can carry: floor(start - skew)
    table.put("boundary", 4, when=99)
    stream_clock(None)
    assert backup.deliver() == 7

    # THEN the backfill did hold the old images of the items changed after it read them
    def backfilled(pk: str) -> Any:
        versions = item_history(s3, bucket, "", TABLE, key(pk))
        (entry,) = [e for e in versions if e.change.sequence_number == "0"]
        return entry.change.new_image

    assert backfilled("changed-after-read") == item("changed-after-read", v=1)
    assert backfilled("boundary") == item("boundary", v=1)
    assert backfilled("deleted-after-read") == item("deleted-after-read", v=1)
    assert backfilled("changed-before-read") == item("changed-before-read", v=3)

    # ... yet the state now is exactly the table: no backfilled image overrode a newer change
    current = table_items(dynamodb, TABLE)
    assert set(current) == {key_hash(key(pk)) for pk in LIVE_AT_THE_END}
    assert restore_now(s3, dynamodb, bucket, "restored") == current
    rows = snapshot_rows(s3, compact_at(s3, now_us()))
    assert {d: r.change.new_image for d, r in rows.items()} == current
    assert_winners(rows, table, stamped)
    # before the backfill's event time, only what the stream recorded exists
    before = compact_at(s3, stamped - SEC)
    assert {r.change.new_image["pk"]["S"] for r in snapshot_rows(s3, before).values()} == {
        "early",
        "new-early",
    }

    # WHEN the backfill runs again later THEN no state changes
    s3_date(monkeypatch, at(200.25))
    again = Backfiller(
        s3, dynamodb, bucket, TABLE, segments=3, writers=2, clock=lambda: at(200.25) / SEC
    ).run()
    assert again.items == len(current)
    assert again.event_time_us == at(198)
    assert_state_is(s3, dynamodb, bucket, current)


def s3_date(monkeypatch: pytest.MonkeyPatch, micros: int) -> None:
    """The Date of moto's answers (S3's clock, as compaction.clock reads it)."""
    monkeypatch.setattr(moto.core.responses, "utcnow", lambda: naive_utc(micros))


def assert_winners(rows: dict[str, Any], table: Table, stamped: int) -> None:
    def winner(pk: str) -> tuple[str, int]:
        change = rows[key_hash(key(pk))].change
        return change.sequence_number, change.event_time_us

    # pre-existing items no change touched come from the backfill
    assert winner("untouched-1") == ("0", stamped)
    assert winner("untouched-2") == ("0", stamped)
    # changes after the start win over the backfill, whatever the scan read
    for pk in ["changed-after-read", "changed-before-read", "new-during"]:
        assert winner(pk)[0] != "0", pk
    assert winner("boundary")[1] == table.at(99)
    assert winner("new-after")[1] == table.at(102)
    # a change ordered before the backfill (event time < E) was in what the scan read:
    # the backfill wins with the same image
    assert winner("early") == ("0", stamped)
    assert rows[key_hash(key("early"))].change.new_image == item("early", v=2)


def assert_state_is(s3: Any, dynamodb: Any, bucket: str, current: dict[str, Any]) -> None:
    """Restored, incrementally compacted and fully compacted, the state is `current`."""
    assert restore_now(s3, dynamodb, bucket, "restored") == current
    rerun = compact_at(s3, now_us() + SEC)
    assert {d: r.change.new_image for d, r in snapshot_rows(s3, rerun).items()} == current
    full = Compactor(s3, bucket, TABLE, config=CompactionConfig(full=True)).run(now_us() + 2 * SEC)
    assert full.manifest.base is None
    assert {d: r.change.new_image for d, r in snapshot_rows(s3, full.manifest).items()} == current


def _client(stored: dict[str, Any]) -> dict[str, Any]:
    return to_client_item(stored)


def test_cli_backfill_json_and_its_record(
    s3: Any, dynamodb: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(
        dynamodb,
        TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    for i in range(5):
        dynamodb.put_item(TableName=TABLE, Item=_client(item(f"item-{i}", v=i)))
    before = now_us()
    code = main(["backfill", "--bucket", bucket, "--table", TABLE, "--segments", "2", "--json"])
    after = now_us()
    out = capsys.readouterr().out
    assert code == 0
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["items"] == 5
    assert payload["table"] == TABLE
    (record_key,) = [
        o["Key"]
        # the record; the table's settings lie in the run's folder beside it
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{TABLE}/v1/backfills/", Delimiter="/")[
            "Contents"
        ]
    ]
    record = json.loads(s3.get_object(Bucket=bucket, Key=record_key)["Body"].read())
    assert record_key.endswith(f"/{payload['run_id']}.json")
    assert record["items"] == 5
    assert record["failed"] == 0
    # stamped a whole second, before the scan read anything; here only that it lies
    # between shortly before the command and its end, however slow a loaded machine is
    # (the exact bound: test_backfill_time_is_a_whole_second_below_floor_of_start_minus_skew)
    assert record["event_time_us"] % SEC == 0
    assert before - 3 * SEC <= record["event_time_us"] < after
    for i in range(5):
        (entry,) = item_history(s3, bucket, "", TABLE, key(f"item-{i}"))
        assert entry.change.event_name == "INSERT"
        assert entry.change.sequence_number == "0"
        assert entry.change.event_id == f"backfill:{payload['run_id']}"
        assert entry.change.new_image == item(f"item-{i}", v=i)
