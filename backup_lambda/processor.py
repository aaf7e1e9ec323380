"""One invocation's work: parse the batch, write what is valid, report what failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from backup_lambda.errors import MalformedRecordError
from backup_lambda.layout import Change
from backup_lambda.records import MissingSequenceNumberError, parse_record, table_from_arn
from backup_lambda.writer import ChangeWriter


@dataclass(frozen=True)
class BatchOutcome:
    written: int
    failures: list[str]

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}


def process_event(
    event: Mapping[str, Any],
    writer: ChangeWriter,
    logger: Logger,
    metrics: Metrics,
    clock: Callable[[], float] = time.time,
) -> BatchOutcome:
    """Write every valid record; malformed ones and failed writes become batch failures.

    A record without a sequence number cannot be reported, so after writing the valid
    records before it the whole invocation fails and Lambda retries the batch.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        raise MissingSequenceNumberError("event has no Records list: not a DynamoDB Streams event")
    changes: list[Change] = []
    failures: list[str] = []
    missing: MissingSequenceNumberError | None = None
    for position, record in enumerate(records):
        try:
            parsed = parse_record(record)
        except MissingSequenceNumberError as e:
            missing = MissingSequenceNumberError(f"record #{position}: {e}")
            break
        if parsed.change is None:
            logger.error(
                "malformed stream record",
                sequence_number=parsed.sequence_number,
                event_id=record.get("eventID"),
                reason=parsed.error,
            )
            failures.append(parsed.sequence_number)
        else:
            changes.append(parsed.change)

    result = writer.write(changes)
    for failure in result.failed:
        logger.error(
            "change not written", sequence_number=failure.sequence_number, reason=failure.reason
        )
        failures.append(failure.sequence_number)

    table = _table_of(records)
    if table is not None:
        # One stack per table: each stack's alarms watch their own table's figures.
        metrics.add_dimension(name="table", value=table)
    metrics.add_metric(name="RecordsWritten", unit=MetricUnit.Count, value=len(result.written))
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failures))
    metrics.add_metric(
        name="JournalObjectsWritten", unit=MetricUnit.Count, value=result.journal_objects
    )
    if result.written:
        newest_us = max(c.event_time_us for c in result.written)
        lag = max(0.0, clock() - newest_us / 1_000_000)
        metrics.add_metric(name="BackupLagSeconds", unit=MetricUnit.Seconds, value=round(lag, 3))
    logger.info(
        "batch processed",
        records=len(records),
        written=len(result.written),
        failed=len(failures),
    )
    if missing is not None:
        logger.error("record without sequence number; failing the invocation", reason=str(missing))
        raise missing
    ordered = sorted(set(failures), key=int)
    return BatchOutcome(written=len(result.written), failures=ordered)


def _table_of(records: list[Any]) -> str | None:
    """The table the batch comes from (one event source per invocation)."""
    for record in records:
        try:
            return table_from_arn(
                record.get("eventSourceARN") if isinstance(record, dict) else None
            )
        except MalformedRecordError:
            continue
    return None
