"""The change journal on moto: which source a plan takes (and says), the window after a
listing-built base, journal-only tables, the reconciliation check, corrupt journal lines,
and writers that die between the journal and the item objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from backup_lambda.errors import CorruptVersionError, IntegrityError
from backup_lambda.journal import encode_journal, journal_key
from backup_lambda.layout import Change, format_time_us, items_prefix, key_hash
from backup_lambda.writer import ChangeWriter
from compaction import catalog
from compaction.compactor import CompactionConfig
from compaction.journal import BOTH, JOURNAL, LISTING, choose_source
from compaction.journalcheck import JournalMismatchError
from compaction.state import base_since, plan_state
from jobs.main import main
from tests.compaction.helpers import (
    BESIDE,
    BUCKET,
    ITEMS,
    ONLY,
    TABLE,
    SimClock,
    Store,
    actual_content,
    compact,
    expected_content,
    read_snapshot,
)

Cli = Callable[..., tuple[int, str, str]]


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 3)}}


def fill(store: Store, count: int, event_s: float, tag: str) -> None:
    for i in range(count):
        store.put(key(i), {"tag": {"S": tag}}, event_s=event_s + i / 100)


def exact(s3: Any, store: Store, clock: SimClock, result: Any, as_of_s: float) -> None:
    snapshot = read_snapshot(s3, result.manifest)
    assert actual_content(snapshot) == expected_content(store, clock.at(as_of_s))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], moto_aws: None) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def forget(s3: Any, manifest: Any) -> None:
    """Remove a committed manifest (every version), to build the same as-of again."""
    name = catalog.manifest_key("", TABLE, manifest.id)
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=name).get("Versions", []):
        s3.delete_object(Bucket=BUCKET, Key=name, VersionId=version["VersionId"])


def requests_of(s3: Any) -> list[tuple[str, str]]:
    """(operation, Prefix or Key) of every request the client makes from now on."""
    seen: list[tuple[str, str]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.append((model.name, params.get("Prefix") or params.get("Key") or ""))

    s3.meta.events.register("before-parameter-build.s3", record)
    return seen


# ---------------------------------------------------------------- which source


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_an_incremental_run_reads_only_the_journal_window(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    fill(store, 30, 0, "v1")
    first = compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    assert first.manifest.change_source == JOURNAL
    for i in range(0, 30, 10):
        store.put(key(i), {"tag": {"S": "v2"}}, event_s=30 + i / 100, name="MODIFY")
    store.put(key(5), None, event_s=31)
    seen = requests_of(s3_client)
    second = compact(s3_client, sim_clock, as_of_s=40, run_s=50)
    exact(s3_client, store, sim_clock, second, 40)
    counts = second.manifest.counts
    assert second.manifest.change_source == JOURNAL
    assert (counts.journal_objects, counts.journal_changes) == (4, 4)  # only those after 20 s
    assert counts.changed_keys == 4
    item_requests = [
        r
        for r in seen
        if r[1].startswith(items_prefix("", TABLE)) and r[1] != items_prefix("", TABLE)
    ]
    assert item_requests == []  # no item version listed or read
    listings = [r for r in seen if r[0] == "ListObjectVersions"]
    assert all("/snapshots/" in where for _, where in listings)  # the commit's own check


def test_without_a_coverage_marker_the_plan_lists_and_says_why(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    fill(store, 5, 0, "v1")
    store.journal([store.changes[0]], 1)  # a journal object, but no writer declared coverage
    plan = plan_state(s3_client, BUCKET, "", TABLE, sim_clock.at(10))
    assert plan.source.kind == LISTING
    assert plan.source.reason == "the table has no complete journal yet"
    assert plan.journal is None


def test_coverage_starts_after_the_window_so_the_plan_lists(
    s3_client: Any, backup_bucket: str, sim_clock: SimClock
) -> None:
    store = Store(s3_client, backup_bucket, sim_clock, mode=BESIDE)
    fill(store, 5, 0, "v1")
    base = compact(s3_client, sim_clock, as_of_s=10, run_s=20)  # no marker yet: listing
    assert base.manifest.change_source == LISTING
    store.declare(complete_from_us=sim_clock.at(100))
    store.put(key(1), {"tag": {"S": "v2"}}, event_s=30, name="MODIFY")
    since = base_since(base.manifest)
    source = choose_source(s3_client, BUCKET, "", TABLE, base.manifest, since)
    assert source.kind == LISTING
    assert "complete only from" in source.reason
    assert format_time_us(sim_clock.at(100)) in source.reason
    # Once a base's window starts after complete_from, the journal is read.
    late = compact(s3_client, sim_clock, as_of_s=150, run_s=160)
    assert late.manifest.change_source == LISTING
    store.put(key(2), {"tag": {"S": "v3"}}, event_s=170, name="MODIFY")
    after = compact(s3_client, sim_clock, as_of_s=180, run_s=190)
    assert after.manifest.change_source == JOURNAL
    exact(s3_client, store, sim_clock, after, 180)


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_listing_is_forced_with_the_flag(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    fill(store, 4, 0, "v1")
    sim_clock.set(10)  # S3's now: at the as-of
    code, out, err = cli(
        "compact",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--as-of",
        format_time_us(sim_clock.at(10)),
        "--listing",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert (summary["change_source"], summary["versions_listed"]) == ("listing", 4)
    store.put(key(0), {"tag": {"S": "v2"}}, event_s=20, name="MODIFY")
    sim_clock.set(30)
    code, out, err = cli(
        "compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", format_time_us(sim_clock.at(30))
    )
    assert code == 0, err
    assert "changes by journal" in out
    # After a base built by listing, the window reaches back the write lead (15 min).
    assert "5 changes from 5 journal objects" in out
    store.put(key(1), {"tag": {"S": "v2"}}, event_s=40, name="MODIFY")
    sim_clock.set(50)
    code, out, err = cli(
        "compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", format_time_us(sim_clock.at(50))
    )
    assert code == 0, err
    # After a base that read the journal, it starts at the base's bound.
    assert "1 changes from 1 journal objects" in out


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_after_a_listing_built_base_a_slow_writers_change_is_found(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    """The writer journals at 15 s, its item version lands at 600 s (a slow invocation);
    the base is built by listing at 30 s (as of 20 s), before the item version exists."""
    fill(store, 3, 0, "v1")
    slow = Change(
        table=TABLE,
        keys=key(1),
        event_name="MODIFY",
        event_id="slow",
        sequence_number="900",
        event_time_us=sim_clock.at(14),
        new_image={**key(1), "tag": {"S": "slow"}},
    )
    store.changes.append(slow)
    store.journal([slow], 15)
    base = compact(
        s3_client, sim_clock, as_of_s=20, run_s=30, config=CompactionConfig(listing=True)
    )
    assert base.manifest.change_source == LISTING
    assert read_snapshot(s3_client, base.manifest).items()[key_hash(key(1))]["tag"] == {"S": "v1"}
    mode, store.mode = store.mode, ITEMS
    store.write(slow, 600)  # the item version, long after its journal object
    store.mode = mode
    after = compact(s3_client, sim_clock, as_of_s=700, run_s=710)
    assert after.manifest.change_source == JOURNAL
    exact(s3_client, store, sim_clock, after, 700)
    assert read_snapshot(s3_client, after.manifest).items()[key_hash(key(1))]["tag"] == {
        "S": "slow"
    }


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_a_base_that_skipped_corrupt_item_versions_is_followed_by_listing(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    fill(store, 3, 0, "v1")
    mode, store.mode = store.mode, ITEMS
    store.put_raw(key(1), b"not json", write_s=2)
    store.mode = mode
    base = compact(
        s3_client,
        sim_clock,
        as_of_s=10,
        run_s=20,
        config=CompactionConfig(skip_corrupt=True, listing=True),
    )
    assert len(base.manifest.skipped) == 1
    source = choose_source(s3_client, BUCKET, "", TABLE, base.manifest, base_since(base.manifest))
    assert source.kind == LISTING
    assert "skipped corrupt item versions" in source.reason


# ---------------------------------------------------------------- journal-only tables


def test_a_table_that_turned_journal_only_reads_items_and_the_journal(
    s3_client: Any, backup_bucket: str, sim_clock: SimClock
) -> None:
    store = Store(s3_client, backup_bucket, sim_clock, mode=ITEMS)
    fill(store, 6, 0, "items era")
    base = compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    # The Lambda is redeployed journal-only at 30 s: its markers say the journal is complete
    # from 30 s + 16 min, and the item objects miss changes from 29 s on.
    store.declare(
        complete_from_us=sim_clock.at(30 + 16 * 60), journal_only_since_us=sim_clock.at(29)
    )
    store.mode = ONLY
    store.put(key(0), {"tag": {"S": "journal only"}}, event_s=40, name="MODIFY")
    store.put(key(7), {"tag": {"S": "new"}}, event_s=41)
    store.put(key(3), None, event_s=42)
    plan = plan_state(s3_client, BUCKET, "", TABLE, sim_clock.at(50))
    assert plan.base == base.manifest
    assert plan.source.kind == BOTH
    assert "journal-only since" in plan.source.reason
    both = compact(s3_client, sim_clock, as_of_s=50, run_s=60)
    assert both.manifest.change_source == BOTH
    exact(s3_client, store, sim_clock, both, 50)
    # --listing cannot drop the journal: it is the only record of those changes.
    forced = plan_state(s3_client, BUCKET, "", TABLE, sim_clock.at(50), full=True, listing=True)
    assert forced.source.kind == BOTH


@pytest.mark.parametrize("store", [ONLY], indirect=True)
def test_a_journal_only_table_is_found_and_planned(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    fill(store, 4, 0, "v1")
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=items_prefix("", TABLE))
    assert listed["KeyCount"] == 0
    plan = plan_state(s3_client, BUCKET, "", TABLE, sim_clock.at(10))
    assert plan.source.kind == JOURNAL
    assert plan.journal is not None
    assert plan.journal.changes == 4


# ---------------------------------------------------------------- the reconciliation check


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_verify_journal_compares_the_window_and_passes(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    fill(store, 5, 0, "v1")
    compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    store.put(key(1), {"tag": {"S": "v2"}}, event_s=30, name="MODIFY")
    store.put(key(2), None, event_s=31)
    result = compact(
        s3_client, sim_clock, as_of_s=40, run_s=50, config=CompactionConfig(verify_journal=True)
    )
    check = result.journal_check
    assert check is not None
    assert check.checked
    assert (check.compared, check.missing) == (2, [])
    assert result.manifest.change_source == JOURNAL


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_a_change_missing_from_the_journal_fails_the_check_and_the_snapshot_lists(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    fill(store, 5, 0, "v1")
    compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    store.mode = ITEMS  # a writer without the journal, after coverage was declared
    rogue = store.put(key(3), {"tag": {"S": "not journaled"}}, event_s=30, name="MODIFY")
    # Without the check, the journal's snapshot misses it (the invariant was broken).
    unchecked = compact(s3_client, sim_clock, as_of_s=40, run_s=50)
    items = read_snapshot(s3_client, unchecked.manifest).items()
    assert items[key_hash(key(3))]["tag"] == {"S": "v1"}
    forget(s3_client, unchecked.manifest)
    with pytest.raises(JournalMismatchError) as raised:
        compact(
            s3_client,
            sim_clock,
            as_of_s=40,
            run_s=60,
            config=CompactionConfig(verify_journal=True),
        )
    message = str(raised.value)
    assert "misses 1 of 1 changes" in message
    assert f"sequence {rogue.sequence_number}" in message
    assert isinstance(raised.value, IntegrityError)
    rebuilt = catalog.newest_at_or_before(s3_client, BUCKET, "", TABLE, None)
    assert rebuilt is not None
    assert rebuilt.id in message
    assert rebuilt.change_source == LISTING
    snapshot = read_snapshot(s3_client, rebuilt)
    assert actual_content(snapshot) == expected_content(store, sim_clock.at(40))
    store.put(key(4), {"tag": {"S": "not journaled either"}}, event_s=70, name="MODIFY")
    sim_clock.set(80)
    code, _, err = cli(
        "compact",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--as-of",
        format_time_us(sim_clock.at(75)),
        "--verify-journal",
    )
    assert code == 6
    assert err.count("\n") == 1
    assert "misses 1 of 1 changes" in err


@pytest.mark.parametrize("store", [ITEMS], indirect=True)
def test_verify_journal_without_a_journal_says_it_checked_nothing(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    fill(store, 2, 0, "v1")
    sim_clock.set(10)
    code, out, err = cli(
        "compact",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--as-of",
        format_time_us(sim_clock.at(10)),
        "--verify-journal",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["journal_check"] == {"checked": False, "item_versions_compared": 0, "missing": 0}


# ---------------------------------------------------------------- corrupt journal objects


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_a_corrupt_journal_line_fails_naming_it_or_is_skipped(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    fill(store, 3, 0, "v1")
    compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    sim_clock.set(30)
    good = encode_journal([store.changes[0]])
    import gzip

    body = gzip.compress(gzip.decompress(good) + b'{"layout": 1, "eventName"\n')
    bad = journal_key("", TABLE, sim_clock.now_us, "bad")
    s3_client.put_object(Bucket=BUCKET, Key=bad, Body=body)
    with pytest.raises(CorruptVersionError) as raised:
        compact(s3_client, sim_clock, as_of_s=40, run_s=50)
    assert f"s3://{BUCKET}/{bad} line 2" in str(raised.value)
    skipped = compact(
        s3_client, sim_clock, as_of_s=40, run_s=60, config=CompactionConfig(skip_corrupt=True)
    )
    assert [(s.key, s.version_id) for s in skipped.manifest.skipped] == [(bad, "line 2")]
    exact(s3_client, store, sim_clock, skipped, 40)
    # A journal object's skipped line does not push later runs back to listing.
    store.put(key(2), {"tag": {"S": "v2"}}, event_s=70, name="MODIFY")
    later = compact(s3_client, sim_clock, as_of_s=80, run_s=90)
    assert later.manifest.change_source == JOURNAL


# ---------------------------------------------------------------- writers that die


class Died(BaseException):
    """The Lambda's process ends (timeout, out of memory): nothing after it runs."""


@pytest.mark.parametrize("items_before_death", [0, 2], ids=["after the journal", "between items"])
def test_a_writer_dying_mid_batch_ends_exact_after_the_retry(
    s3_client: Any, backup_bucket: str, sim_clock: SimClock, items_before_death: int
) -> None:
    store = Store(s3_client, backup_bucket, sim_clock, mode=BESIDE)
    store.declare(0)
    fill(store, 4, 0, "v1")
    base = compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    batch = [
        Change(
            table=TABLE,
            keys=key(k),
            event_name="MODIFY" if k < 4 else "INSERT",
            event_id=f"batch-{n}",
            sequence_number=str(1000 + n),
            event_time_us=sim_clock.at(30 + n / 10),
            new_image={**key(k), "tag": {"S": f"batch {n}"}},
        )
        for n, k in enumerate([0, 1, 0, 5, 2])
    ]
    batch.append(
        Change(
            **{
                **batch[1].__dict__,
                "event_name": "REMOVE",
                "new_image": None,
                "sequence_number": "1010",
                "event_time_us": sim_clock.at(31),
            }
        )
    )
    store.changes += batch
    puts = [0]

    def die(params: dict[str, Any], **_: Any) -> None:
        if "/v1/items/" in params["Key"]:
            if puts[0] == items_before_death:
                raise Died
            puts[0] += 1

    s3_client.meta.events.register("before-parameter-build.s3.PutObject", die, "die")
    sim_clock.set(35)
    writer = ChangeWriter(s3_client, BUCKET, max_workers=1, clock=sim_clock.time)
    with pytest.raises(Died):
        writer.write(batch)
    s3_client.meta.events.unregister("before-parameter-build.s3.PutObject", unique_id="die")
    item_versions = s3_client.list_object_versions(Bucket=BUCKET, Prefix=items_prefix("", TABLE))
    assert len(item_versions["Versions"]) == 4 + items_before_death
    # Lambda retries the whole batch: journal and items again.
    sim_clock.set(40)
    result = ChangeWriter(s3_client, BUCKET, clock=sim_clock.time).write(batch)
    assert result.failed == []
    by_journal = compact(s3_client, sim_clock, as_of_s=50, run_s=60)
    assert by_journal.manifest.base == base.manifest.id
    assert by_journal.manifest.change_source == JOURNAL
    exact(s3_client, store, sim_clock, by_journal, 50)
    by_listing = compact(
        s3_client, sim_clock, as_of_s=51, run_s=61, config=CompactionConfig(listing=True)
    )
    exact(s3_client, store, sim_clock, by_listing, 51)
    assert (
        read_snapshot(s3_client, by_listing.manifest).items()
        == read_snapshot(s3_client, by_journal.manifest).items()
    )
