"""The backup bucket must keep object versions: every writer checks once per run.

An item object's versions are that item's history: without versioning each change
overwrites the last, and history, point-in-time restores and the listing of late changes
all lose what was overwritten. So the Lambda (at a cold start), backfill, import-export
and compaction refuse a bucket whose versioning is not Enabled (never enabled, or
Suspended), naming the one command that fixes it. A check that is itself denied
(AccessDenied: a role without s3:GetBucketVersioning) cannot tell: the caller says so and
goes on, rather than stopping the backup for want of a permission.

The answer (or the refusal) carries S3's `Date`: compaction.clock reads S3's clock from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import NotFoundError, RefusedError, StorageError

ENABLED = "Enabled"
UNKNOWN = "unknown"
_DENIED = {"AccessDenied", "403"}


class UnversionedBucketError(RefusedError):
    """The backup bucket does not keep object versions (versioning not Enabled)."""


def enable_command(bucket: str) -> str:
    return (
        f"aws s3api put-bucket-versioning --bucket {bucket} "
        "--versioning-configuration Status=Enabled"
    )


@dataclass(frozen=True)
class Versioning:
    """What GetBucketVersioning said: `status` is Enabled, Suspended, Off (never enabled)
    or unknown (the request was denied); `response` is its answer (or the refusal's)."""

    bucket: str
    status: str
    response: dict[str, Any]

    def warning(self) -> str | None:
        """One line when the check could not be made, else None."""
        if self.status != UNKNOWN:
            return None
        return (
            f"could not check that bucket {self.bucket!r} keeps object versions "
            "(GetBucketVersioning was denied: grant s3:GetBucketVersioning); going on"
        )


def read_versioning(s3: Any, bucket: str) -> Versioning:
    """One GetBucketVersioning request."""
    try:
        response = s3.get_bucket_versioning(Bucket=bucket)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in _DENIED:
            return Versioning(bucket, UNKNOWN, dict(e.response))
        if code == "NoSuchBucket":
            raise NotFoundError(f"bucket {bucket!r} does not exist") from e
        message = e.response.get("Error", {}).get("Message", "") or str(e)
        raise StorageError(
            f"S3 {code or 'error'} on GetBucketVersioning of s3://{bucket}: {message}"
        ) from e
    except BotoCoreError as e:
        raise StorageError(f"GetBucketVersioning of s3://{bucket} failed: {e}") from e
    return Versioning(bucket, response.get("Status") or "Off", response)


def require_versioning(s3: Any, bucket: str) -> Versioning:
    """read_versioning, refusing a bucket whose versioning is Suspended or Off."""
    versioning = read_versioning(s3, bucket)
    if versioning.status in {ENABLED, UNKNOWN}:
        return versioning
    state = "suspended" if versioning.status == "Suspended" else "not enabled"
    raise UnversionedBucketError(
        f"bucket {bucket!r} does not keep object versions (versioning is {state}): each "
        f"change would overwrite the last, and history and point-in-time restore depend on "
        f"them; enable it: {enable_command(bucket)}"
    )
