"""Backfill records (`<prefix>/<table>/v1/backfills/<run>.json`, written by `ddb-backup
backfill` after its items): when a backfill's changes happened (their event time)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptSnapshotError
from backup_lambda.layout import LAYOUT_DIR, table_root
from compaction.s3errors import translate
from compaction.s3read import get_bytes


@dataclass(frozen=True)
class BackfillRecord:
    run_id: str
    event_time_us: int  # every backfilled change carries this event time
    items: int
    failed: int


def backfills_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/backfills/"


def backfill_records(s3: Any, bucket: str, prefix: str, table: str) -> list[BackfillRecord]:
    """Every finished backfill of the table, oldest event time first (one LIST, and a GET
    per backfill: a table has few)."""
    root = backfills_prefix(prefix, table)
    records = []
    try:
        paginator = s3.get_paginator("list_objects_v2")
        keys = [
            o["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/")
            for o in page.get("Contents", [])
            if o["Key"].endswith(".json")
        ]
        for key in keys:
            doc = json.loads(get_bytes(s3, bucket, key))
            records.append(
                BackfillRecord(
                    str(doc["run_id"]),
                    int(doc["event_time_us"]),
                    int(doc.get("items", 0)),
                    int(doc.get("failed", 0)),
                )
            )
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, root) from e
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptSnapshotError(f"s3://{bucket}/{root}: unreadable backfill record ({e})") from e
    return sorted(records, key=lambda r: r.event_time_us)


def not_before_backfill(
    s3: Any, bucket: str, prefix: str, table: str, as_of_us: int, now_us: int
) -> tuple[int, BackfillRecord | None]:
    """A default as-of raised to the newest backfill's event time when it lies before it
    (and that time is not in the future): the first snapshot after a backfill holds its
    items, although they were stamped within the settle window. Returns the as-of and the
    backfill that raised it (None: unchanged)."""
    records = backfill_records(s3, bucket, prefix, table)
    if records and as_of_us < records[-1].event_time_us <= now_us:
        return records[-1].event_time_us, records[-1]
    return as_of_us, None
