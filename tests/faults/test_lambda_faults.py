"""Faults at every S3 call of the backup Lambda (backup_lambda.handler).

Transient (botocore retries it): the batch reports no failure and every change is stored.
Persistent: exactly the changes that could not be stored are reported (an item's later
changes with them, to keep its versions in stream order); when Lambda delivers again from
the checkpoint, the backup is complete: every item's history in order, and the state as of
any time exactly the stream's. Replays (re-delivered records, lost answers) change nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda import handler as backup_handler
from backup_lambda.ddbjson import Item
from backup_lambda.errors import StorageError
from backup_lambda.journal import decode_journal
from backup_lambda.layout import decode_change, object_key
from backup_lambda.records import parse_record
from compaction.history import item_history
from jobs.demo.standin import FakeLambdaContext
from jobs.demo.streams import lambda_event
from tests.faults.injector import LOST_RESPONSE, PERSISTENT, STORMS, Fault, FaultInjector, Storm
from tests.faults.oracles import assert_whole, manifest_at
from tests.faults.steps import (
    BUCKET_CHECK,
    ITEM_PUT,
    LAMBDA,
    LAMBDA_WRITES,
    Step,
    Where,
    persistent_cases,
    raise_storm,
    unmet,
)
from tests.jobs.restore.restore_fixtures import SECOND, TABLE, Backup, key_of, now_us

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-28T00:00:00.000"
Record = dict[str, Any]


def stream_record(sequence: int, keys: Item, image: Item | None, at_us: int, name: str) -> Record:
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": at_us // SECOND,
        "Keys": keys,
        "SequenceNumber": f"{sequence:021d}",
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if image is not None:
        ddb["NewImage"] = image
    return {
        "eventID": f"event-{sequence}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": ddb,
        "eventSourceARN": ARN,
    }


def stream() -> list[Record]:
    """Four items: inserts, modifies, removals and a re-insert, a second apart."""
    start = now_us() - 1800 * SECOND
    plan = [
        ("a", "INSERT", "placed"),
        ("b", "INSERT", "placed"),
        ("a", "MODIFY", "paid"),
        ("c", "INSERT", "placed"),
        ("b", "REMOVE", None),
        ("c", "MODIFY", "paid"),
        ("d", "INSERT", "placed"),
        ("a", "MODIFY", "shipped"),
        ("d", "REMOVE", None),
        ("b", "INSERT", "again"),
    ]
    records = []
    for i, (pk, name, status) in enumerate(plan):
        keys = key_of(pk, 1)
        image = None if status is None else {**keys, "status": {"S": status}}
        records.append(stream_record(1000 + i, keys, image, start + i * SECOND, name))
    return records


def deliver(records: list[Record]) -> list[str]:
    """Invoke the handler as Lambda does; the sequence numbers it reports as failed."""
    response = backup_handler.handler(lambda_event(records), FakeLambdaContext())
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def sequence(record: Record) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


@pytest.fixture
def lambda_env(world: Backup, monkeypatch: pytest.MonkeyPatch) -> Backup:
    monkeypatch.setenv("BACKUP_BUCKET", world.bucket)
    monkeypatch.setattr(backup_handler, "_writer", None)  # a cold start: a fresh client
    return world


def assert_backup_complete(world: Backup, records: list[Record]) -> None:
    """Every item's history holds each of its changes once, in stream order, images intact;
    every stored change is in a journal object; a snapshot as of the last change is exactly
    the stream's state."""
    changes = [parse_record(r).change for r in records]
    assert stored_sequences(world, "journal/") >= stored_sequences(world, "items/")
    for keys in {c.keys["pk"]["S"]: c.keys for c in changes if c}.values():
        entries = item_history(world.s3, world.bucket, "", TABLE, keys)
        mine = [c for c in changes if c and c.keys == keys]
        assert [e.change.sequence_number for e in entries] == [c.sequence_number for c in mine]
        assert [e.change.new_image for e in entries] == [c.new_image for c in mine]
    oracle = Backup(world.s3, world.dynamodb, bucket=world.bucket)
    oracle.changes = [c for c in changes if c]
    as_of = max(c.event_time_us for c in oracle.changes)
    world.compact(as_of)
    manifest = manifest_at(world, as_of)
    assert manifest is not None
    assert assert_whole(world.s3, world.bucket, manifest) == oracle.oracle(as_of)


def stored_sequences(world: Backup, folder: str) -> set[str]:
    """The sequence numbers in every version of every object under the table's folder."""
    found: set[str] = set()
    pages = world.s3.get_paginator("list_object_versions").paginate(
        Bucket=world.bucket, Prefix=f"{TABLE}/v1/{folder}"
    )
    for version in (v for page in pages for v in page.get("Versions", [])):
        body = world.s3.get_object(
            Bucket=world.bucket, Key=version["Key"], VersionId=version["VersionId"]
        )["Body"].read()
        where = version["Key"]
        if folder == "journal/":
            found |= {c.sequence_number for c in decode_journal(body, where)}
        else:
            found.add(decode_change(body, where).sequence_number)
    return found


@pytest.mark.parametrize("storm", STORMS, ids=lambda s: s.name)
def test_transient_faults_are_retried_and_no_record_fails(
    lambda_env: Backup, faults: FaultInjector, storm: Storm
) -> None:
    records = stream()
    rules = raise_storm(faults, storm, LAMBDA, 2)
    assert deliver(records) == []
    faults.clear()
    assert unmet(rules) == []
    assert_backup_complete(lambda_env, records)


def a_only(step: Step) -> Where | None:
    """Item objects: only item a's fail (its neighbours show what is not reported)."""
    if step is not ITEM_PUT:
        return step.where
    a_key = object_key("", TABLE, key_of("a", 1))
    return lambda request: a_key in request.url


CASES = [
    pytest.param(step, fault, id=f"{step.id}-{fault.name}")
    for step, fault in [
        *((s, f) for s, f in persistent_cases(LAMBDA) if s is not BUCKET_CHECK),
        *((s, LOST_RESPONSE) for s in LAMBDA_WRITES),
    ]
]


@pytest.mark.parametrize(("step", "fault"), CASES)
def test_changes_that_cannot_be_stored_are_reported_and_redelivery_completes_them(
    lambda_env: Backup, faults: FaultInjector, step: Step, fault: Fault
) -> None:
    records = stream()
    # GIVEN S3 failing this step for good (for item objects: item a's only)
    rule = faults.inject(step.service, step.operation, fault, times=None, where=a_only(step))
    # WHEN the batch is delivered
    failed = deliver(records)
    faults.clear()
    assert rule.struck > 0
    # THEN exactly what was not stored is reported: without its journal object, the whole
    # batch; else item a's changes (its first failed, the later ones not tried)
    if step is ITEM_PUT:
        assert failed == [sequence(r) for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == "a"]
    else:
        assert failed == [sequence(r) for r in records]
    # WHEN Lambda delivers again from the checkpoint (the lowest failed sequence number)
    checkpoint = next(i for i, r in enumerate(records) if sequence(r) == failed[0])
    assert deliver(records[checkpoint:]) == []
    # THEN the backup is complete and exact (the re-delivered neighbours are replays)
    assert_backup_complete(lambda_env, records)


def test_an_outage_of_every_write_fails_the_whole_batch_and_redelivery_completes_it(
    lambda_env: Backup, faults: FaultInjector
) -> None:
    records = stream()
    step = ITEM_PUT
    faults.inject(step.service, step.operation, LOST_RESPONSE, times=None, where=step.where)
    assert deliver(records) == [sequence(r) for r in records]
    faults.clear()
    assert deliver(records) == []
    assert_backup_complete(lambda_env, records)


@pytest.mark.parametrize("fault", PERSISTENT["s3"], ids=lambda f: f.name)
def test_a_versioning_check_that_fails_for_good_fails_the_invocation_and_a_retry_completes_it(
    lambda_env: Backup, faults: FaultInjector, fault: Fault
) -> None:
    records = stream()
    # GIVEN GetBucketVersioning failing for good at a cold start
    rule = faults.inject("s3", "GetBucketVersioning", fault, times=None)
    # WHEN the batch is delivered THEN the invocation fails (Lambda retries the whole
    # batch) and nothing is written
    with pytest.raises(StorageError, match="GetBucketVersioning"):
        deliver(records)
    faults.clear()
    assert rule.struck > 0
    assert stored_sequences(lambda_env, "items/") == set()
    # WHEN Lambda retries the batch THEN the check passes and the backup is complete
    assert deliver(records) == []
    assert_backup_complete(lambda_env, records)
