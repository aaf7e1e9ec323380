"""Reading the object layout: listing object versions and reading change documents."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import Change, decode_change, table_root
from compaction.s3errors import translate
from compaction.s3read import get_bytes


@dataclass(frozen=True)
class VersionRef:
    """One entry of ListObjectVersions: which version of which key, written when."""

    key: str
    version_id: str
    last_modified: dt.datetime
    size: int
    is_delete_marker: bool = False

    @property
    def where(self) -> str:
        return f"{self.key} (version {self.version_id})"


def iter_versions(s3: Any, bucket: str, prefix: str) -> Iterator[VersionRef]:
    """Every version and delete marker under `prefix`, following pagination."""
    paginator = s3.get_paginator("list_object_versions")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Versions", []):
                yield VersionRef(
                    key=entry["Key"],
                    version_id=entry.get("VersionId") or "null",
                    last_modified=entry["LastModified"],
                    size=int(entry.get("Size", 0)),
                )
            for entry in page.get("DeleteMarkers", []):
                yield VersionRef(
                    key=entry["Key"],
                    version_id=entry.get("VersionId") or "null",
                    last_modified=entry["LastModified"],
                    size=0,
                    is_delete_marker=True,
                )
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, prefix) from e


def key_versions(s3: Any, bucket: str, key: str) -> list[VersionRef]:
    """The versions of exactly `key` (a prefix listing also matches longer keys)."""
    return [ref for ref in iter_versions(s3, bucket, key) if ref.key == key]


def read_change(s3: Any, bucket: str, ref: VersionRef) -> Change:
    try:
        body = get_bytes(s3, bucket, ref.key, ref.version_id)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, ref.where) from e
    return decode_change(body, f"s3://{bucket}/{ref.where}")


def has_objects(s3: Any, bucket: str, folder: str) -> bool:
    """Whether any object is stored under `folder` (one LIST of one key)."""
    try:
        response = s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e
    return bool(response.get("KeyCount", 0))


def table_has_backup(s3: Any, bucket: str, prefix: str, table: str) -> bool:
    """Whether anything at all is stored under the table's folder."""
    return has_objects(s3, bucket, table_root(prefix, table))


def put_json(s3: Any, bucket: str, key: str, document: Any) -> None:
    """Write a small JSON document (reports, records, tombstones)."""
    body = json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
