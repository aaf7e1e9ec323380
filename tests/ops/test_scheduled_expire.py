"""The scheduled `expire` (deploy/template.yaml's ExpireFunction) on moto: retention of the
configured tables from the environment, a table that fails, bad settings."""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda.errors import ConfigError
from jobs.demo.standin import FakeLambdaContext
from jobs.ops.scheduled import ScheduledRunError
from jobs.ops.scheduled_expire import ExpireConfig, expire_handler
from tests.ops.helpers import (
    BUCKET,
    SEC,
    TABLE,
    ChangeLog,
    committed_ids,
    compact,
    item,
    whole_second_ago,
)


@pytest.fixture
def three(s3: Any, bucket: str) -> list[str]:
    """Three committed snapshots of `orders`, an hour ago."""
    log = ChangeLog(s3, bucket)
    t0 = whole_second_ago(3600)
    ids = []
    for i in range(3):
        log.put(item(f"item-{i}", v=i), t0 + i * 10 * SEC)
        ids.append(compact(s3, t0 + i * 10 * SEC + 5 * SEC).id)
    return ids


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    values = {"BACKUP_BUCKET": BUCKET, "BACKUP_TABLES": TABLE, "KEEP_LAST": "1", **env}
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_handler_expires_past_retention(
    s3: Any, three: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(monkeypatch, KEEP_LAST="2", KEEP_DAYS="0")
    result = expire_handler({}, FakeLambdaContext())
    (outcome,) = result["results"]
    assert (outcome["table"], outcome["status"], outcome["kept"]) == (TABLE, "expired", 2)
    assert outcome["expired"] == three[:1]
    assert outcome["noncurrent_days_needed"] >= 3
    assert committed_ids(s3) == three[1:]


def test_a_failing_table_fails_the_run_after_the_others(
    s3: Any, three: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings(monkeypatch, BACKUP_TABLES=f"no-such-table,{TABLE}")
    with pytest.raises(ScheduledRunError, match="expire failed for no-such-table"):
        expire_handler({}, FakeLambdaContext())
    assert committed_ids(s3) == three[-1:]  # `orders` was still expired


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KEEP_LAST": ""}, "KEEP_LAST"),
        ({"KEEP_LAST": "0"}, "KEEP_LAST must be at least 1"),
        ({"KEEP_DAYS": "-1"}, "KEEP_DAYS must be >= 0"),
        ({"GRACE_HOURS": "soon"}, "GRACE_HOURS"),
        ({"GRACE_HOURS": "0.5"}, "GRACE_HOURS must be at least 1, got 0.5"),
        ({"BACKUP_TABLES": ""}, "BACKUP_TABLES"),
    ],
)
def test_bad_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    base = {"BACKUP_BUCKET": BUCKET, "BACKUP_TABLES": TABLE, "KEEP_LAST": "3"}
    with pytest.raises(ConfigError, match=message):
        ExpireConfig.from_env({**base, **env})


def test_settings_from_the_environment() -> None:
    config = ExpireConfig.from_env(
        {
            "BACKUP_BUCKET": BUCKET,
            "BACKUP_TABLES": "a, b",
            "BACKUP_PREFIX": "prod",
            "KEEP_LAST": "24",
            "KEEP_DAYS": "35",
            "GRACE_HOURS": "",
        }
    )
    assert config == ExpireConfig(BUCKET, ("a", "b"), 24, "prod", 35.0, 24.0)
