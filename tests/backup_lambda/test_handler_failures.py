"""Functional (moto): malformed records, records without sequence numbers, S3 failures."""

from __future__ import annotations

import copy
import io
import json
import types
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError

from backup_lambda.ddbjson import Item
from backup_lambda.layout import object_key
from backup_lambda.records import MissingSequenceNumberError
from tests.conftest import Deliver, History
from tests.support import StreamTable, keys_of, records_of, sequence, stored_bodies

Record = dict[str, Any]
ALICE: Item = {"pk": {"S": "alice"}, "sk": {"N": "1"}}
BOB: Item = {"pk": {"S": "bob"}, "sk": {"N": "2"}}
CAROL: Item = {"pk": {"S": "carol"}, "sk": {"N": "3"}}


def set_n(table: StreamTable, key: Item, n: int) -> None:
    table.update(key, "SET #n = :n", {":n": {"N": str(n)}}, {"#n": "n"})


@pytest.fixture
def records(orders: StreamTable) -> list[Record]:
    """Interleaved changes of three items: alice 3x, bob 2x, carol 1x."""
    orders.put({**ALICE, "n": {"N": "1"}})
    orders.put({**BOB, "n": {"N": "1"}})
    set_n(orders, ALICE, 2)
    set_n(orders, BOB, 2)
    set_n(orders, ALICE, 3)
    orders.put({**CAROL, "n": {"N": "1"}})
    return orders.new_records()


def stored_sequences(s3: Any, bucket: str) -> list[str]:
    return sorted(body["sequenceNumber"] for body in stored_bodies(s3, bucket))


def failures(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


# ---------------------------------------------------------------- malformed records


def _corrupt(path: str, value: object = None, drop: bool = False) -> Callable[[Record], None]:
    def mutate(record: Record) -> None:
        *parents, last = path.split(".")
        target = record
        for part in parents:
            target = target[part]
        if drop:
            del target[last]
        else:
            target[last] = value

    return mutate


def _boolean_sort_key(record: Record) -> None:
    """Keys and image agree, but a BOOL cannot be a key: the item has no object name."""
    record["dynamodb"]["Keys"]["sk"] = {"BOOL": True}
    record["dynamodb"]["NewImage"]["sk"] = {"BOOL": True}


MALFORMED = {
    "no keys": _corrupt("dynamodb.Keys", drop=True),
    "unknown event name": _corrupt("eventName", "UPSERT"),
    "no new image": _corrupt("dynamodb.NewImage", drop=True),
    "undecodable number": _corrupt("dynamodb.NewImage.n", {"N": "two"}),
    "key of a non-key type": _boolean_sort_key,
    "number beyond decimal's range": _corrupt("dynamodb.NewImage.n", {"N": "1e9999999"}),
}


@pytest.mark.parametrize("corrupt", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_record_is_reported_and_its_neighbours_are_stored(
    records: list[Record],
    deliver: Deliver,
    s3: Any,
    bucket: str,
    corrupt: Callable[[Record], None],
) -> None:
    # GIVEN a batch of good records with one malformed record in the middle
    batch = copy.deepcopy(records)
    corrupt(batch[2])
    # WHEN the handler runs
    response = deliver(batch)
    # THEN exactly that record is reported and every other one, before and after, is stored
    assert failures(response) == [sequence(batch[2])]
    good = [sequence(r) for i, r in enumerate(records) if i != 2]
    assert stored_sequences(s3, bucket) == sorted(good)


def test_stored_event_with_a_keys_only_record_reports_it(
    deliver: Deliver, history: History
) -> None:
    response = deliver(records_of("stream_event_malformed_batch"))
    assert failures(response) == ["222200000000000000000002"]
    dave = {"customer": {"S": "dave"}, "order_id": {"N": "7"}}
    erin = {"customer": {"S": "erin"}, "order_id": {"N": "8"}}
    assert [e.change.sequence_number for e in history(dave)] == ["222200000000000000000001"]
    assert [e.change.sequence_number for e in history(erin)] == ["222200000000000000000003"]


def test_a_record_without_sequence_number_fails_the_invocation(
    records: list[Record], deliver: Deliver, s3: Any, bucket: str
) -> None:
    # GIVEN a batch whose third record has no sequence number
    batch = copy.deepcopy(records)
    lost = sequence(batch[2])
    del batch[2]["dynamodb"]["SequenceNumber"]
    # WHEN the handler runs THEN the whole invocation fails (Lambda retries the batch) ...
    with pytest.raises(MissingSequenceNumberError):
        deliver(batch)
    # ... after storing the valid records before it
    stored = stored_sequences(s3, bucket)
    assert {sequence(records[0]), sequence(records[1])} <= set(stored)
    assert lost not in stored


# ---------------------------------------------------------------- S3 failures


class Hooks:
    """Event hooks on the session the handler builds its S3 client from, removed after."""

    def __init__(self, events: Any) -> None:
        self._events = events
        self._registered: list[tuple[str, Callable[..., Any]]] = []

    def register(self, name: str, hook: Callable[..., Any]) -> None:
        self._events.register(name, hook)
        self._registered.append((name, hook))

    def register_first(self, name: str, hook: Callable[..., Any]) -> None:
        self._events.register_first(name, hook)
        self._registered.append((name, hook))

    def remove_all(self) -> None:
        for name, hook in self._registered:
            self._events.unregister(name, hook)


@pytest.fixture
def s3_events(aws: None) -> Iterator[Hooks]:
    hooks = Hooks(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
    yield hooks
    hooks.remove_all()


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry backoff, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=slept.append))
    return slept


class PutFailure:
    """Fails PutObject of one object with an S3 error once its change reaches a sequence."""

    def __init__(self, key: str, from_sequence: str, code: str = "InternalError") -> None:
        self.key = key
        self.from_sequence = int(from_sequence)
        self.code = code
        self.active = True
        self.refused: list[str] = []

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        if not self.active or params["Key"] != self.key:
            return
        sequence_number = json.loads(params["Body"])["sequenceNumber"]
        if int(sequence_number) >= self.from_sequence:
            self.refused.append(sequence_number)
            raise ClientError(
                {"Error": {"Code": self.code, "Message": "We encountered an internal error."}},
                "PutObject",
            )


@pytest.mark.parametrize("redelivery", ["from the checkpoint", "the whole batch"])
def test_an_s3_failure_is_reported_and_nothing_is_lost(
    records: list[Record],
    deliver: Deliver,
    history: History,
    s3_events: Hooks,
    redelivery: str,
) -> None:
    # GIVEN S3 refusing alice's object from her second change on
    alice = [r for r in records if keys_of(r) == ALICE]
    outage = PutFailure(object_key("", "orders", ALICE), sequence(alice[1]))
    s3_events.register("before-parameter-build.s3.PutObject", outage)
    # WHEN the batch is delivered
    response = deliver(records)
    # THEN that change and alice's later change are reported; the rest is written
    assert failures(response) == [sequence(alice[1]), sequence(alice[2])]
    assert outage.refused == [sequence(alice[1])]  # the later one waits, keeping order
    assert [e.change.sequence_number for e in history(ALICE)] == [sequence(alice[0])]
    assert len(history(BOB)) == 2
    assert len(history(CAROL)) == 1
    # WHEN S3 recovers and Lambda redelivers
    outage.active = False
    start = records.index(alice[1]) if redelivery == "from the checkpoint" else 0
    assert deliver(records[start:]) == {"batchItemFailures": []}
    # THEN every item's history is complete and in stream order, each image intact
    for keys in (ALICE, BOB, CAROL):
        expected = [r for r in records if keys_of(r) == keys]
        entries = history(keys)
        assert [e.change.sequence_number for e in entries] == [sequence(r) for r in expected]
        assert [e.change.new_image for e in entries] == [
            r["dynamodb"]["NewImage"] for r in expected
        ]


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Any:
        yield self.read()


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_a_transient_s3_error_is_retried_with_backoff_and_not_reported(
    records: list[Record],
    deliver: Deliver,
    history: History,
    s3_events: Hooks,
    backoffs: list[float],
    status: int,
    code: str,
) -> None:
    # GIVEN S3 answering the first PutObject of an item object with a 5xx
    attempts: list[str] = []

    def answer_once(request: Any, **_: Any) -> AWSResponse | None:
        if "/v1/items/" not in request.url:
            return None  # the journal (written first) goes through
        attempts.append(request.url)
        if len(attempts) > 1:
            return None  # on to moto
        body = f"<Error><Code>{code}</Code><Message>Please retry</Message></Error>".encode()
        return AWSResponse(request.url, status, {}, _RawBody(body))

    # Registered first so its answer wins; moto still sees the request, like an S3 that
    # stored the object and then failed to answer.
    s3_events.register_first("before-send.s3.PutObject", answer_once)
    # WHEN one change is delivered
    assert deliver(records[:1]) == {"batchItemFailures": []}
    # THEN botocore retried after a backoff and the change is stored
    assert len(attempts) == 2
    assert attempts[0] == attempts[1]
    assert len(backoffs) == 1
    (entry,) = history(ALICE)
    assert entry.change.sequence_number == sequence(records[0])


def test_a_persistent_transport_failure_is_reported_after_the_retries(
    records: list[Record],
    deliver: Deliver,
    s3_events: Hooks,
    backoffs: list[float],
    s3: Any,
    bucket: str,
) -> None:
    # GIVEN every PutObject of bob's object failing at the connection
    bob_key = object_key("", "orders", BOB)
    attempts: list[str] = []

    def drop_bob(request: Any, **_: Any) -> None:
        if bob_key in request.url:
            attempts.append(request.url)
            raise ConnectionClosedError(endpoint_url=request.url)

    s3_events.register_first("before-send.s3.PutObject", drop_bob)
    # WHEN the batch is delivered
    response = deliver(records)
    # THEN bob's changes are reported after botocore's standard retries; the rest is stored
    bob = [sequence(r) for r in records if keys_of(r) == BOB]
    assert failures(response) == bob
    assert len(attempts) == 9  # the first try plus the handler's 8 retries (max_attempts)
    assert len(backoffs) == 8
    assert stored_sequences(s3, bucket) == sorted(sequence(r) for r in records if keys_of(r) != BOB)
