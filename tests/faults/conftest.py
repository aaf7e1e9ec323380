"""Fixtures of the fault suite: the injector, instant retries, a backed-up table, the CLI."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.endpoint
import pytest
from moto import mock_aws

import jobs.cli.clients
import jobs.restore.batchwrite
from compaction.policy import SnapshotPolicy
from jobs.main import main
from tests.faults.injector import FaultInjector, install
from tests.jobs.restore.restore_fixtures import (
    SECOND,
    TABLE,
    Backup,
    create_table,
    fake_aws_env,
    make_backup,
    new_session,
    now_us,
    share_sessions,
)

PAGE = 8  # versions per ListObjectVersions page: every listing here takes several pages


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> FaultInjector:
    """The injector between every boto3 client and moto; retries do not sleep."""
    injector = FaultInjector()
    install(injector, monkeypatch.setattr)
    # botocore's backoff (standard mode: up to 20 s) and the restore's own jitter, recorded
    # instead of slept, so that a fault costs no wall time.
    monkeypatch.setattr(
        botocore.endpoint, "time", types.SimpleNamespace(sleep=injector.backoffs.append)
    )
    monkeypatch.setattr(
        jobs.restore.batchwrite, "random", types.SimpleNamespace(uniform=lambda a, b: 0.0)
    )
    # Clients cached across tests would carry a retry quota drained by earlier faults.
    monkeypatch.setattr(jobs.cli.clients, "_CLIENTS", {})
    monkeypatch.setenv("MOTO_S3_DEFAULT_MAX_KEYS", str(PAGE))
    return injector


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Any]:
    """In-process moto for a whole module, with the live source table `orders` (started
    once: a fresh mock and table per test would cost more than most tests here)."""
    with pytest.MonkeyPatch.context() as patch:
        fake_aws_env(patch)
        share_sessions(patch)
        with mock_aws():
            session = new_session()
            dynamodb = session.client("dynamodb")
            create_table(dynamodb, TABLE)
            yield session.client("s3"), dynamodb


_buckets = itertools.count()


@pytest.fixture
def world(moto_server: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> Backup:
    """A fresh versioned bucket (one per test) backing up `orders`."""
    fake_aws_env(monkeypatch)
    share_sessions(monkeypatch)
    s3, dynamodb = moto_server
    return make_backup(s3, dynamodb, bucket=f"faults-{next(_buckets)}", source_table=False)


def iso(micros: int) -> str:
    moment = dt.datetime.fromtimestamp(micros / SECOND, dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def result(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.out.splitlines()[-1])
        return loaded

    def assert_one_line_error(self, code: int = 1) -> str:
        """Failed with exit status `code` and exactly one clear line on stderr."""
        assert self.code == code, (self.code, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("ddb-backup: error: "), lines[0]
        assert "Traceback" not in self.err
        return lines[0]


@pytest.fixture
def cli(world: Backup, capsys: pytest.CaptureFixture[str]) -> Any:
    """`ddb-backup COMMAND --bucket <the world's> --table orders ARGS...` in process."""

    def run(command: str, *args: str, table: str = TABLE) -> Outcome:
        capsys.readouterr()
        code = main([command, "--bucket", world.bucket, "--table", table, *args])
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run


@dataclass(frozen=True)
class Times:
    base: int  # the base snapshot's as-of
    as_of: int  # the time the run under test works to


def history(b: Backup, *, chain: bool = False) -> Times:
    """A small history that needs every part of the fold: inserts, modifies, removals, a
    re-insert, replays, a stale re-drive, a late change and changes after the as-of.

    The base snapshot (as of `base`) is committed; with `chain`, a delta on top of it too
    (readers then resolve a chain of two); the run under test goes to `as_of`."""
    start = now_us() - 3600 * SECOND
    at = lambda s: start + s * SECOND  # noqa: E731
    for sk in range(12):
        b.item(f"p{sk % 3}", sk, at(sk), status="placed", n=sk)
    b.item("p0", 0, at(20), status="paid")
    b.item("p1", 1, at(21), status="paid")
    b.remove("p2", 2, at(22))
    b.remove("p0", 3, at(23))
    b.write(b.changes[4])  # a replay of an insert
    b.compact(at(30))
    b.item("p1", 1, at(40), status="shipped")
    b.item("p0", 3, at(41), status="again")  # re-inserted after its removal
    b.remove("p2", 5, at(42))
    b.item("p2", 12, at(43), status="new")
    if chain:
        b.compact(at(45), policy=SnapshotPolicy(kind="delta"))
    b.remove("p1", 4, at(50))  # a removal after either base
    b.item("p0", 13, at(28), status="late")  # event before the base, written after it
    b.write(b.changes[0])  # a stale re-drive of the first insert
    b.write(b.changes[-2])  # a replay after the base
    b.item("p1", 7, at(70), status="future")  # after the as-of
    return Times(at(30), at(60))
