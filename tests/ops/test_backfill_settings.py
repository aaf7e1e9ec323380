"""A backfill records the table's settings too: a restore before the first compaction
recreates the table's indexes."""

from __future__ import annotations

import json

from compaction.settingsstore import settings_at
from compaction.tablesettings import TABLE
from jobs.ops.backfill import Backfiller
from tests.jobs.restore.restore_fixtures import BUCKET
from tests.jobs.restore.settings_fixtures import (
    Backend,
    moto_backend,  # noqa: F401 - fixture
    rich_source,
)


def test_backfill_records_the_settings(moto_backend: Backend) -> None:  # noqa: F811
    source = rich_source(moto_backend, "orders")
    run = Backfiller(
        moto_backend.s3,
        moto_backend.dynamodb,
        BUCKET,
        "orders",
        segments=2,
        writers=4,
        autoscaling=moto_backend.autoscaling,
    ).run()
    record = json.loads(
        moto_backend.s3.get_object(Bucket=BUCKET, Key=f"orders/v1/backfills/{run.run_id}.json")[
            "Body"
        ].read()
    )
    assert record["settings"]["format"] == "table-settings"
    assert record["settings"]["version_id"]  # pinned

    settings = settings_at(moto_backend.s3, BUCKET, "", "orders", None)
    assert settings is not None
    assert settings.part(TABLE).source == f"backfill {run.run_id}"
    indexes = [i["IndexName"] for i in settings.value(TABLE)["GlobalSecondaryIndexes"]]
    assert indexes == ["by_owner", "by_status"]

    # No snapshot yet: the restore reads the object versions and the backfill's settings.
    report = source.restore("copy")
    assert report.snapshot is None
    table = moto_backend.dynamodb.describe_table(TableName="copy")["Table"]
    assert sorted(i["IndexName"] for i in table["GlobalSecondaryIndexes"]) == indexes
