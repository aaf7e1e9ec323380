"""The drill checks that the drilled table's indexes and TTL are the source's."""

from __future__ import annotations

from jobs.ops.drill import Drill
from tests.jobs.restore.restore_fixtures import BUCKET, now_us
from tests.jobs.restore.settings_fixtures import (
    CREATE,
    Backend,
    moto_backend,  # noqa: F401 - fixture
    rich_source,
)


def _drill(b: Backend) -> Drill:
    return Drill(b.s3, b.dynamodb, BUCKET, "orders", clock=lambda: now_us() / 1e6)


def test_drill_checks_indexes_and_ttl(moto_backend: Backend) -> None:  # noqa: F811
    rich_source(moto_backend, "orders").compact()
    report = _drill(moto_backend).run()
    assert report.passed, report.failures
    assert report.settings_compared_with == "the source table"
    assert report.settings_checked == [
        "global index by_owner",
        "global index by_status",
        "local index by_created",
        "time to live",
    ]
    # The scratch table (created with the source's deletion protection left off) is gone.
    assert moto_backend.dynamodb.list_tables()["TableNames"] == ["orders"]


def test_drill_fails_when_the_source_has_an_index_the_backup_lacks(
    moto_backend: Backend,  # noqa: F811
) -> None:
    rich_source(moto_backend, "orders").compact()
    # After the last snapshot the source gains an index: the backup would not recreate it.
    moto_backend.dynamodb.update_table(
        TableName="orders",
        AttributeDefinitions=CREATE["AttributeDefinitions"],
        GlobalSecondaryIndexUpdates=[
            {
                "Create": {
                    "IndexName": "by_created_only",
                    "KeySchema": [{"AttributeName": "created", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                    "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                }
            }
        ],
    )
    moto_backend.dynamodb.update_time_to_live(
        TableName="orders", TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires"}
    )
    report = _drill(moto_backend).run()
    assert not report.passed
    assert report.failures == [
        "global index by_created_only: missing in the drilled table",
        "time to live: the source's is off, the drilled table's expires",
    ]


def test_drill_compares_with_the_recorded_settings_when_the_source_is_gone(
    moto_backend: Backend,  # noqa: F811
) -> None:
    rich_source(moto_backend, "orders").compact()
    moto_backend.dynamodb.update_table(TableName="orders", DeletionProtectionEnabled=False)
    moto_backend.dynamodb.delete_table(TableName="orders")
    report = _drill(moto_backend).run()
    assert report.passed, report.failures
    assert report.settings_compared_with == "the recorded settings"
    assert "time to live" in report.settings_checked
