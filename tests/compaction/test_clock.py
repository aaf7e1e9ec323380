"""S3's now (compaction.clock): the reading, and compaction with a host clock 600 s fast.

Issue 13, finding 4: with the compaction host 600 s ahead, `compact`'s default as-of and
its listing bound lay in S3's future, and changes written after the run were never listed
again by later compactions. Here S3's clock is the simulated one (moto's LastModified and
Date) and the host's runs 600 s ahead of it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from backup_lambda.layout import format_time_us
from compaction import catalog
from compaction.clock import ClockReading, parse_http_date
from jobs.main import main
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

S3_AT = 1_796_000_000 * SEC  # a whole second


# --- the reading (pure) ---------------------------------------------------------------


@pytest.mark.parametrize("host_offset_s", [0, 0.4, 1.0])
def test_a_host_clock_within_s3s_second_is_used_to_the_microsecond(host_offset_s: float) -> None:
    reading = ClockReading(S3_AT, S3_AT + round(host_offset_s * SEC))
    later = reading.host_us + 2_500_123
    assert reading.now_us(later) == later
    assert reading.skew_us == round(host_offset_s * SEC)
    assert reading.warning() is None


@pytest.mark.parametrize("host_offset_s", [600, 2.5, -0.2, -600])
def test_a_host_clock_outside_s3s_second_gives_way_to_s3s(host_offset_s: float) -> None:
    reading = ClockReading(S3_AT, S3_AT + round(host_offset_s * SEC))
    # S3's Date (the start of its second), advanced by the host's elapsed time
    assert reading.now_us(reading.host_us + 7 * SEC) == S3_AT + 7 * SEC


def test_the_skew_and_the_warning_say_how_far_and_which_way() -> None:
    ahead = ClockReading(S3_AT, S3_AT + 600 * SEC)
    assert ahead.skew_us == 600 * SEC
    assert ahead.warning() == (
        "this host's clock is 600.0 s ahead of S3's; times are taken from S3's clock "
        "(fix the host's time sync: NTP)"
    )
    behind = ClockReading(S3_AT, S3_AT - 3 * SEC)
    assert behind.skew_us == -3 * SEC
    assert "3.0 s behind S3's" in (behind.warning() or "")
    # within a second beyond the Date's resolution (whole seconds): no warning
    assert ClockReading(S3_AT, S3_AT + 2 * SEC).warning() is None
    assert ClockReading(S3_AT, S3_AT - SEC).warning() is None


def test_without_a_date_the_host_clock_is_used_and_said() -> None:
    reading = ClockReading(None, S3_AT + 600 * SEC, "host")
    assert reading.now_us(S3_AT + 601 * SEC) == S3_AT + 601 * SEC
    assert reading.skew_us == 0
    assert "no usable Date" in (reading.warning() or "")


def test_http_dates_parse_and_junk_does_not() -> None:
    assert parse_http_date("Sat, 05 Dec 2026 05:22:53 GMT") == 1_796_448_173 * SEC
    for junk in (None, "", "yesterday", "Sat, 05 Dec 2026 05:22:53"):
        assert parse_http_date(junk) is None


# --- compaction with a fast host (issue 13, finding 4) --------------------------------


@pytest.fixture
def fast_host(sim_clock: SimClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's clock (time.time, as the CLI and compaction.clock read it) 600 s ahead
    of S3's."""
    monkeypatch.setattr(time, "time", lambda: sim_clock.time() + 600)
    monkeypatch.setattr("compaction.clock.time", time, raising=False)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def put(store: Store, i: int, tag: str, event_s: float, write_s: float | None = None) -> None:
    keys = {"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}}
    store.put(keys, {"tag": {"S": tag}}, event_s=event_s, write_s=write_s)


def test_a_fast_host_loses_no_change_written_after_a_compaction(
    s3_client: Any,
    store: Store,
    sim_clock: SimClock,
    fast_host: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN changes written by t=2, S3's clock at t=1000, the host's at t=1600
    for i in range(3):
        put(store, i, "v1", event_s=i)
    sim_clock.set(1000)
    # WHEN compact runs with the default as-of (now minus the settle window, 300 s)
    compact = ("compact", "--bucket", BUCKET, "--table", TABLE, "--json")
    code, _, err = cli(capsys, *compact)
    assert code == 0, err
    # ... a change is written after it (event t=1005, written t=1010)
    put(store, 0, "v2", event_s=1005, write_s=1010)
    # ... and a later compaction runs, the host still fast
    sim_clock.set(2000)
    code, _, err = cli(capsys, *compact)
    assert code == 0, err
    # THEN the later snapshot holds that change: nothing written after a run is lost
    first, second = catalog.committed_snapshots(s3_client, BUCKET, "", TABLE)
    content = actual_content(read_snapshot(s3_client, second))
    assert content == expected_content(store, second.as_of_us)
    assert {"S": "v2"} in [image["tag"] for image, _, _ in content.values()]
    # ... because the as-of and the listing bound came from S3's clock, not the host's
    assert first.as_of_us == sim_clock.at(1000 - 300)
    assert sim_clock.at(1000) <= first.listing_watermark_us <= sim_clock.at(1001)
    assert second.as_of_us == sim_clock.at(2000 - 300)
    # ... the manifest records both clocks
    assert first.clock is not None
    assert (first.clock.s3_us, first.clock.source) == (sim_clock.at(1000), "s3")
    assert first.clock.host_us >= sim_clock.at(1600)
    # ... and each run said, in one line, that the clocks disagree
    assert err.count("host's clock is 600.0 s ahead of S3's") == 1, err


def test_an_as_of_later_than_s3s_now_is_refused_though_the_host_has_passed_it(
    s3_client: Any,
    store: Store,
    sim_clock: SimClock,
    fast_host: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put(store, 0, "v1", event_s=0)
    sim_clock.set(1000)
    as_of = format_time_us(sim_clock.at(1300))  # the host's past, S3's future
    code, _, err = cli(
        capsys, "compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", as_of, "--quiet"
    )
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith(f"ddb-backup: error: --as-of {as_of} is later than S3's clock")
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == []
