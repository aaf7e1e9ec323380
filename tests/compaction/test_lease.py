"""`expire` during a running compaction (issue 13, finding 2), the run's lease, and the
commit's check of its files.

Before: `expire --grace-hours 0`, or any grace shorter than the run, counted a running
compaction's folder as an orphan and deleted its files; the compaction then committed a
manifest listing files that no longer existed. Now the run keeps a lease in its folder that
`expire` respects, and the commit confirms every file first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backup_lambda.errors import CorruptSnapshotError, StorageError
from compaction import catalog, exportmanifests
from compaction.compactor import CompactionConfig, CompactionResult, Compactor
from compaction.fallback import files_present
from compaction.lease import LEASE_NAME, RunLease
from compaction.retention import RetentionPolicy
from jobs.main import main
from jobs.ops.expire import Expirer
from tests.compaction.helpers import (
    BUCKET,
    SEC,
    TABLE,
    SimClock,
    Store,
    actual_content,
    expected_content,
    read_snapshot,
)

HOUR = 3600 * SEC


def put(store: Store, i: int) -> None:
    store.put({"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}}, {"n": {"N": str(i)}}, event_s=i)


class Paused:
    """A compaction in a thread, held after its files are written, before its commit."""

    def __init__(self, s3: Any, clock: SimClock, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self.outcome: list[CompactionResult | BaseException] = []
        add = exportmanifests.add_export_manifests

        def held(*args: Any, **kwargs: Any) -> Any:
            self.reached.set()
            assert self.go.wait(60)
            return add(*args, **kwargs)

        monkeypatch.setattr(exportmanifests, "add_export_manifests", held)
        compactor = Compactor(
            s3, BUCKET, TABLE, config=CompactionConfig(lease_seconds=0.05), clock=clock.time
        )
        self._thread = threading.Thread(target=self._run, args=(compactor, clock.at(10)))

    def _run(self, compactor: Compactor, as_of_us: int) -> None:
        try:
            self.outcome.append(compactor.run(as_of_us))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.outcome.append(e)

    def start(self) -> None:
        self._thread.start()
        assert self.reached.wait(60)

    def finish(self) -> CompactionResult | BaseException:
        self.go.set()
        self._thread.join(60)
        return self.outcome[0]


@pytest.fixture
def paused(
    s3_client: Any, store: Store, sim_clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Paused]:
    for i in range(6):
        put(store, i)
    sim_clock.set(20)
    run = Paused(s3_client, sim_clock, monkeypatch)
    run.start()
    yield run
    run.go.set()


def run_folder_keys(s3: Any) -> list[str]:
    root = catalog.snapshots_prefix("", TABLE)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=root).get("Contents", [])
    return [o["Key"] for o in listed if "/run-" in o["Key"]]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_expire_during_a_running_compaction_leaves_its_files_and_the_snapshot_is_whole(
    s3_client: Any, store: Store, sim_clock: SimClock, paused: Paused
) -> None:
    # GIVEN a compaction that wrote its files at t=20 and is still running two hours later
    written = run_folder_keys(s3_client)
    assert written
    sim_clock.set(20 + 2 * 3600)
    lease = next(k for k in written if k.endswith(f"/{LEASE_NAME}"))
    wait_for(
        lambda: (
            s3_client.head_object(Bucket=BUCKET, Key=lease)["LastModified"].timestamp()
            >= sim_clock.now_us / SEC
        )
    )
    # WHEN expire runs with a grace period of 1 hour (its files are 2 hours old)
    report = Expirer(
        s3_client,
        BUCKET,
        TABLE,
        "",
        RetentionPolicy(1, None),
        grace_us=HOUR,
        now_us=sim_clock.now_us,
    ).run()
    # THEN it leaves the running compaction's folder alone and says so
    run = lease.split("/")[-2]
    assert report.deleted_runs == []
    assert [r.split("/")[-1] for r in report.running_runs] == [run]
    assert set(written) <= set(run_folder_keys(s3_client))
    # ... and the compaction commits a whole snapshot holding exactly the state
    result = paused.finish()
    assert isinstance(result, CompactionResult), result
    files_present(s3_client, BUCKET, result.manifest)
    content = actual_content(read_snapshot(s3_client, result.manifest))
    assert content == expected_content(store, sim_clock.at(10))


def test_a_file_gone_before_the_commit_stops_the_commit(
    s3_client: Any, sim_clock: SimClock, paused: Paused
) -> None:
    # GIVEN a running compaction one of whose files goes (an older expire, a person)
    victim = next(k for k in run_folder_keys(s3_client) if "/parquet/" in k)
    for version in s3_client.list_object_versions(Bucket=BUCKET, Prefix=victim)["Versions"]:
        s3_client.delete_object(Bucket=BUCKET, Key=victim, VersionId=version["VersionId"])
    # WHEN it comes to commit THEN it refuses, naming the file, and commits nothing
    outcome = paused.finish()
    assert isinstance(outcome, CorruptSnapshotError), outcome
    assert str(outcome).startswith("not committing snapshot ")
    assert victim in str(outcome)
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == []


def test_a_crashed_runs_folder_goes_once_its_lease_is_stale_and_its_files_past_the_grace(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    put(store, 0)
    root = catalog.run_prefix("", TABLE, "20260101T000000.000000Z", "crashed")
    # a run that wrote its lease and a file at t=100, then died
    sim_clock.set(100)
    with RunLease(s3_client, BUCKET, root, "crashed", interval=3600):
        s3_client.put_object(Bucket=BUCKET, Key=f"{root}parquet/part-0.parquet", Body=b"x")

    def expire(at_s: float) -> Any:
        return Expirer(
            s3_client, BUCKET, TABLE, "", RetentionPolicy(1, None), HOUR, now_us=sim_clock.at(at_s)
        ).run()

    # 10 minutes on: its lease is recent, the run may still be going
    assert expire(100 + 600).running_runs == ["20260101T000000.000000Z/run-crashed"]
    # 30 minutes on: the lease is stale, but the grace period (from the newest file, the
    # lease included) has not passed
    waiting = expire(100 + 1800)
    assert (waiting.running_runs, waiting.waiting_runs) == (
        [],
        ["20260101T000000.000000Z/run-crashed"],
    )
    # past the grace: the folder goes, lease and all
    gone = expire(100 + 3600 + 1)
    assert gone.deleted_runs == ["20260101T000000.000000Z/run-crashed"]
    assert gone.deleted_objects == 2
    assert run_folder_keys(s3_client) == []


class FailsAfterFirst:
    """S3 that takes the first PUT and refuses the rest."""

    def __init__(self) -> None:
        self.puts = 0

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.puts += 1
        if self.puts > 1:
            raise StorageError("refused")
        return {}


def test_a_lease_whose_renewals_fail_keeps_the_run_going() -> None:
    s3 = FailsAfterFirst()
    with RunLease(s3, BUCKET, "t/v1/snapshots/x/run-r/", "r", interval=0.01) as lease:
        wait_for(lambda: lease.failed_renewals >= 2)
    assert lease.renewals == 0


@pytest.mark.parametrize("hours", ["0", "0.5"])
def test_expire_refuses_a_grace_shorter_than_an_hour(
    s3_client: Any, store: Store, hours: str, capsys: pytest.CaptureFixture[str]
) -> None:
    put(store, 0)
    capsys.readouterr()
    code = main(
        ["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "1", "--grace-hours", hours]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"--grace-hours {float(hours):g} is shorter than the minimum, 1" in err
