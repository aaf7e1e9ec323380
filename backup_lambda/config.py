"""The Lambda's configuration, read once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from backup_lambda.errors import ConfigError, InvalidValueError
from backup_lambda.layout import normalize_prefix

DEFAULT_MAX_WORKERS = 16


@dataclass(frozen=True)
class Config:
    bucket: str
    prefix: str = ""
    max_workers: int = DEFAULT_MAX_WORKERS
    journal_only: bool = False  # BACKUP_JOURNAL_ONLY: the journal alone, no item objects

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        bucket = env.get("BACKUP_BUCKET", "").strip()
        if not bucket:
            raise ConfigError("BACKUP_BUCKET is not set: the Lambda needs the backup bucket name")
        try:
            prefix = normalize_prefix(env.get("BACKUP_PREFIX", ""))
        except InvalidValueError as e:
            raise ConfigError(f"BACKUP_PREFIX: {e}") from e
        raw_workers = env.get("BACKUP_MAX_WORKERS", str(DEFAULT_MAX_WORKERS))
        try:
            workers = int(raw_workers)
        except ValueError:
            workers = 0
        if not 1 <= workers <= 256:
            raise ConfigError(f"BACKUP_MAX_WORKERS must be 1..256, got {raw_workers!r}")
        raw_mode = env.get("BACKUP_JOURNAL_ONLY", "").strip().lower()
        if raw_mode not in _BOOLEANS:
            raise ConfigError(f"BACKUP_JOURNAL_ONLY must be true or false, got {raw_mode!r}")
        return cls(
            bucket=bucket, prefix=prefix, max_workers=workers, journal_only=_BOOLEANS[raw_mode]
        )


_BOOLEANS = {
    "": False,
    "false": False,
    "0": False,
    "no": False,
    "true": True,
    "1": True,
    "yes": True,
}
