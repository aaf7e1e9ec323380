"""`expire` on moto: kept snapshots stay whole, removed ones go in two steps, orphans of
crashed runs go after the grace period, and the lifecycle rule."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backup_lambda.errors import NotFoundError, StorageError
from backup_lambda.layout import encode_change, items_prefix, key_hash, object_key
from compaction import catalog
from compaction.lease import lease_key
from compaction.manifest import Manifest, snapshot_id
from compaction.retention import RetentionPolicy, reach_start_us
from jobs.main import main
from jobs.ops.expire import Expirer, ExpireReport
from jobs.restore.restorer import RestoreOptions, Restorer
from tests.ops.helpers import (
    BUCKET,
    DAY,
    SEC,
    TABLE,
    ChangeLog,
    assert_files_intact,
    committed_ids,
    compact,
    item,
    now_us,
    snapshot_items,
    table_items,
    versions_under,
    whole_second_ago,
)

HOUR = 3600 * SEC
SNAPSHOTS = catalog.snapshots_prefix("", TABLE)


@dataclass
class Backup:
    log: ChangeLog
    manifests: list[Manifest]  # committed, oldest first
    orphan: str  # "<snapshot id>/run-<run>" of a crashed compaction
    prefix: str = ""


def build(
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    prefix: str = "",
    crash: bool = True,
    shard_digits: int = 0,
) -> Backup:
    """Four snapshots 10 s apart (an hour ago), each incremental on the one before, then
    a compaction that crashes before its commit."""
    log = ChangeLog(s3, prefix=prefix)
    t0 = whole_second_ago(3600)
    manifests = []
    for i in range(4):
        log.put(item(f"item-{i}", v=i), t0 + i * 10 * SEC)
        log.put(item("shared", v=i), t0 + i * 10 * SEC + 1)
        if i == 2:
            log.remove("item-0", t0 + i * 10 * SEC + 2)
        manifests.append(
            compact(s3, t0 + i * 10 * SEC + 5 * SEC, prefix=prefix, shard_digits=shard_digits)
        )
    assert [m.base for m in manifests[1:]] == [m.id for m in manifests[:-1]]
    orphan = ""
    if crash:
        log.put(item("item-4", v=4), t0 + 42 * SEC)

        def crash_commit(*args: Any, **kwargs: Any) -> None:
            raise StorageError("simulated crash before the commit")

        with monkeypatch.context() as patch:
            patch.setattr(catalog, "commit", crash_commit)
            with pytest.raises(StorageError):
                compact(s3, t0 + 45 * SEC, prefix=prefix, shard_digits=shard_digits)
        crashed = snapshot_id(t0 + 45 * SEC)
        root = catalog.snapshots_prefix(prefix, TABLE)
        runs = {
            v["Key"][len(root) :].split("/")[1] for v in versions_under(s3, f"{root}{crashed}/")[0]
        }
        (run,) = runs
        orphan = f"{crashed}/{run}"
    return Backup(log, manifests, orphan, prefix)


def expire(
    s3: Any,
    keep_last: int,
    *,
    now: int,
    grace_us: int = HOUR,
    dry_run: bool = False,
    prefix: str = "",
    apply_lifecycle: bool = False,
    keep_days: float | None = None,
) -> ExpireReport:
    return Expirer(
        s3,
        BUCKET,
        TABLE,
        prefix,
        RetentionPolicy(keep_last, keep_days),
        grace_us=grace_us,
        dry_run=dry_run,
        now_us=now,
    ).run(apply_lifecycle=apply_lifecycle)


def folder_versions(s3: Any, folder: str, prefix: str = "") -> list[dict]:
    versions, markers = versions_under(s3, f"{catalog.snapshots_prefix(prefix, TABLE)}{folder}/")
    return versions + markers


def readable(s3: Any, key: str) -> bool:
    try:
        s3.get_object(Bucket=BUCKET, Key=key)
    except ClientError:
        return False
    return True


def restore_as_of(s3: Any, dynamodb: Any, as_of: int, target: str) -> dict[str, Any]:
    Restorer(
        s3,
        dynamodb,
        BUCKET,
        TABLE,
        target,
        options=RestoreOptions(as_of_us=as_of, create_table=True, verify=True),
        announce=lambda text: None,
    ).run()
    return table_items(dynamodb, target)


def test_expire_keeps_kept_snapshots_whole_and_removes_the_rest_in_two_steps(
    s3: Any, dynamodb: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = build(s3, monkeypatch, shard_digits=1)  # several files per snapshot
    s0, s1, s2, s3_ = backup.manifests
    assert all(len(m.files) > 2 for m in backup.manifests)
    now = now_us()

    # WHEN expire keeps the last two, inside the grace period of everything written
    report = expire(s3, 2, now=now)

    # THEN the two newest are kept, whole
    assert report.kept == [s2.id, s3_.id]
    assert report.expired == [s0.id, s1.id]
    assert committed_ids(s3) == [s2.id, s3_.id]
    for kept in (s2, s3_):
        assert_files_intact(s3, kept)
        assert snapshot_items(s3, kept) == backup.log.expected(kept.as_of_us)
    # ... the expired ones lost their manifest (and got a tombstone) but keep their files
    for gone in (s0, s1):
        assert catalog.load_manifest(s3, BUCKET, "", TABLE, gone.id) is None
        assert readable(s3, f"{SNAPSHOTS}{gone.id}/expired.json")
        assert all(readable(s3, f.key) for f in gone.files)
    assert sorted(report.waiting_runs) == sorted(
        [f"{s0.id}/run-{s0.run_id}", f"{s1.id}/run-{s1.run_id}"]
    )
    # ... and the crashed run's lease is recent: it may still be running (compaction.lease)
    assert report.running_runs == [backup.orphan]
    assert report.deleted_runs == []
    assert folder_versions(s3, backup.orphan), "the crashed run's files wait for the grace"
    # ... nothing lingers as a delete marker
    assert versions_under(s3, SNAPSHOTS)[1] == []
    # ... the lifecycle rule follows the oldest kept snapshot (an hour old)
    age_days = math.ceil((now - reach_start_us(s2, SEC)) / DAY)
    assert age_days == 1
    assert report.lifecycle is not None
    assert report.lifecycle["NoncurrentVersionExpiration"] == {"NoncurrentDays": age_days + 2}
    assert report.lifecycle["Filter"] == {"Prefix": items_prefix("", TABLE)}
    assert not report.lifecycle_applied

    # WHEN expire runs again after the grace period
    orphan_files = len(folder_versions(s3, backup.orphan))
    later = expire(s3, 2, now=now + 2 * HOUR)

    # THEN the files of the removed snapshots and of the crashed run are gone, exactly
    assert later.expired == []
    assert sorted(later.deleted_runs) == sorted(
        [f"{s0.id}/run-{s0.run_id}", f"{s1.id}/run-{s1.run_id}", backup.orphan]
    )
    # (each run folder also held its lease, compaction.lease)
    assert later.deleted_objects == len(s0.files) + 1 + len(s1.files) + 1 + orphan_files
    assert later.freed_bytes >= sum(f.bytes for f in (*s0.files, *s1.files))
    for gone in (s0.id, s1.id, backup.orphan.split("/")[0]):
        assert folder_versions(s3, gone) == [], gone  # files and tombstone, no markers
    # ... and the kept ones are still whole, readable, and restorable at their times
    assert committed_ids(s3) == [s2.id, s3_.id]
    for kept in (s2, s3_):
        assert_files_intact(s3, kept)
    assert versions_under(s3, SNAPSHOTS)[1] == []
    assert restore_as_of(s3, dynamodb, s2.as_of_us, "at-s2") == backup.log.expected(s2.as_of_us)
    assert restore_as_of(s3, dynamodb, now_us(), "latest") == backup.log.expected(now_us())

    # WHEN it runs once more THEN there is nothing left to do
    again = expire(s3, 2, now=now + 3 * HOUR)
    assert (again.expired, again.deleted_runs, again.waiting_runs) == ([], [], [])
    assert committed_ids(s3) == [s2.id, s3_.id]


def test_orphan_of_a_crashed_run_waits_for_the_grace_then_goes(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = build(s3, monkeypatch)
    orphan_files = folder_versions(s3, backup.orphan)
    assert orphan_files
    newest_write = max(int(v["LastModified"].timestamp() * SEC) for v in orphan_files)

    # within the grace (measured from its newest file): kept
    inside = expire(s3, 10, now=newest_write + HOUR - SEC)
    assert inside.waiting_runs == [backup.orphan]
    assert folder_versions(s3, backup.orphan) == orphan_files

    # past it: deleted, and nothing committed is touched
    past = expire(s3, 10, now=newest_write + HOUR + SEC)
    assert past.deleted_runs == [backup.orphan]
    assert past.deleted_objects == len(orphan_files)
    assert folder_versions(s3, backup.orphan) == []
    assert committed_ids(s3) == [m.id for m in backup.manifests]
    for manifest in backup.manifests:
        assert_files_intact(s3, manifest)


def test_files_of_a_snapshot_expired_now_wait_for_the_grace_even_when_old(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, s3_clock: Any
) -> None:
    # Readers that chose the snapshot before its manifest went still read its files: the
    # grace period runs from the removal (its tombstone), not from when the files were made.
    backup = build(s3, monkeypatch, crash=False)
    s0, s1, s2, s3_ = backup.manifests
    expired_at = now_us() + 10 * HOUR  # the files are ten hours old by then
    s3_clock(expired_at)
    first = expire(s3, 3, now=expired_at)
    assert first.expired == [s0.id]
    assert first.waiting_runs == [f"{s0.id}/run-{s0.run_id}"]
    assert first.deleted_runs == []
    assert all(readable(s3, f.key) for f in s0.files)
    # inside the grace from the removal: still there
    s3_clock(expired_at + HOUR // 2)
    inside = expire(s3, 3, now=expired_at + HOUR // 2)
    assert inside.waiting_runs == [f"{s0.id}/run-{s0.run_id}"]
    assert all(readable(s3, f.key) for f in s0.files)
    # past it: gone, with the tombstone
    s3_clock(expired_at + HOUR + SEC)
    past = expire(s3, 3, now=expired_at + HOUR + SEC)
    assert past.deleted_runs == [f"{s0.id}/run-{s0.run_id}"]
    assert folder_versions(s3, s0.id) == []
    for kept in (s1, s2, s3_):
        assert_files_intact(s3, kept)


def test_keep_last_one_leaves_the_newest_self_contained(
    s3: Any, dynamodb: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = build(s3, monkeypatch, crash=False)
    newest = backup.manifests[-1]
    expire(s3, 1, now=now_us(), grace_us=0)
    expire(s3, 1, now=now_us() + SEC, grace_us=0)
    assert committed_ids(s3) == [newest.id]
    remaining = {v["Key"] for v in versions_under(s3, SNAPSHOTS)[0]}
    lease = lease_key(catalog.run_prefix("", TABLE, newest.id, newest.run_id))
    assert remaining == {f.key for f in newest.files} | {
        catalog.manifest_key("", TABLE, newest.id),
        lease,  # the run's lease stays beside its files (compaction.lease)
    }
    assert_files_intact(s3, newest)
    assert restore_as_of(s3, dynamodb, newest.as_of_us, "restored") == backup.log.expected(
        newest.as_of_us
    )


def test_kept_files_survive_under_a_prefix_that_contains_run(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = "team/run-books"
    backup = build(s3, monkeypatch, prefix=prefix, crash=False)
    report = expire(s3, 2, now=now_us() + 2 * HOUR, grace_us=0, prefix=prefix)
    kept = backup.manifests[-2:]
    assert report.kept == [m.id for m in kept]
    assert committed_ids(s3, prefix=prefix) == [m.id for m in kept]
    for manifest in kept:
        assert_files_intact(s3, manifest)
        assert snapshot_items(s3, manifest) == backup.log.expected(manifest.as_of_us)


def test_keep_days_keeps_recent_snapshots(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = build(s3, monkeypatch, crash=False)
    s0, s1, s2, s3_ = backup.manifests
    # "now" 10 days after s2: keep_days 10 reaches s2 but not s1
    now = s2.as_of_us + 10 * DAY
    report = expire(s3, 1, keep_days=10, now=now, dry_run=True)
    assert report.kept == [s2.id, s3_.id]
    assert report.expired == [s0.id, s1.id]


def test_dry_run_deletes_nothing(s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    backup = build(s3, monkeypatch)
    before = versions_under(s3, "")
    report = expire(s3, 1, now=now_us() + 30 * DAY, grace_us=0, dry_run=True, apply_lifecycle=True)
    assert report.expired == [m.id for m in backup.manifests[:-1]]
    assert backup.orphan in report.deleted_runs  # would delete
    assert report.deleted_objects > 0
    assert versions_under(s3, "") == before
    assert committed_ids(s3) == [m.id for m in backup.manifests]
    assert not report.lifecycle_applied
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)


def test_apply_lifecycle_puts_the_rule_and_keeps_other_rules(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = build(s3, monkeypatch, crash=False)
    other = {
        "ID": "logs-expire",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 30},
    }
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [other]})
    now = now_us()
    report = expire(s3, 3, now=now, apply_lifecycle=True)
    assert report.lifecycle_applied

    def rules() -> dict[str, dict[str, Any]]:
        current = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
        return {r["ID"]: r for r in current}

    applied = rules()
    assert set(applied) == {"logs-expire", f"ddb-backup-{TABLE}-items"}
    assert applied["logs-expire"]["Expiration"] == {"Days": 30}
    ours = applied[f"ddb-backup-{TABLE}-items"]
    oldest_kept = backup.manifests[1]
    days = math.ceil((now - reach_start_us(oldest_kept, SEC)) / DAY) + 2
    assert ours["NoncurrentVersionExpiration"]["NoncurrentDays"] == days
    assert ours["Filter"] == {"Prefix": items_prefix("", TABLE)}
    assert ours["Status"] == "Enabled"

    # a later run replaces its own rule (the oldest kept snapshot is older by then)
    expire(s3, 3, now=now + 5 * DAY, apply_lifecycle=True)
    replaced = rules()
    assert set(replaced) == set(applied)
    assert replaced[f"ddb-backup-{TABLE}-items"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": days + 5
    }


def test_cli_expire_json(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backup = build(s3, monkeypatch, crash=False)
    code = main(["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "2", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["kept"] == [m.id for m in backup.manifests[-2:]]
    assert payload["expired"] == [m.id for m in backup.manifests[:2]]
    assert payload["dry_run"] is False
    assert payload["deleted_runs"] == []  # inside the default 24 h grace
    assert payload["lifecycle_rule"]["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 3
    assert committed_ids(s3) == [m.id for m in backup.manifests[-2:]]


def test_cli_expire_plain_and_errors(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build(s3, monkeypatch, crash=False)
    code = main(["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "1", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "would expire 3" in out
    assert "NoncurrentDays" in out
    code = main(["expire", "--bucket", BUCKET, "--table", "nothing", "--keep-last", "1"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1
    assert "nothing" in err
    code = main(
        ["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "1", "--keep-days", "-1"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--keep-days" in err


def test_expire_without_a_backup_is_not_found(s3: Any, bucket: str) -> None:
    with pytest.raises(NotFoundError):
        expire(s3, 1, now=now_us())


def test_lifecycle_never_expires_a_removal_a_kept_point_in_time_needs(
    s3: Any, bucket: str, s3_clock: Any
) -> None:
    """A replay written after a removal makes the removal noncurrent early, so lifecycle
    may expire it; the snapshot's tombstone for the key keeps the removal's order, so a
    later re-creation does not revive the old image between the two."""
    log = ChangeLog(s3)
    t0 = whole_second_ago(3600)
    # Ten days ago (S3 time and event time): insert, remove, and a replay of the insert
    # (a Lambda retry or an operator's re-drive) written after the removal.
    old = t0 - 10 * DAY
    s3_clock(old)
    inserted = log.put(item("k", v=1), old)
    log.remove("k", old + SEC)
    s3_clock(old + 60 * SEC)
    log.s3.put_object(
        Bucket=BUCKET, Key=object_key("", TABLE, inserted.keys), Body=encode_change(inserted)
    )
    log.put(item("other", v=1), old + 2 * SEC)
    s3_clock(None)
    # The oldest kept snapshot an hour ago: "k" is absent there.
    kept = compact(s3, t0)
    assert key_hash(inserted.keys) not in snapshot_items(s3, kept)
    # `expire` computes the rule; S3 lifecycle applies it to the noncurrent item versions.
    now = now_us()
    report = expire(s3, 1, now=now)
    assert report.lifecycle is not None
    days = report.lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"]
    simulate_lifecycle(s3, items_prefix("", TABLE), days, now)
    # The item is created again after the snapshot.
    log.put(item("k", v=2), now - 60 * SEC)
    # Between the snapshot and the re-creation, "k" must still be absent.
    between = compact(s3, t0 + 60 * SEC)
    assert snapshot_items(s3, between) == log.expected(t0 + 60 * SEC)


def simulate_lifecycle(s3: Any, prefix: str, noncurrent_days: int, now: int) -> None:
    """Delete the noncurrent versions S3 lifecycle would have expired by `now`."""
    versions, _ = versions_under(s3, prefix)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for version in versions:
        by_key.setdefault(version["Key"], []).append(version)
    for key_versions in by_key.values():
        key_versions.sort(key=lambda v: v["LastModified"])
        for older, newer in itertools.pairwise(key_versions):
            noncurrent_since = int(newer["LastModified"].timestamp() * SEC)
            if noncurrent_since + noncurrent_days * DAY <= now:
                s3.delete_object(Bucket=BUCKET, Key=older["Key"], VersionId=older["VersionId"])


# --- delta chains ----------------------------------------------------------------------------


def test_expire_keeps_every_snapshot_a_kept_delta_needs_and_says_why(
    s3: Any, dynamodb: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a full snapshot, two deltas on it, a new full snapshot and a delta on that
    log = ChangeLog(s3)
    t0 = whole_second_ago(3600)
    kinds = ["full", "delta", "delta", "full", "delta"]
    made = []
    for i, kind in enumerate(kinds):
        log.put(item(f"item-{i}", v=i), t0 + i * 10 * SEC)
        if i == 3:
            log.remove("item-0", t0 + i * 10 * SEC + 1)
        made.append(compact(s3, t0 + i * 10 * SEC + 5 * SEC, kind=kind))
    assert [m.kind for m in made] == kinds
    f1, d1, d2, f2, d3 = made
    assert (d2.parent, d2.depth, d3.parent) == (d1.id, 2, f2.id)
    now = now_us()

    # WHEN expire keeps only the newest (a delta) ... THEN its full parent stays too
    report = expire(s3, 1, now=now, dry_run=True)
    assert report.kept == [f2.id, d3.id]
    assert report.kept_for_chains == {f2.id: d3.id}
    assert report.expired == [f1.id, d1.id, d2.id]

    # WHEN it keeps two: the second newest is a full snapshot, which needs nothing
    assert expire(s3, 2, now=now, dry_run=True).kept_for_chains == {}

    # WHEN the newest three are kept by age: d2 needs d1 and f1
    report = expire(s3, 1, now=now, keep_days=(now - d2.as_of_us) / DAY)
    assert report.kept == [m.id for m in made]
    assert report.kept_for_chains == {f1.id: d2.id, d1.id: d2.id}
    assert report.expired == []

    # AND the command says why it kept them
    code = main(["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"kept {f2.id}: the chain of kept delta snapshot {d3.id} needs it" in out
    assert committed_ids(s3) == [f2.id, d3.id]
    later = expire(s3, 1, now=now + 2 * HOUR)
    assert sorted(later.deleted_runs) == sorted(f"{m.id}/run-{m.run_id}" for m in (f1, d1, d2))
    # ... and the kept delta still reads and restores exactly
    assert snapshot_items(s3, d3) == log.expected(d3.as_of_us)
    assert restore_as_of(s3, dynamodb, d3.as_of_us, "at-d3") == log.expected(d3.as_of_us)
