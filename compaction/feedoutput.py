"""The change feed's outputs: its lines (our JSON lines, or DynamoDB's incremental-export
lines) and its S3 layouts (docs/FORMAT.md, "Change feeds").

On S3, `jsonl` is one gzip object; `aws-incremental` is a DynamoDB incremental export
(view NEW_AND_OLD_IMAGES) under the folder: `AWSDynamoDB/data/<name>.json.gz`, then
`AWSDynamoDB/<export-id>/` with its manifests, `manifest-summary.json` last (a reader
takes a folder without it for an unfinished export), so `ddb-backup import-export` and
other readers of DynamoDB's exports read it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.journal import stamp
from backup_lambda.layout import format_time_us
from compaction.awsexport import EXPORT_DIR, NEW_AND_OLD_IMAGES, ExportChange, format_change_line
from compaction.changefeed import Feed, FeedChange
from compaction.exportmanifests import ExportedFile, documents_for, table_arn_for
from compaction.s3errors import translate
from compaction.snapshot_io import upload

JSONL = "jsonl"
AWS_INCREMENTAL = "aws-incremental"
FORMATS = (JSONL, AWS_INCREMENTAL)


def feed_line(item: FeedChange, fmt: str) -> str:
    change = item.change
    if fmt == AWS_INCREMENTAL:
        return format_change_line(
            ExportChange(change.keys, change.new_image, item.old_image, change.event_time_us)
        )
    return json.dumps(
        {
            "eventTime": format_time_us(change.event_time_us),
            "eventTimeMicros": change.event_time_us,
            "eventName": change.event_name,
            "ttlExpiry": change.ttl_expiry,
            "sequenceNumber": change.sequence_number,
            "eventID": change.event_id,
            "keys": change.keys,
            "newImage": change.new_image,
            "oldImage": item.old_image,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def write_lines(out: TextIO, changes: Iterable[FeedChange], fmt: str) -> int:
    count = 0
    for item in changes:
        out.write(feed_line(item, fmt) + "\n")
        count += 1
    return count


@dataclass(frozen=True)
class S3Output:
    uri: str  # what to read: the object (jsonl) or the export's folder (aws-incremental)
    keys: tuple[str, ...]  # every object written


def write_s3(s3: Any, bucket: str, folder: str, table: str, feed: Feed, fmt: str) -> S3Output:
    """The feed under `folder` ("" or ending with "/") of `bucket`."""
    with tempfile.TemporaryDirectory(prefix="ddb-backup-changes-") as tmp:
        path = Path(tmp) / "changes.gz"
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
            rows = write_lines(out, feed.changes, fmt)
        window = f"{stamp(feed.from_us)}-{stamp(feed.to_us)}"
        if fmt == JSONL:
            key = f"{folder}{table}-changes-{window}.jsonl.gz"
            upload(s3, bucket, path, key, "jsonl.gz", "", rows)
            return S3Output(f"s3://{bucket}/{key}", (key,))
        started = format_time_us(int(time.time() * 1_000_000))
        export_id = f"{feed.to_us // 1000:014d}-{uuid.uuid4().hex[:8]}"
        data_key = f"{folder}{EXPORT_DIR}/data/{export_id}-{uuid.uuid4().hex[:8]}.json.gz"
        data = upload(s3, bucket, path, data_key, "json.gz", "", rows)
    documents = documents_for(
        bucket,
        folder,
        export_id,
        table_arn_for(table),
        [ExportedFile(data_key, rows, data.md5 or "", _etag(s3, bucket, data_key))],
        {
            "startTime": started,
            "endTime": format_time_us(int(time.time() * 1_000_000)),
            "exportFromTime": format_time_us(feed.from_us),
            "exportToTime": format_time_us(feed.to_us),
        },
        output_view=NEW_AND_OLD_IMAGES,
    )
    for key, body in documents.bodies.items():  # in order: the summary last
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=_md5(body))
        except (ClientError, BotoCoreError) as e:
            raise translate(e, bucket, key) from e
    return S3Output(f"s3://{bucket}/{documents.folder}", (data_key, *documents.bodies))


def _md5(body: bytes) -> str:
    digest = hashlib.md5(body).digest()  # noqa: S324 - S3's Content-MD5, not security
    return base64.b64encode(digest).decode("ascii")


def _etag(s3: Any, bucket: str, key: str) -> str:
    try:
        etag: str = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
    return etag.strip('"')
