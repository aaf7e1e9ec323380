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
        return cls(bucket=bucket, prefix=prefix, max_workers=workers)
