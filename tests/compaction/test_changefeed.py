"""The change feed (`ddb-backup changes`): each change of the window once, in event-time
order, with its image before, the same from the journal and from the item listing, and
in DynamoDB's incremental-export format that our strict reader reads back."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from backup_lambda.layout import format_time_us, key_hash
from compaction.awsexport import (
    DataFileReader,
    ExportChange,
    discover,
    format_change_line,
    parse_change_line,
    read_files,
)
from compaction.changefeed import read_feed
from compaction.journal import JOURNAL, LISTING
from jobs.main import main
from tests.compaction.helpers import BESIDE, BUCKET, ITEMS, MODES, ONLY, TABLE, SimClock, Store
from tests.compaction.helpers import compact as run_compaction

Cli = Callable[..., tuple[int, str, str]]
FROM_S, TO_S = 10, 30


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], moto_aws: None) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def key(i: int) -> Item:
    return {"pk": {"S": f"user#{i}"}, "sk": {"N": str(i % 2)}}


def v(tag: str) -> Item:
    return {"tag": {"S": tag}}


def workload(store: Store, clock: SimClock, *, snapshot: bool) -> None:
    """Changes before, in, at the edges of and after the window (10, 30]; replays, a stale
    replay, a late change from before the window, a late change inside it, same-second
    changes whose sequence numbers order them."""
    store.put(key(0), v("a1"), event_s=1)
    store.put(key(1), v("b1"), event_s=1)
    store.put(key(2), v("c1"), event_s=2)
    if snapshot:
        run_compaction(store.s3, clock, as_of_s=4, run_s=5)
    store.put(key(0), v("a-early"), event_s=8, name="MODIFY")
    store.put(key(2), v("c-at-from"), event_s=FROM_S, name="MODIFY")  # not in (10, 30]
    a2 = store.put(key(0), v("a2"), event_s=12, name="MODIFY")
    store.put(key(1), v("b2"), event_s=13, name="MODIFY")
    store.put(key(1), v("b3"), event_s=13, name="MODIFY")  # same second, higher sequence
    store.put(key(0), v("a0"), event_s=9, write_s=14, name="MODIFY")  # late, before 10
    store.put(key(1), None, event_s=15)
    store.put(key(3), v("d1"), event_s=16)
    store.write(a2, 20)  # a replay
    store.write(store.changes[0], 21)  # a stale replay of a1: before the window
    store.put(key(3), v("d2"), event_s=TO_S, name="MODIFY")  # at the end: in
    store.put(key(3), v("d3"), event_s=TO_S + 1, name="MODIFY")  # after: out
    store.put(key(2), v("c2"), event_s=25, write_s=3 * 3600, name="MODIFY")  # 3 h late


def oracle(store: Store, from_us: int, to_us: int, last: bool) -> list[tuple[Any, ...]]:
    """(sequence, event time, old image, new image) per change, from DESIGN.md's rules."""
    before = {d: c.new_image for d, c in store.expected(from_us).items()}
    window = {
        (key_hash(c.keys), *c.order): c for c in store.changes if from_us < c.event_time_us <= to_us
    }
    ordered = sorted(window.values(), key=lambda c: (*c.order, key_hash(c.keys)))
    if last:
        final = {key_hash(c.keys): c for c in ordered}
        ordered = sorted(final.values(), key=lambda c: (*c.order, key_hash(c.keys)))
    rows = []
    image = dict(before)
    for c in ordered:
        digest = key_hash(c.keys)
        rows.append((c.sequence_number, c.event_time_us, image.get(digest), c.new_image))
        if not last:
            image[digest] = c.new_image
    return rows


def feed_rows(feed: Any) -> list[tuple[Any, ...]]:
    return [
        (f.change.sequence_number, f.change.event_time_us, f.old_image, f.new_image)
        for f in feed.changes
    ]


@pytest.mark.parametrize("store", MODES, indirect=True)
@pytest.mark.parametrize("snapshot", [False, True], ids=["no-base", "base"])
@pytest.mark.parametrize("last", [False, True], ids=["all", "last-per-item"])
def test_the_feed_is_every_change_once_in_order_with_its_image_before(
    s3_client: Any, store: Store, sim_clock: SimClock, snapshot: bool, last: bool
) -> None:
    # GIVEN a workload with replays, late changes and same-second changes
    workload(store, sim_clock, snapshot=snapshot)
    # WHEN the feed of (10, 30] is read
    start, end = sim_clock.at(FROM_S), sim_clock.at(TO_S)
    feed = read_feed(s3_client, BUCKET, "", TABLE, start, end, last_per_item=last)
    # THEN it is the oracle's: each change once, in order, old images from the state at 10
    assert feed_rows(feed) == oracle(store, start, end, last)
    assert feed.source.kind == (LISTING if store.mode == ITEMS else JOURNAL)
    assert feed.copies_removed >= 1  # the replay of a2 was read and dropped
    assert feed.items == len({0, 1, 2, 3})  # key 2 by its change written 3 h late
    assert (feed.base is not None) == snapshot


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_journal_and_listing_give_the_same_output(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    workload(store, sim_clock, snapshot=True)
    window = [
        "--from",
        format_time_us(sim_clock.at(FROM_S)),
        "--to",
        format_time_us(sim_clock.at(TO_S)),
    ]
    base = ["changes", "--bucket", BUCKET, "--table", TABLE, *window]
    code, by_journal, err_journal = cli(*base)
    assert code == 0
    assert "changes from the journal" in err_journal
    code, by_listing, err_listing = cli(*base, "--listing")
    assert code == 0
    assert "by listing item versions" in err_listing
    assert by_journal == by_listing
    lines = [json.loads(line) for line in by_journal.splitlines()]
    expected = oracle(store, sim_clock.at(FROM_S), sim_clock.at(TO_S), last=False)
    assert [(x["sequenceNumber"], x["oldImage"], x["newImage"]) for x in lines] == [
        (sequence, old, new) for sequence, _, old, new in expected
    ]
    # the late change at 9 (written at 14) is the image before; the one at 10 is not in
    assert lines[0]["oldImage"] == {**v("a0"), **key(0)}
    (c2,) = [x for x in lines if x["keys"] == key(2)]
    assert c2["oldImage"] == {**v("c-at-from"), **key(2)}
    assert lines[0]["newImage"] == {**v("a2"), **key(0)}
    times = [line["eventTimeMicros"] for line in lines]
    assert times == sorted(times)


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_json_summary_says_where_the_changes_came_from(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli, tmp_path: Path
) -> None:
    workload(store, sim_clock, snapshot=False)
    out = tmp_path / "feed.jsonl.gz"
    window = ["--from", str(sim_clock.at(FROM_S) / 1e6), "--to", str(sim_clock.at(TO_S) / 1e6)]
    for extra, source in (([], JOURNAL), (["--listing"], LISTING)):
        code, stdout, _ = cli(
            "changes",
            "--bucket",
            BUCKET,
            "--table",
            TABLE,
            *window,
            "--out",
            str(out),
            "--json",
            *extra,
        )
        assert code == 0
        summary = json.loads(stdout.splitlines()[-1])
        assert len(stdout.splitlines()) == 1
        assert summary["change_source"] == source
        assert summary["changes"] == len(
            oracle(store, sim_clock.at(FROM_S), sim_clock.at(TO_S), False)
        )
        with gzip.open(out, "rt", encoding="utf-8") as handle:
            assert len(handle.read().splitlines()) == summary["changes"]


@pytest.mark.parametrize("store", [ONLY], indirect=True)
def test_aws_incremental_export_on_s3_reads_back_with_the_strict_reader(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    # GIVEN a journal-only table (no item objects at all)
    workload(store, sim_clock, snapshot=True)
    start, end = sim_clock.at(FROM_S), sim_clock.at(TO_S)
    # WHEN the feed is written as a DynamoDB incremental export
    code, _, err = cli(
        "changes",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--from",
        format_time_us(start),
        "--to",
        format_time_us(end),
        "--format",
        "aws-incremental",
        "--last-per-item",
        "--out",
        f"s3://{BUCKET}/exports/feed/",
    )
    assert code == 0, err
    # THEN DynamoDB's export reader finds one finished incremental export whose lines,
    # checked against its manifests (MD5, counts), are each item's last change
    (summary,) = discover(s3_client, BUCKET, "exports/feed/").summaries
    assert summary.incremental
    assert summary.output_view == "NEW_AND_OLD_IMAGES"
    assert (summary.from_us, summary.to_us) == (start, end)
    lines = [
        parse_change_line(raw, f"line {number}")
        for data_file in read_files(s3_client, summary)
        for number, raw in DataFileReader(s3_client, BUCKET, data_file)
    ]
    expected = oracle(store, start, end, last=True)
    assert [(c.write_us, c.old_image, c.new_image) for c in lines] == [
        (when, old, new) for _, when, old, new in expected
    ]
    assert summary.item_count == len(expected)


@pytest.mark.parametrize("store", [BESIDE], indirect=True)
def test_aws_incremental_lines_to_a_file_parse_strictly(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli, tmp_path: Path
) -> None:
    workload(store, sim_clock, snapshot=False)
    out = tmp_path / "feed.json"
    start, end = sim_clock.at(FROM_S), sim_clock.at(TO_S)
    code, _, err = cli(
        "changes",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--from",
        format_time_us(start),
        "--to",
        format_time_us(end),
        "--format",
        "aws-incremental",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "written to" in err
    lines = [parse_change_line(raw.encode(), "line") for raw in out.read_text().splitlines()]
    expected = oracle(store, start, end, last=False)
    assert [(c.write_us, c.old_image, c.new_image) for c in lines] == [
        (when, old, new) for _, when, old, new in expected
    ]
    deletes = [c for c in lines if c.new_image is None]
    assert len(deletes) == 1
    assert deletes[0].keys == key(1)


def test_change_line_round_trips() -> None:
    change = ExportChange(key(1), None, {**key(1), **v("x")}, 17)
    text = format_change_line(change)
    assert "NewImage" not in text
    assert parse_change_line(text.encode(), "line") == change


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        (["--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"], 2, "not after"),
        (["--from", "2026-01-01T00:00:00Z", "--json"], 2, "--out"),
        (
            ["--from", "2026-01-01T00:00:00Z", "--format", "aws-incremental", "--out", "s3://b/x/"],
            2,
            "--last-per-item",
        ),
        (["--from", "2026-01-01T00:00:00Z", "--out", "s3:///x/"], 2, "expected s3://"),
        (["--from", "2026-01-01T00:00:00Z", "--table", "nope"], 3, "nope"),
    ],
)
def test_bad_requests_are_one_line_errors(
    store: Store, cli: Cli, extra: list[str], code: int, text: str
) -> None:
    store.put(key(0), v("a"), event_s=1)
    args = ["changes", "--bucket", BUCKET, "--table", TABLE, *extra]
    got, out, err = cli(*args)
    assert got == code
    assert err.count("\n") == 1
    assert text in err
    assert "Traceback" not in out + err
