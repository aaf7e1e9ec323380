"""process_event: what is written, what is reported, what is logged and measured."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from backup_lambda.processor import process_event
from backup_lambda.records import MissingSequenceNumberError
from backup_lambda.writer import ChangeWriter
from tests.backup_lambda.fakes import FakeS3, RecordingLogger, RecordingMetrics
from tests.support import records_of, sequence

NOW = 1_795_824_300.0  # five minutes after the fixture's first event


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def logger() -> RecordingLogger:
    return RecordingLogger()


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


def run(
    records: list[dict[str, Any]], s3: FakeS3, logger: RecordingLogger, metrics: RecordingMetrics
) -> list[str]:
    writer = ChangeWriter(s3, "bucket", max_workers=4)
    outcome = process_event(
        {"Records": records},
        writer,
        logger,  # type: ignore[arg-type]
        metrics,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )
    assert outcome.response() == {
        "batchItemFailures": [{"itemIdentifier": s} for s in outcome.failures]
    }
    return outcome.failures


def test_all_valid_records_are_written_and_nothing_is_reported(
    s3: FakeS3, logger: RecordingLogger, metrics: RecordingMetrics
) -> None:
    records = records_of("stream_event_orders")
    assert run(records, s3, logger, metrics) == []
    assert s3.sequences() == {sequence(r) for r in records}
    assert metrics.values["RecordsWritten"] == [4]
    assert metrics.values["RecordsFailed"] == [0]
    # Lag is now minus the newest written event time: the recovery point.
    assert metrics.values["BackupLagSeconds"] == [NOW - 1795824180]
    # Per table (one stack per table: each stack's alarms watch their own table).
    assert metrics.dimensions == {"table": "orders"}


def test_malformed_record_is_reported_and_logged_with_its_reason(
    s3: FakeS3, logger: RecordingLogger, metrics: RecordingMetrics
) -> None:
    # GIVEN a batch whose middle record is a MODIFY without NewImage
    records = records_of("stream_event_malformed_batch")
    # WHEN processed
    failures = run(records, s3, logger, metrics)
    # THEN exactly that record is reported, the others are written, and a log line says why
    assert failures == ["222200000000000000000002"]
    assert s3.sequences() == {"222200000000000000000001", "222200000000000000000003"}
    (message, fields), *_ = logger.errors()
    assert message == "malformed stream record"
    assert fields["sequence_number"] == "222200000000000000000002"
    assert fields["event_id"] == "8f14e45fceea167a5a36dedd4bea2543"
    assert "NewImage" in fields["reason"]
    assert metrics.values["RecordsFailed"] == [1]


def test_failures_are_ordered_by_sequence_number_as_integers(
    s3: FakeS3, logger: RecordingLogger, metrics: RecordingMetrics
) -> None:
    records = records_of("stream_event_orders")[:2]
    records[0]["dynamodb"]["SequenceNumber"] = "10"
    records[1]["dynamodb"]["SequenceNumber"] = "9"
    for record in records:
        record["eventName"] = "UPSERT"
    assert run(records, s3, logger, metrics) == ["9", "10"]


def test_write_failures_are_logged_and_reported(
    logger: RecordingLogger, metrics: RecordingMetrics
) -> None:
    def refuse(put: dict[str, Any]) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    failures = run(records_of("stream_event_orders"), FakeS3(fail=refuse), logger, metrics)
    assert len(failures) == 4
    assert {m for m, _ in logger.errors()} == {"change not written"}
    assert "BackupLagSeconds" not in metrics.values


def test_missing_sequence_number_fails_the_invocation_after_writing_what_came_before(
    s3: FakeS3, logger: RecordingLogger, metrics: RecordingMetrics
) -> None:
    records = records_of("stream_event_orders")
    broken = copy.deepcopy(records[2])
    del broken["dynamodb"]["SequenceNumber"]
    batch = [records[0], records[1], broken, records[3]]
    with pytest.raises(MissingSequenceNumberError, match="record #2"):
        run(batch, s3, logger, metrics)
    assert {sequence(records[0]), sequence(records[1])} <= s3.sequences()
    assert metrics.values["RecordsWritten"] == [2]


@pytest.mark.parametrize("event", [{}, {"Records": None}, {"Records": {"0": {}}}])
def test_an_event_without_a_records_list_fails(
    event: dict[str, Any], s3: FakeS3, logger: RecordingLogger, metrics: RecordingMetrics
) -> None:
    with pytest.raises(MissingSequenceNumberError):
        process_event(event, ChangeWriter(s3, "bucket"), logger, metrics)  # type: ignore[arg-type]
    assert s3.puts == []
