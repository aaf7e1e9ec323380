"""`expire`'s journal retention on moto: journal objects folded into every snapshot a read
may still build on go (after the retention record), never those a kept snapshot, one
expired within the grace period, or the next compaction needs; --dry-run lists them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from backup_lambda.journal import COVERAGE, journal_prefix, retention_key, write_marker
from compaction import catalog
from compaction.journal import JOURNAL, LISTING, retained_from
from compaction.manifest import Manifest
from compaction.retention import RetentionPolicy, journal_from_us
from compaction.state import plan_state
from jobs.main import main
from jobs.ops.expire import Expirer, ExpireReport
from jobs.ops.expire_journal import JournalExpiry
from tests.ops.conftest import SetClock
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    compact,
    item,
    now_us,
    snapshot_items,
    versions_under,
    whole_second_ago,
)

HOUR = 3600 * SEC
MINUTE = 60 * SEC
JOURNAL_ROOT = journal_prefix("", TABLE)


@dataclass
class Journaled:
    log: ChangeLog
    snapshots: list[Manifest]  # s1, s2, s3: full snapshots 30 minutes after each batch
    written: list[int]  # when each batch was written (S3's clock, the journal's key time)


@pytest.fixture
def journaled(s3: Any, bucket: str, s3_clock: SetClock) -> Journaled:
    """Three batches an hour apart (from 4 hours ago), journal and items, and a full
    snapshot as of 30 minutes after each."""
    t0 = whole_second_ago(4 * 3600)
    written: list[int] = []
    clock = {"us": t0}  # 0: the real clock (as S3's, after the batches)
    log = ChangeLog(s3, journal_clock=lambda: clock["us"] or now_us())
    s3_clock(t0)
    write_marker(s3, BUCKET, "", TABLE, COVERAGE, 0, "tests")
    snapshots = []
    for batch in range(3):
        clock["us"] = t0 + batch * HOUR
        s3_clock(clock["us"])
        written.append(clock["us"])
        log.put(item(f"k-{batch}", v=batch), clock["us"] - SEC)
        log.put(item("shared", v=batch), clock["us"] - SEC)
        s3_clock(None)
        snapshots.append(compact(s3, clock["us"] + 30 * MINUTE, kind="full"))
    clock["us"] = 0
    return Journaled(log, snapshots, written)


def journal_keys(s3: Any) -> list[str]:
    versions, markers = versions_under(s3, JOURNAL_ROOT)
    assert markers == []
    return sorted(v["Key"] for v in versions)


def expire(s3: Any, keep_last: int, now: int, dry_run: bool = False) -> ExpireReport:
    return Expirer(
        s3,
        BUCKET,
        TABLE,
        "",
        RetentionPolicy(keep_last),
        grace_us=HOUR,
        dry_run=dry_run,
        now_us=now,
    ).run()


def journal_of(report: ExpireReport) -> JournalExpiry:
    assert report.journal is not None
    return report.journal


def test_journal_folded_into_the_oldest_snapshot_still_needed_goes(
    s3: Any, journaled: Journaled
) -> None:
    s1, s2, s3_ = journaled.snapshots
    assert all(m.change_source == JOURNAL for m in journaled.snapshots)
    before = journal_keys(s3)
    assert len(before) == 6  # two changes per batch, one journal object each
    now = now_us()

    # --dry-run lists what would go and removes nothing
    dry = journal_of(expire(s3, 2, now, dry_run=True))
    assert dry.bound.through_us == journal_from_us(s1) - 1
    assert dry.objects == 2
    assert list(dry.partitions) == [before[0][len(JOURNAL_ROOT) :].rsplit("/", 1)[0]]
    assert journal_keys(s3) == before
    assert retained_from(s3, BUCKET, "", TABLE) is None

    # s1 expires now, but a run started on it may still read its window: only the first
    # batch (written before s1's listing bound, less the write lead and key margin) goes
    report = expire(s3, 2, now)
    assert report.expired == [s1.id]
    assert journal_of(report).objects == 2
    assert journal_keys(s3) == before[2:]
    assert retained_from(s3, BUCKET, "", TABLE) == journal_from_us(s1) - 1
    tombstone = s3.get_object(
        Bucket=BUCKET, Key=f"{catalog.snapshots_prefix('', TABLE)}{s1.id}/expired.json"
    )["Body"].read()
    assert json.loads(tombstone)["journal_from_us"] == journal_from_us(s1)

    # within the grace period nothing more goes; after it, s1's window goes too
    assert journal_of(expire(s3, 2, now + 30 * MINUTE)).objects == 0
    later = journal_of(expire(s3, 2, now + 2 * HOUR))
    assert later.objects == 2
    assert later.bound.through_us == journal_from_us(s2) - 1
    assert journal_keys(s3) == before[4:]
    assert retained_from(s3, BUCKET, "", TABLE) == journal_from_us(s2) - 1

    # what is kept still reads exactly: the next compaction from the journal, a point in
    # time between the kept snapshots, and a full rebuild (by listing: the record says
    # the journal before s2 is gone)
    log = journaled.log
    log.put(item("k-new", v=9), now_us() - 10 * SEC)
    after = compact(s3, now_us())
    assert after.change_source == JOURNAL
    assert snapshot_items(s3, after) == log.expected(after.as_of_us)
    between = plan_state(s3, BUCKET, "", TABLE, s2.as_of_us + MINUTE)
    assert (between.base.id if between.base else None) == s2.id
    full = plan_state(s3, BUCKET, "", TABLE, now_us(), full=True)
    assert full.source.kind == LISTING
    assert "removed by expire" in full.source.reason
    assert snapshot_items(s3, s3_) == log.expected(s3_.as_of_us)


def test_with_one_snapshot_kept_the_journal_goes_up_to_the_one_before(
    s3: Any, journaled: Journaled
) -> None:
    s1, s2, s3_ = journaled.snapshots
    now = now_us()
    first = journal_of(expire(s3, 1, now))  # s1 and s2 expire now
    assert first.bound.through_us == journal_from_us(s1) - 1
    assert len(journal_keys(s3)) == 4
    # Once no snapshot older than the newest is needed, the newest alone never makes the
    # journal go: a damaged newest snapshot can be built again from the one before.
    alone = journal_of(expire(s3, 1, now + 2 * HOUR))
    assert alone.bound.through_us is None
    assert alone.bound.reason.startswith(f"no snapshot older than the newest, {s3_.id}")
    assert len(journal_keys(s3)) == 4
    # The next snapshot expires s3: the journal folded into it goes (s2's window too).
    journaled.log.put(item("k-new", v=9), now_us() - 10 * SEC)
    s4 = compact(s3, now_us(), kind="full")
    assert s4.change_source == JOURNAL
    next_run = journal_of(expire(s3, 1, now_us()))
    assert next_run.bound.through_us == journal_from_us(s3_) - 1
    assert len(journal_keys(s3)) == 1  # the new change: the third batch is in s3 too
    assert s2.id not in {m.id for m in catalog.committed_snapshots(s3, BUCKET, "", TABLE)}


def test_a_tombstone_without_a_journal_bound_holds_the_journal_for_the_grace(
    s3: Any, journaled: Journaled
) -> None:
    s1 = journaled.snapshots[0]
    now = now_us()
    expire(s3, 2, now)
    kept = journal_keys(s3)
    # the tombstone as an earlier ddb-backup wrote it
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{catalog.snapshots_prefix('', TABLE)}{s1.id}/expired.json",
        Body=b'{"expired_at": "then"}',
    )
    held = journal_of(expire(s3, 2, now + 10 * MINUTE))
    assert held.bound.through_us is None
    assert f"snapshot {s1.id} was expired less than the grace period ago" in held.bound.reason
    assert journal_keys(s3) == kept


def test_cli_expire_lists_the_journal(
    s3: Any, journaled: Journaled, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert (
        main(["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "2", "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "journal" in line]
    assert lines[0].startswith("would delete 2 change journal objects (")
    assert "folded into snapshot" in lines[0]
    assert lines[1].startswith("  journal/")
    assert lines[1].endswith("bytes")
    assert main(["expire", "--bucket", BUCKET, "--table", TABLE, "--keep-last", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert payload["journal"]["objects"] == 2
    assert payload["journal"]["removed_through"].endswith("Z")
    assert s3.get_object(Bucket=BUCKET, Key=retention_key("", TABLE))["Body"].read()
