"""`ddb-backup redrive` on moto (issue 13, finding 5): a batch in the failure queue is read
from the stream again and written exactly as the Lambda writes it, its message deleted; a
batch that cannot be written keeps its message; records the stream no longer holds are
reported with what to do."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from backup_lambda import handler as backup_handler
from backup_lambda.journal import JOURNAL_SUFFIX, decode_journal
from backup_lambda.versioning import Versioning
from backup_lambda.writer import ChangeWriter
from jobs.demo.standin import FakeLambdaContext
from jobs.demo.streams import lambda_event
from jobs.main import main
from jobs.ops import redrive
from jobs.ops.redrive import LOST, FailedBatch, Redriver
from tests.ops.helpers import BUCKET, TABLE
from tests.support import StreamTable, create_stream_table, sequence, stored_bodies


@pytest.fixture(autouse=True)
def no_long_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redrive, "RECEIVE_WAIT_SECONDS", 0)


@pytest.fixture
def sqs(aws: None, ops_session: boto3.session.Session) -> Any:
    return ops_session.client("sqs")


@pytest.fixture
def queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="backup-failures")["QueueUrl"]
    return url


class Stream:
    """Four changes of `orders` (a put, a modify, another item, a removal), then one more."""

    def __init__(self, dynamodb: Any, streams: Any) -> None:
        self.table: StreamTable = create_stream_table(
            dynamodb, streams, TABLE, {"pk": "S", "sk": "N"}
        )
        a = {"pk": {"S": "a"}, "sk": {"N": "1"}}
        self.table.put({**a, "status": {"S": "placed"}})
        self.table.put({**a, "status": {"S": "paid"}})
        self.table.put({"pk": {"S": "b"}, "sk": {"N": "2"}, "status": {"S": "placed"}})
        self.table.delete(a)
        self.table.put({"pk": {"S": "c"}, "sk": {"N": "3"}})
        self.records = self.table.new_records()
        assert len(self.records) == 5
        description = streams.describe_stream(StreamArn=self.table.stream_arn)
        self.shard_id = description["StreamDescription"]["Shards"][0]["ShardId"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The batch the mapping gave up on: records 1 to 3 (the Lambda stored record 0)."""
        return self.records[1:4]

    def failure_message(self) -> str:
        return json.dumps(
            {
                "requestContext": {"condition": "RetryAttemptsExhausted"},
                "version": "1.0",
                "DDBStreamBatchInfo": {
                    "shardId": self.shard_id,
                    "startSequenceNumber": sequence(self.failed[0]),
                    "endSequenceNumber": sequence(self.failed[-1]),
                    "batchSize": len(self.failed),
                    "streamArn": self.table.stream_arn,
                },
            }
        )


@pytest.fixture
def stream(dynamodb: Any, streams: Any, sqs: Any, queue: str) -> Stream:
    made = Stream(dynamodb, streams)
    sqs.send_message(QueueUrl=queue, MessageBody=made.failure_message())
    return made


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["redrive", *args])
    out, err = capsys.readouterr()
    return code, out, err


def queued(sqs: Any, queue: str) -> list[str]:
    """Bodies of the visible messages (made visible again at once)."""
    answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [m["Body"] for m in answer.get("Messages", [])]


def journaled(s3: Any, prefix: str) -> list[str]:
    sequences = []
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    for entry in listing.get("Contents", []):
        if "/v1/journal/" in entry["Key"] and entry["Key"].endswith(JOURNAL_SUFFIX):
            body = s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
            sequences += [c.sequence_number for c in decode_journal(body, entry["Key"])]
    return sorted(sequences)


def by_sequence(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(bodies, key=lambda b: int(b["sequenceNumber"]))


def test_a_failed_batch_is_written_exactly_as_the_lambda_writes_it(
    s3: Any,
    bucket: str,
    sqs: Any,
    queue: str,
    stream: Stream,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # WHEN the batch is re-driven
    code, out, err = cli(capsys, "--bucket", BUCKET, "--queue-url", queue, "--json")

    # THEN exactly its three records are stored, each once, journal and item objects
    assert (code, err) == (0, "")
    summary = json.loads(out.splitlines()[-1])
    assert (summary["messages"], summary["redriven"], summary["records_written"]) == (1, 1, 3)
    assert summary["kept"] == 0
    expected = [sequence(r) for r in stream.failed]
    redriven = by_sequence(stored_bodies(s3, BUCKET, f"{TABLE}/"))
    assert [b["sequenceNumber"] for b in redriven] == expected
    assert journaled(s3, f"{TABLE}/") == expected
    # ... the same documents the Lambda writes for those records
    monkeypatch.setenv("BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKUP_PREFIX", "by-lambda")
    assert backup_handler.handler(lambda_event(stream.failed), FakeLambdaContext()) == {
        "batchItemFailures": []
    }
    assert by_sequence(stored_bodies(s3, BUCKET, f"by-lambda/{TABLE}/")) == redriven
    # ... and the message is gone
    assert queued(sqs, queue) == []

    # A second re-drive of the same batch (a replay) finds nothing to do.
    code, out, _ = cli(capsys, "--bucket", BUCKET, "--queue-url", queue)
    assert (code, out) == (0, "the failure queue is empty\n")


def test_dry_run_writes_and_deletes_nothing(
    s3: Any, bucket: str, sqs: Any, queue: str, stream: Stream, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "--bucket", BUCKET, "--queue-url", queue, "--dry-run")
    assert code == 0
    assert out.startswith("would-redrive")
    assert "would write 3 records (message kept)" in out
    assert stored_bodies(s3, BUCKET) == []
    assert queued(sqs, queue) == [stream.failure_message()]


def test_a_batch_that_cannot_be_written_keeps_its_message(
    s3: Any,
    sqs: Any,
    queue: str,
    stream: Stream,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a bucket that does not exist (S3 refuses every write; the versioning check,
    # which would refuse it first, passes here)
    monkeypatch.setattr(
        "jobs.ops.redrive.require_versioning", lambda s3, bucket: Versioning(bucket, "Enabled", {})
    )
    code, out, err = cli(capsys, "--bucket", "no-such-bucket", "--queue-url", queue)

    # THEN the batch is reported with the keys it could not write, and stays in the queue
    assert code == 1
    assert out.startswith(f"failed        {TABLE} {stream.shard_id}")
    assert "3 of 3 records not written: journal not written" in out
    assert '"pk": {"S": "a"}' in out  # the keys, for backfill if it comes to that
    assert err == (
        "ddb-backup: error: 1 of 1 messages not re-driven in full (1 failed); their "
        "messages stay in the queue\n"
    )
    # ... visible again at once (the queue's alarm keeps seeing it)
    assert queued(sqs, queue) == [stream.failure_message()]


class TrimmedStream:
    """The stream after its 24 hours passed over the batch's first two records: reading at
    the batch's start is refused, and the trim horizon is the batch's last record."""

    def __init__(self, streams: Any, horizon: str) -> None:
        self._streams = streams
        self._horizon = horizon

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        if request["ShardIteratorType"] == "AT_SEQUENCE_NUMBER":
            error = {"Code": "TrimmedDataAccessException", "Message": "trimmed"}
            raise ClientError({"Error": error}, "GetShardIterator")
        return self._streams.get_shard_iterator(  # type: ignore[no-any-return]
            **{**request, "ShardIteratorType": "AT_SEQUENCE_NUMBER"},
            SequenceNumber=self._horizon,
        )

    def get_records(self, **request: Any) -> dict[str, Any]:
        return self._streams.get_records(**request)  # type: ignore[no-any-return]


def redriver(s3: Any, sqs: Any, streams: Any, queue: str, **options: Any) -> Redriver:
    return Redriver(sqs, streams, ChangeWriter(s3, BUCKET, writer="redrive"), queue, **options)


def test_records_the_stream_no_longer_holds_are_reported_with_what_to_do(
    s3: Any, bucket: str, sqs: Any, streams: Any, queue: str, stream: Stream
) -> None:
    trimmed = TrimmedStream(streams, horizon=sequence(stream.failed[-1]))

    (report,) = redriver(s3, sqs, trimmed, queue).run()

    # The record still held (the removal of `a`) is written; the rest is named as lost.
    assert (report.status, report.records, report.written, report.kept) == (LOST, 1, 1, True)
    assert [b["sequenceNumber"] for b in stored_bodies(s3, BUCKET)] == [sequence(stream.failed[-1])]
    assert "TrimmedDataAccessException" in report.note
    assert f"ddb-backup backfill --table {TABLE}" in report.note
    assert "removal among the lost records cannot be recovered" in report.note
    assert queued(sqs, queue) == [stream.failure_message()]

    # After the backfill, --drop-lost lets the message go.
    (report,) = redriver(s3, sqs, trimmed, queue, drop_lost=True).run()
    assert (report.status, report.kept) == (LOST, False)
    assert queued(sqs, queue) == []


def test_lost_batches_fail_the_command_and_unreadable_messages_stay(
    s3: Any,
    bucket: str,
    sqs: Any,
    queue: str,
    stream: Stream,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody='{"hello": "world"}')
    code, out, err = cli(capsys, "--bucket", BUCKET, "--queue-url", queue, "--json")
    assert code == 1
    summary = json.loads(out.splitlines()[-1])
    assert (summary["redriven"], summary["unreadable"], summary["kept"]) == (1, 1, 1)
    (unreadable,) = [b for b in summary["batches"] if b["status"] == "unreadable"]
    assert "no DDBStreamBatchInfo" in unreadable["note"]
    assert "1 of 2 messages not re-driven in full (1 unreadable)" in err
    assert queued(sqs, queue) == ['{"hello": "world"}']


def test_messages_of_another_table_are_left_alone(
    s3: Any, bucket: str, sqs: Any, queue: str, stream: Stream, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "--bucket", BUCKET, "--table", "users", "--queue-url", queue)
    assert code == 0
    assert out.startswith("skipped")
    assert "a batch of table 'orders', not 'users'" in out
    assert stored_bodies(s3, BUCKET) == []
    assert queued(sqs, queue) == [stream.failure_message()]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ('{"DDBStreamBatchInfo": {"shardId": "s"}}', "lacks startSequenceNumber"),
        (
            json.dumps(
                {
                    "DDBStreamBatchInfo": {
                        "shardId": "s",
                        "startSequenceNumber": "9",
                        "endSequenceNumber": "3",
                        "streamArn": "arn",
                    }
                }
            ),
            "bad sequence number range",
        ),
    ],
)
def test_failure_records_are_checked(body: str, message: str) -> None:
    with pytest.raises(redrive.UnreadableMessageError, match=message):
        FailedBatch.from_body(body)
