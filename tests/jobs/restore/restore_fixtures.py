"""Shared helpers and fixtures for the restore and query tests (imported explicitly).

A `Backup` writes change documents straight into a versioned bucket as S3 object versions,
with explicit event times, and keeps the list of changes so that a test can compute the
expected state as of any time independently of the code under test (`oracle`).

S3's LastModified is the real clock (1-second resolution) and cannot be set, so event
times are chosen relative to time.time(): in the past, an hour or so ago.
"""

from __future__ import annotations

import copy
import itertools
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backup_lambda.ddbjson import Item
from backup_lambda.journal import COVERAGE, JOURNAL_ONLY, encode_journal, journal_key, write_marker
from backup_lambda.layout import Change, encode_change, key_hash, object_key
from compaction.compactor import CompactionConfig, Compactor
from compaction.manifest import Manifest
from jobs.restore.ddbitems import from_client_item, to_client_item
from jobs.restore.restorer import RestoreOptions, Restorer, RestoreReport

BUCKET = "ddb-restore-tests"
TABLE = "orders"
KEY_TYPES = {"pk": "S", "sk": "N"}
SECOND = 1_000_000
# How a Backup is written: item objects only; the journal beside them (each change journaled
# first, declared complete from the start); or the journal alone (journal-only mode).
ITEMS = "items"
JOURNAL = "journal"
ONLY = "journal-only"
MODES = [ITEMS, JOURNAL, ONLY]


def now_us() -> int:
    return int(time.time() * SECOND)


def key_of(pk: str, sk: int | str) -> Item:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def create_table(
    dynamodb: Any, name: str, key_types: dict[str, str] | None = None, **extra: Any
) -> None:
    """key_types: attribute -> S/N/B; the first is the partition key, a second the sort key."""
    key_types = key_types or KEY_TYPES
    roles = ["HASH", "RANGE"]
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": attr, "KeyType": role}
            for attr, role in zip(key_types, roles, strict=False)
        ],
        AttributeDefinitions=[
            {"AttributeName": attr, "AttributeType": kind} for attr, kind in key_types.items()
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def table_items(dynamodb: Any, name: str, key_names: list[str] | None = None) -> dict[str, Item]:
    """Every item of a table (our stored form), by the hash of its key."""
    key_names = key_names or list(KEY_TYPES)
    items: dict[str, Item] = {}
    paginator = dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=name, ConsistentRead=True):
        for raw in page.get("Items", []):
            item = from_client_item(raw)
            items[key_hash({k: item[k] for k in key_names})] = item
    return items


def put_items(dynamodb: Any, name: str, items: list[Item]) -> None:
    for item in items:
        dynamodb.put_item(TableName=name, Item=to_client_item(item))


@dataclass
class Backup:
    """A table's backup in a versioned bucket, written change by change."""

    s3: Any
    dynamodb: Any
    bucket: str = BUCKET
    table: str = TABLE
    prefix: str = ""
    key_names: list[str] = field(default_factory=lambda: list(KEY_TYPES))
    changes: list[Change] = field(default_factory=list)
    mode: str = ITEMS
    _seq: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    _journaled: Iterator[int] = field(default_factory=itertools.count)

    def declare_journal(self, mode: str) -> Backup:
        """Write from now on in `mode`; a journal is declared complete from the start."""
        self.mode = mode
        if mode != ITEMS:
            for kind in (COVERAGE, JOURNAL_ONLY) if mode == ONLY else (COVERAGE,):
                write_marker(self.s3, self.bucket, self.prefix, self.table, kind, 0, "tests")
        return self

    def put(
        self,
        keys: Item,
        event_time_us: int,
        image: Item | None,
        *,
        seq: int | str | None = None,
        event_name: str | None = None,
    ) -> Change:
        """Store one change (image None: a removal) as a new version of the item's object."""
        sequence = str(seq if seq is not None else next(self._seq))
        if event_name is None:
            event_name = "REMOVE" if image is None else "MODIFY"
        change = Change(
            table=self.table,
            keys=copy.deepcopy(keys),
            event_name=event_name,  # type: ignore[arg-type]
            event_id=f"event-{sequence}",
            sequence_number=sequence,
            event_time_us=event_time_us,
            new_image=copy.deepcopy(image),
        )
        self.write(change)
        return change

    def item(
        self, pk: str, sk: int, event_time_us: int, seq: int | None = None, **attributes: Any
    ) -> Change:
        """Insert or modify (pk, sk) with plain string attributes."""
        image = {**key_of(pk, sk), **{k: {"S": str(v)} for k, v in attributes.items()}}
        return self.put(key_of(pk, sk), event_time_us, image, seq=seq)

    def remove(self, pk: str, sk: int, event_time_us: int, seq: int | None = None) -> Change:
        return self.put(key_of(pk, sk), event_time_us, None, seq=seq)

    def write(self, change: Change) -> None:
        """Write `change` (again: a replay is another version with the same content):
        its journal object first, then its item version, as the mode says."""
        if self.mode != ITEMS:
            name = f"{next(self._journaled):06d}"
            self.s3.put_object(
                Bucket=self.bucket,
                Key=journal_key(self.prefix, self.table, now_us(), name),
                Body=encode_journal([change]),
            )
        if self.mode != ONLY:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=object_key(self.prefix, self.table, change.keys),
                Body=encode_change(change),
            )
        self.changes.append(change)

    def oracle(self, as_of_us: int) -> dict[str, Item]:
        """The state as of T, by the definition: for each key the change with the greatest
        (event time, integer sequence number) at or before T; removals are absent."""
        best: dict[str, Change] = {}
        for change in self.changes:
            if change.event_time_us > as_of_us:
                continue
            digest = key_hash(change.keys)
            order = (change.event_time_us, int(change.sequence_number))
            current = best.get(digest)
            if current is None or order > (current.event_time_us, int(current.sequence_number)):
                best[digest] = change
        return {
            digest: copy.deepcopy(change.new_image)
            for digest, change in best.items()
            if change.event_name != "REMOVE" and change.new_image is not None
        }

    def compact(self, as_of_us: int, **config: Any) -> Manifest:
        compactor = Compactor(
            self.s3,
            self.bucket,
            self.table,
            prefix=self.prefix,
            config=CompactionConfig(read_concurrency=8, **config),
            dynamodb=self.dynamodb,
        )
        return compactor.run(as_of_us).manifest

    def restorer(
        self, target: str, as_of_us: int, announce: Callable[[str], None] | None = None, **opts: Any
    ) -> Restorer:
        opts.setdefault("workers", 4)
        opts.setdefault("read_concurrency", 8)
        # These tests check what a restore writes; the guard against big deletes is
        # tested on its own (test_restore_guards.py), where `yes` is left off.
        opts.setdefault("yes", True)
        return Restorer(
            self.s3,
            self.dynamodb,
            self.bucket,
            self.table,
            target,
            prefix=self.prefix,
            options=RestoreOptions(as_of_us=as_of_us, **opts),
            announce=announce or (lambda text: None),
        )

    def restore(self, target: str, as_of_us: int, **opts: Any) -> RestoreReport:
        return self.restorer(target, as_of_us, **opts).run()

    def target_items(self, target: str) -> dict[str, Item]:
        return table_items(self.dynamodb, target, self.key_names)


def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, a fixed region, nothing from the host's AWS configuration."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


_RealSession = boto3.session.Session
_shared: list[boto3.session.Session] = []


def new_session() -> boto3.session.Session:
    """One session with fake credentials for the whole run: its clients share the loaded
    service models, which makes creating a client about ten times faster."""
    if not _shared:
        _shared.append(
            _RealSession(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
        )
    return _shared[0]


def share_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `boto3.session.Session()` (what jobs.cli.clients calls, with its profile and
    region None unless chosen) return the shared session; sessions built with explicit
    values stay real."""

    def session(*args: Any, **kwargs: Any) -> boto3.session.Session:
        chosen = args or any(value is not None for value in kwargs.values())
        return _RealSession(*args, **kwargs) if chosen else new_session()

    monkeypatch.setattr(boto3.session, "Session", session)


def make_backup(
    s3: Any, dynamodb: Any, *, bucket: str = BUCKET, source_table: bool = True
) -> Backup:
    """A versioned bucket and (optionally) the live source table, so that compaction and
    restore learn the key schema from DescribeTable."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if source_table:
        create_table(dynamodb, TABLE)
    return Backup(s3, dynamodb, bucket=bucket)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """In-process moto: (s3, dynamodb) clients."""
    fake_aws_env(monkeypatch)
    share_sessions(monkeypatch)
    with mock_aws():
        session = new_session()
        yield session.client("s3"), session.client("dynamodb")


@pytest.fixture
def backup(mocked: tuple[Any, Any]) -> Backup:
    """An empty backup of `orders` (pk S, sk N) whose source table exists."""
    s3, dynamodb = mocked
    return make_backup(s3, dynamodb)


# The query side: pyarrow's S3 filesystem is not boto3, so in-process mock_aws cannot
# serve it; jobs.demo.standin.local_aws() runs moto's server on loopback instead.


@dataclass(frozen=True)
class Server:
    endpoint_url: str
    s3: Any
    dynamodb: Any

    def backup(self, bucket: str) -> Backup:
        """A fresh bucket (one per data set: the server lives for a whole module); the
        source table `orders` exists on the server."""
        return make_backup(self.s3, self.dynamodb, bucket=bucket, source_table=False)


@pytest.fixture(scope="module")
def standin_server() -> Iterator[Server]:
    """moto's server for one test module."""
    from jobs.demo.standin import local_aws

    with local_aws() as standin:
        session = new_session()
        url = standin.endpoint_url
        # moto's backends live in this process: start from nothing, whatever ran before.
        reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(reset, timeout=10):  # noqa: S310 - http on loopback
            pass
        dynamodb = session.client("dynamodb", endpoint_url=url)
        create_table(dynamodb, TABLE)
        yield Server(url, session.client("s3", endpoint_url=url), dynamodb)


@pytest.fixture
def server(standin_server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    fake_aws_env(monkeypatch)
    share_sessions(monkeypatch)
    return standin_server


def run_cli(
    capsys: pytest.CaptureFixture[str], server: Server, bucket: str, command: str, *args: str
) -> tuple[int, str, str]:
    """`ddb-backup COMMAND --bucket B --table orders --endpoint-url URL ARGS...`."""
    from jobs.main import main

    capsys.readouterr()
    code = main(
        [
            command,
            "--bucket",
            bucket,
            "--table",
            TABLE,
            "--endpoint-url",
            server.endpoint_url,
            *args,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err
