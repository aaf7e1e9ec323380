"""Config.from_env: the Lambda's environment, read once and validated."""

from __future__ import annotations

import pytest

from backup_lambda.config import DEFAULT_MAX_WORKERS, Config
from backup_lambda.errors import ConfigError
from backup_lambda.layout import MAX_PREFIX_BYTES


@pytest.mark.parametrize("env", [{}, {"BACKUP_BUCKET": ""}, {"BACKUP_BUCKET": "   "}])
def test_missing_bucket_is_a_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="BACKUP_BUCKET"):
        Config.from_env(env)


def test_defaults() -> None:
    assert Config.from_env({"BACKUP_BUCKET": " backups "}) == Config(
        bucket="backups", prefix="", max_workers=DEFAULT_MAX_WORKERS
    )


@pytest.mark.parametrize(
    ("raw", "prefix"),
    [("", ""), ("/", ""), ("a", "a"), ("a/b/", "a/b"), ("/a/b", "a/b"), ("//a/b//", "a/b")],
)
def test_prefix_is_normalized_to_a_folder(raw: str, prefix: str) -> None:
    assert Config.from_env({"BACKUP_BUCKET": "b", "BACKUP_PREFIX": raw}).prefix == prefix


def test_too_long_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BACKUP_PREFIX"):
        Config.from_env({"BACKUP_BUCKET": "b", "BACKUP_PREFIX": "p" * (MAX_PREFIX_BYTES + 1)})


@pytest.mark.parametrize("workers", ["0", "257", "-1", "many", ""])
def test_bad_worker_count_is_a_config_error(workers: str) -> None:
    with pytest.raises(ConfigError, match="BACKUP_MAX_WORKERS"):
        Config.from_env({"BACKUP_BUCKET": "b", "BACKUP_MAX_WORKERS": workers})


def test_worker_count() -> None:
    assert Config.from_env({"BACKUP_BUCKET": "b", "BACKUP_MAX_WORKERS": "4"}).max_workers == 4


def test_config_is_frozen() -> None:
    config = Config.from_env({"BACKUP_BUCKET": "b"})
    with pytest.raises(AttributeError):
        config.bucket = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "journal_only"),
    [("", False), ("false", False), ("FALSE", False), ("0", False), ("true", True), ("True", True)],
)
def test_journal_only_mode(raw: str, journal_only: bool) -> None:
    env = {"BACKUP_BUCKET": "b", "BACKUP_JOURNAL_ONLY": raw}
    assert Config.from_env(env).journal_only is journal_only


def test_bad_journal_only_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BACKUP_JOURNAL_ONLY"):
        Config.from_env({"BACKUP_BUCKET": "b", "BACKUP_JOURNAL_ONLY": "maybe"})
