"""Scheduled compaction and backfill on a host whose clock runs 600 s ahead of S3's
(issue 13, findings 4 and 9): their times come from S3's clock (compaction.clock)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from compaction import catalog
from jobs.main import main
from jobs.ops.backfill import Backfiller
from jobs.ops.scheduled import ScheduleConfig, run_compactions
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    create_table,
    item,
)

FAST_S = 600
_TRUE_TIME = time.time


def now_us() -> int:
    """The true time (S3's, as moto keeps it)."""
    return int(_TRUE_TIME() * SEC)


@pytest.fixture
def fast_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's clock (time.time) 600 s ahead; moto's (S3's) stays true."""
    monkeypatch.setattr(time, "time", lambda: _TRUE_TIME() + FAST_S)


def test_scheduled_compaction_takes_its_as_of_from_s3s_clock(
    s3: Any, dynamodb: Any, bucket: str, fast_host: None, caplog: pytest.LogCaptureFixture
) -> None:
    orders = ChangeLog(s3, table=TABLE)
    orders.put(item("o-1", v=1), now_us() - 600 * SEC)
    before = now_us()
    (outcome,) = run_compactions(s3, dynamodb, ScheduleConfig(BUCKET, (TABLE,), settle_seconds=300))
    after = now_us()
    assert outcome["status"] == "compacted"
    (manifest,) = catalog.committed_snapshots(s3, BUCKET, "", TABLE)
    # S3's now minus the settle window, not the host's (600 s later)
    assert before - 301 * SEC <= manifest.as_of_us <= after - 300 * SEC
    assert manifest.listing_watermark_us <= after + SEC
    assert manifest.clock is not None
    assert manifest.clock.skew_us >= (FAST_S - 1) * SEC
    # ... and the run logged that the clocks disagree
    # (S3's Date is truncated to the second: the skew reads 600 to 601 s)
    assert re.search(r"host's clock is 60[01]\.\d s ahead of S3's", caplog.text)


def test_backfill_stamps_its_items_by_s3s_clock(
    s3: Any, dynamodb: Any, bucket: str, fast_host: None, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(
        dynamodb,
        TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    before = now_us()
    report = Backfiller(s3, dynamodb, bucket, TABLE, segments=1, writers=1, clock=time.time).run()
    after = now_us()
    # before the scan began by S3's clock: a stream change after it orders after the backfill
    assert before - 3 * SEC <= report.event_time_us < after
    # the CLI warns in one line and records both clocks beside the run
    code = main(["backfill", "--bucket", bucket, "--table", TABLE, "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.count("\n") == 1
    assert re.search(r"host's clock is 60[01]\.\d s ahead of S3's", captured.err)
    payload = json.loads(captured.out.strip().splitlines()[-1])
    record = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{TABLE}/v1/backfills/{payload['run_id']}.json")[
            "Body"
        ].read()
    )
    assert record["clock"]["source"] == "s3"
    assert record["clock"]["host_us"] - record["clock"]["s3_us"] >= (FAST_S - 1) * SEC
    assert record["event_time_us"] < now_us()
