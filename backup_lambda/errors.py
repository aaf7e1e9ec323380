"""The one error hierarchy of ddb-backup; every layer raises these."""

from __future__ import annotations


class BackupError(Exception):
    """Base of every error ddb-backup reports to a user as one line."""


class MalformedRecordError(BackupError):
    """A stream record cannot be backed up as it is (no keys, bad image, unknown event)."""


class InvalidValueError(BackupError):
    """A value is not valid DynamoDB JSON."""


class ConfigError(BackupError):
    """Configuration (environment or options) is missing or invalid."""


class StorageError(BackupError):
    """S3 refused or failed a request after retries."""


class NotFoundError(BackupError):
    """A bucket, table backup or item asked for does not exist."""


class UserInputError(BackupError):
    """A command-line argument is invalid (bad time, bad key JSON)."""


class CorruptVersionError(BackupError):
    """An object version in the backup bucket is not a valid change document."""


class ConflictError(BackupError):
    """Another run committed first (a conditional write failed)."""


class RefusedError(UserInputError):
    """A guard refused to act without the user saying so (the message names the flag)."""


class IntegrityError(BackupError):
    """Stored data does not match what was recorded about it (verification failed)."""


class CorruptSnapshotError(IntegrityError):
    """A snapshot file is missing, replaced, truncated or unreadable against its manifest."""
