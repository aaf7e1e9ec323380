"""Turning botocore failures into the project's errors, at the storage edge."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import BackupError, NotFoundError, StorageError

_MISSING_BUCKET = {"NoSuchBucket"}


def translate(error: ClientError | BotoCoreError, bucket: str, what: str) -> BackupError:
    """One clear line for a failed S3 request about `what` in `bucket`."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _MISSING_BUCKET:
            return NotFoundError(f"bucket {bucket!r} does not exist")
        if code in {"AccessDenied", "403"}:
            return StorageError(f"access denied to s3://{bucket}/{what}")
        message = error.response.get("Error", {}).get("Message", "") or str(error)
        return StorageError(f"S3 {code or 'error'} on s3://{bucket}/{what}: {message}")
    return StorageError(f"S3 request for s3://{bucket}/{what} failed: {error}")
