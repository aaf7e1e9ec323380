"""`ddb-backup redrive`: write the stream records of batches the backup Lambda gave up on.

The event source mapping sends one on-failure record per batch it gave up on (retries
exhausted, or records older than MaximumRecordAgeInSeconds) to the failure queue. It
holds positions, no item data:

    {"requestContext": {"condition": "RetryAttemptsExhausted", ...},
     "DDBStreamBatchInfo": {"shardId": ..., "startSequenceNumber": ...,
                            "endSequenceNumber": ..., "batchSize": 3, "streamArn": ...}}

For each message, the records from the start to the end sequence number are read from the
stream again (GetShardIterator AT_SEQUENCE_NUMBER, GetRecords), parsed as the Lambda
parses them and written with the Lambda's writer (the journal first, then the item
objects). The message is deleted only once every record of its batch is written. Replays
are harmless (docs/FORMAT.md), so a batch written in part before, re-driven twice, or
re-driven long after newer changes of its items, changes no result.

The stream keeps records 24 hours. Records it no longer holds (TrimmedDataAccessException,
or the shard is gone) cannot be read again, and the message does not say which items they
changed: `backfill` then re-captures every item that exists; a removal in the lost window
cannot be recovered (the item stays live in the backup until it is written or removed
again). Such messages stay in the queue (so the alarm stays on) unless --drop-lost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import BackupError, MalformedRecordError, StorageError
from backup_lambda.layout import Change, normalize_prefix
from backup_lambda.records import MissingSequenceNumberError, parse_record, table_from_arn
from backup_lambda.versioning import require_versioning
from backup_lambda.writer import ChangeWriter
from jobs.cli.args import positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json, note
from jobs.demo.streams import to_lambda_record

RECEIVE_WAIT_SECONDS = 2  # long polling: an empty answer means the queue has no visible message
_GONE = {"TrimmedDataAccessException", "ResourceNotFoundException"}
_PAGE = 1000
_SHOW_KEYS = 10

REDRIVEN = "redriven"
WOULD_REDRIVE = "would-redrive"
FAILED = "failed"
LOST = "lost"
UNREADABLE = "unreadable"
SKIPPED = "skipped"


class RedriveError(BackupError):
    """Some batches could not be re-driven; their messages stay in the queue."""


class UnreadableMessageError(BackupError):
    """A queue message is not a DynamoDB stream on-failure record."""


@dataclass(frozen=True)
class FailedBatch:
    """The positions an on-failure record points at."""

    shard_id: str
    start: str
    end: str
    stream_arn: str
    batch_size: int | None = None
    condition: str | None = None

    @classmethod
    def from_body(cls, body: str) -> FailedBatch:
        """Raises UnreadableMessageError saying why the body is not a DynamoDB stream
        on-failure record."""
        try:
            document = json.loads(body)
        except ValueError as e:
            raise UnreadableMessageError(f"not JSON ({e})") from None
        info = document.get("DDBStreamBatchInfo") if isinstance(document, dict) else None
        if not isinstance(info, dict):
            raise UnreadableMessageError(
                "no DDBStreamBatchInfo: not a DynamoDB stream on-failure record"
            )
        fields = ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn")
        missing = [f for f in fields if not isinstance(info.get(f), str) or not info[f]]
        if missing:
            raise UnreadableMessageError(f"DDBStreamBatchInfo lacks {', '.join(missing)}")
        start, end = info["startSequenceNumber"], info["endSequenceNumber"]
        if not (start.isdigit() and end.isdigit()) or int(start) > int(end):
            raise UnreadableMessageError(f"bad sequence number range {start!r}..{end!r}")
        size = info.get("batchSize")
        context = document.get("requestContext")
        return cls(
            shard_id=info["shardId"],
            start=start,
            end=end,
            stream_arn=info["streamArn"],
            batch_size=size if isinstance(size, int) else None,
            condition=context.get("condition") if isinstance(context, dict) else None,
        )

    @property
    def table(self) -> str:
        return table_from_arn(self.stream_arn)


@dataclass
class StreamSlice:
    """What the stream still holds of a batch, in the Lambda's record shape."""

    records: list[dict[str, Any]] = field(default_factory=list)
    gone: str | None = None  # why (some of) the batch's records cannot be read any more
    complete: bool = False  # the end sequence number was reached


def read_slice(streams: Any, batch: FailedBatch, max_empty_pages: int = 20) -> StreamSlice:
    """The records from the batch's start to its end sequence number. When the start is
    trimmed, what remains from the shard's trim horizon on (the rest is gone)."""
    found = StreamSlice()
    request = {"StreamArn": batch.stream_arn, "ShardId": batch.shard_id}
    try:
        iterator = streams.get_shard_iterator(
            **request, ShardIteratorType="AT_SEQUENCE_NUMBER", SequenceNumber=batch.start
        )["ShardIterator"]
    except ClientError as e:
        if _code(e) not in _GONE:
            raise _storage(e, batch) from e
        found.gone = f"{_code(e)}: the stream no longer holds sequence number {batch.start}"
        try:
            iterator = streams.get_shard_iterator(**request, ShardIteratorType="TRIM_HORIZON")[
                "ShardIterator"
            ]
        except ClientError as again:
            if _code(again) not in _GONE:
                raise _storage(again, batch) from again
            found.gone = f"{_code(again)}: the stream no longer holds shard {batch.shard_id}"
            return found
    except BotoCoreError as e:
        raise _storage(e, batch) from e
    start, end, empty = int(batch.start), int(batch.end), 0
    while iterator and empty < max_empty_pages:
        try:
            page = streams.get_records(ShardIterator=iterator, Limit=_PAGE)
        except ClientError as e:
            if _code(e) not in _GONE:
                raise _storage(e, batch) from e
            found.gone = found.gone or f"{_code(e)} while reading the batch"
            return found
        except BotoCoreError as e:
            raise _storage(e, batch) from e
        records = page.get("Records", [])
        empty = 0 if records else empty + 1
        for record in records:
            sequence = int(record["dynamodb"]["SequenceNumber"])
            if sequence > end:
                found.complete = True
                return found
            if sequence >= start:
                found.records.append(to_lambda_record(record, batch.stream_arn))
            if sequence == end:
                found.complete = True
                return found
        iterator = page.get("NextShardIterator")
    return found


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _storage(error: Exception, batch: FailedBatch) -> StorageError:
    return StorageError(f"reading shard {batch.shard_id} of {batch.stream_arn}: {error}")


@dataclass
class BatchReport:
    message_id: str
    status: str
    kept: bool  # the message stays in the queue
    table: str | None = None
    shard_id: str | None = None
    start: str | None = None
    end: str | None = None
    batch_size: int | None = None
    records: int = 0  # read from the stream
    written: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # sequence, reason, keys
    note: str = ""

    def line(self) -> str:
        where = f"{self.table} {self.shard_id} {self.start}..{self.end}" if self.shard_id else ""
        fate = "message kept" if self.kept else "message deleted"
        if self.status in {UNREADABLE, SKIPPED}:
            fate = "message left in the queue"
        return f"{self.status:<13} {where}: {self.note} ({fate})"


class Redriver:
    """Reads the failure queue and writes the records each message points at."""

    def __init__(
        self,
        sqs: Any,
        streams: Any,
        writer: ChangeWriter,
        queue_url: str,
        *,
        table: str | None = None,
        dry_run: bool = False,
        drop_lost: bool = False,
        visibility_timeout: int = 300,
        max_messages: int | None = None,
    ) -> None:
        self._sqs = sqs
        self._streams = streams
        self._writer = writer
        self._queue_url = queue_url
        self._table = table
        self._dry_run = dry_run
        self._drop_lost = drop_lost
        self._visibility = visibility_timeout
        self._max_messages = max_messages

    def run(self) -> list[BatchReport]:
        reports: list[BatchReport] = []
        held: list[str] = []  # receipt handles of messages to make visible again
        try:
            for message in self._messages():
                report = self._one(message)
                reports.append(report)
                if report.kept:
                    held.append(message["ReceiptHandle"])
                else:
                    self._sqs_call(
                        "delete_message",
                        QueueUrl=self._queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                    )
        finally:
            # Kept messages go back to the queue now, not after the visibility timeout: the
            # queue's alarm keeps seeing them.
            for handle in held:
                self._release(handle)
        return reports

    def _messages(self) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while self._max_messages is None or len(seen) < self._max_messages:
            wanted = 10 if self._max_messages is None else min(10, self._max_messages - len(seen))
            answer = self._sqs_call(
                "receive_message",
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=wanted,
                WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
                VisibilityTimeout=self._visibility,
            )
            messages = answer.get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            for repeated in (m for m in messages if m["MessageId"] in seen):
                self._release(repeated["ReceiptHandle"])  # came back during this run
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield message

    def _one(self, message: dict[str, Any]) -> BatchReport:
        message_id = message["MessageId"]
        try:
            batch = FailedBatch.from_body(message.get("Body", ""))
            table = batch.table
        except (UnreadableMessageError, MalformedRecordError) as e:
            return BatchReport(message_id, UNREADABLE, kept=True, note=str(e))
        report = BatchReport(
            message_id,
            REDRIVEN,
            kept=False,
            table=table,
            shard_id=batch.shard_id,
            start=batch.start,
            end=batch.end,
            batch_size=batch.batch_size,
        )
        if self._table is not None and table != self._table:
            report.status, report.kept = SKIPPED, True
            report.note = f"a batch of table {table!r}, not {self._table!r}"
            return report
        found = read_slice(self._streams, batch)
        report.records = len(found.records)
        changes = self._parse(found.records, report)
        if not self._dry_run and changes:
            result = self._writer.write(changes)
            report.written = len(result.written)
            keys = {c.sequence_number: c.keys for c in changes}
            report.failed += [
                {
                    "sequence_number": f.sequence_number,
                    "reason": f.reason,
                    "keys": keys.get(f.sequence_number),
                }
                for f in result.failed
            ]
        return self._judge(report, found)

    def _parse(self, records: list[dict[str, Any]], report: BatchReport) -> list[Change]:
        changes = []
        for record in records:
            try:
                parsed = parse_record(record)
            except MissingSequenceNumberError as e:
                report.failed.append({"sequence_number": None, "reason": str(e), "keys": None})
                continue
            if parsed.change is None:
                keys = record.get("dynamodb", {}).get("Keys")
                report.failed.append(
                    {
                        "sequence_number": parsed.sequence_number,
                        "reason": parsed.error,
                        "keys": keys,
                    }
                )
            else:
                changes.append(parsed.change)
        return changes

    def _judge(self, report: BatchReport, found: StreamSlice) -> BatchReport:
        would = "would write" if self._dry_run else "wrote"
        count = len(found.records) - len(report.failed)
        if found.gone is not None:
            report.status = LOST
            report.kept = not self._drop_lost or bool(report.failed) or self._dry_run
            report.note = (
                f"{found.gone}; {would} the {count} records still held. The message holds "
                "positions only, so the lost records' keys are unknown: run `ddb-backup "
                f"backfill --table {report.table}` to capture every item as it is now. A "
                "removal among the lost records cannot be recovered (the item stays in the "
                "backup until it is written or removed again)"
            )
        elif report.failed:
            report.status, report.kept = FAILED, True
            report.note = (
                f"{len(report.failed)} of {len(found.records)} records not written: "
                f"{report.failed[0]['reason']}"
            )
        elif not found.complete:
            report.status, report.kept = FAILED, True
            report.note = (
                f"read {len(found.records)} records without reaching sequence number "
                f"{report.end}; run again"
            )
        else:
            report.status = WOULD_REDRIVE if self._dry_run else REDRIVEN
            report.kept = self._dry_run
            report.note = f"{would} {count} records"
        return report

    def _release(self, handle: str) -> None:
        # On failure it becomes visible after the visibility timeout anyway.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=handle, VisibilityTimeout=0
            )

    def _sqs_call(self, operation: str, **request: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(self._sqs, operation)(**request)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"failure queue {self._queue_url}: {e}") from e
        return answer


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "redrive",
        parents=[common],
        help="write the stream records of batches in the backup Lambda's failure queue",
        description="Reads the on-failure destination (SQS) of the backup Lambda's event "
        "source mapping; for each message, reads the batch's records from the stream again "
        "(while it still holds them: 24 hours) and writes them like the Lambda (journal and "
        "item objects; replays are harmless), then deletes the message. Messages whose "
        "records cannot all be written stay in the queue; for records the stream no longer "
        "holds it says to run `backfill` (removals among them cannot be recovered).",
    )
    parser.add_argument(
        "--queue-url",
        required=True,
        metavar="URL",
        help="the failure queue (the stack's BackupFailureQueueUrl output)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read the messages and the stream, say what would be written; write and delete "
        "nothing",
    )
    parser.add_argument(
        "--drop-lost",
        action="store_true",
        help="delete messages whose records the stream no longer holds, once the rest is "
        "written (after you ran backfill)",
    )
    parser.add_argument(
        "--max-messages", type=positive_int, help="stop after this many (default: all)"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=positive_int,
        default=300,
        metavar="SECONDS",
        help="how long a message being re-driven stays hidden from other readers",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    s3 = make_client("s3", settings)
    if not args.dry_run:  # a writer: refuses a bucket without versioning
        warning = require_versioning(s3, args.bucket).warning()
        if warning is not None:
            note(args, warning)
    redriver = Redriver(
        make_client("sqs", settings),
        make_client("dynamodbstreams", settings),
        ChangeWriter(s3, args.bucket, normalize_prefix(args.prefix), writer="redrive"),
        args.queue_url,
        table=args.table,
        dry_run=args.dry_run,
        drop_lost=args.drop_lost,
        visibility_timeout=args.visibility_timeout,
        max_messages=args.max_messages,
    )
    reports = redriver.run()
    counts = {
        status: sum(r.status == status for r in reports)
        for status in (REDRIVEN, WOULD_REDRIVE, FAILED, LOST, UNREADABLE, SKIPPED)
    }
    if args.json:
        emit_json(
            {
                "dry_run": args.dry_run,
                "messages": len(reports),
                **{status.replace("-", "_"): n for status, n in counts.items()},
                "records_written": sum(r.written for r in reports),
                "kept": sum(r.kept for r in reports),
                "batches": [asdict(r) for r in reports],
            }
        )
    else:
        for report in reports:
            print(report.line())
            _print_failed(report)
        if not reports:
            print("the failure queue is empty")
    trouble = (FAILED, LOST, UNREADABLE)
    troubled = [r for r in reports if r.status in trouble]
    if troubled:
        kinds = ", ".join(f"{counts[s]} {s}" for s in trouble if counts[s])
        kept = "; their messages stay in the queue" if any(r.kept for r in troubled) else ""
        raise RedriveError(
            f"{len(troubled)} of {len(reports)} messages not re-driven in full ({kinds}){kept}"
        )
    return 0


def _print_failed(report: BatchReport) -> None:
    for entry in report.failed[:_SHOW_KEYS]:
        keys = json.dumps(entry["keys"], sort_keys=True) if entry["keys"] else "?"
        print(f"  not written: sequence {entry['sequence_number']} keys {keys}: {entry['reason']}")
    if len(report.failed) > _SHOW_KEYS:
        print(f"  ... and {len(report.failed) - _SHOW_KEYS} more (all in --json)", file=sys.stderr)
