"""`ddb-backup backfill`: copy the items that existed before the stream into the layout.

Why a backfilled image never overrides a newer stream change (docs/OPERATIONS.md): every
backfilled change carries the event time floor(start - skew) - 1 s, where `start` is
taken before the scan begins, and sequence number 0. A stream change that happened after
the scan started has an event time of at least floor(start - skew) (stream event times are
truncated to the second), so it orders after the backfill. A stream change ordered before
the backfill happened before the scan began, so the scanned image already includes it.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import BackupError, NotFoundError, StorageError
from backup_lambda.layout import Change, format_time_us, table_root
from backup_lambda.writer import ChangeWriter
from compaction.clock import BucketClock
from compaction.keyschema import describe_key_schema
from compaction.settingsstore import upload_settings
from compaction.state import DEFAULT_CLOCK_SKEW_US
from compaction.tablesettings import BackgroundCapture, capture_settings
from compaction.versions import put_json
from jobs.cli.args import positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json, note
from jobs.cli.progress import progress_for
from jobs.restore.ddbitems import from_client_item

BACKFILL_SEQUENCE = "0"
PAGE_ITEMS = 1000


class BackfillError(BackupError):
    """Some items could not be written; rerunning the backfill is safe."""


def backfill_event_time_us(start_us: int, skew_us: int = DEFAULT_CLOCK_SKEW_US) -> int:
    """floor(start - skew) - 1 s: before every stream event time the scan may have missed."""
    return ((start_us - skew_us) // 1_000_000 - 1) * 1_000_000


@dataclass
class BackfillReport:
    run_id: str
    event_time_us: int
    items: int = 0
    failed: int = 0
    seconds: float = 0.0


def stream_enabled(dynamodb: Any, table: str) -> bool:
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise NotFoundError(f"source table {table!r} does not exist") from None
        raise StorageError(f"DescribeTable {table!r}: {e}") from e
    spec = description.get("StreamSpecification") or {}
    return bool(spec.get("StreamEnabled")) and spec.get("StreamViewType") in {
        "NEW_IMAGE",
        "NEW_AND_OLD_IMAGES",
    }


class Backfiller:
    def __init__(
        self,
        s3: Any,
        dynamodb: Any,
        bucket: str,
        table: str,
        prefix: str = "",
        segments: int = 8,
        writers: int = 16,
        clock: Callable[[], float] = time.time,
        progress: Callable[[str, int, int], None] | None = None,
        autoscaling: Any | None = None,
        bucket_clock: BucketClock | None = None,
    ) -> None:
        """The table's settings are recorded beside the backfill's record (`autoscaling`,
        an Application Auto Scaling client, adds its scaling targets and policies). The
        scan's start is S3's now (`bucket_clock`; default: this bucket's, with `clock` as
        the host's), never the host's alone: a fast host would stamp the backfill after
        stream changes the scan missed."""
        self._s3 = s3
        self._autoscaling = autoscaling
        self._dynamodb = dynamodb
        self._bucket = bucket
        self._table = table
        self._prefix = prefix
        self._segments = segments
        self._writer = ChangeWriter(s3, bucket, prefix, max_workers=writers)
        self._clock = clock
        self._now = bucket_clock or BucketClock(s3, bucket, host=clock)
        self._progress = progress or (lambda phase, done, total: None)
        self._done = 0
        self._lock = threading.Lock()

    def run(self) -> BackfillReport:
        started = time.perf_counter()
        if not stream_enabled(self._dynamodb, self._table):
            raise BackfillError(
                f"table {self._table!r} has no stream with new images: enable the stream and "
                "deploy the backup Lambda first, or changes during the backfill are lost"
            )
        schema = describe_key_schema(self._dynamodb, self._table)
        if not schema:
            raise NotFoundError(f"cannot describe source table {self._table!r}")
        key_names = [k.name for k in schema]
        start_us = self._now.now_us()  # before the scan reads anything
        report = BackfillReport(uuid.uuid4().hex[:12], backfill_event_time_us(start_us))
        dynamodb, autoscaling, table = self._dynamodb, self._autoscaling, self._table
        capture = BackgroundCapture(
            lambda: capture_settings(dynamodb, table, autoscaling=autoscaling, clock=self._clock),
            table,
            clock=self._clock,
        )
        with ThreadPoolExecutor(self._segments, thread_name_prefix="backfill") as pool:
            for items, failed in pool.map(
                lambda s: self._segment(s, key_names, report), range(self._segments)
            ):
                report.items += items
                report.failed += failed
        self._record(report, capture)
        report.seconds = time.perf_counter() - started
        if report.failed:
            raise BackfillError(
                f"{report.failed} of {report.items} items not written; rerun the backfill "
                "(replays are harmless)"
            )
        return report

    def _segment(
        self, segment: int, key_names: list[str], report: BackfillReport
    ) -> tuple[int, int]:
        items = failed = 0
        paginator = self._dynamodb.get_paginator("scan")
        try:
            pages = paginator.paginate(
                TableName=self._table,
                Segment=segment,
                TotalSegments=self._segments,
                ConsistentRead=True,
                PaginationConfig={"PageSize": PAGE_ITEMS},
            )
            for page in pages:
                changes = [
                    self._change(from_client_item(raw), key_names, report)
                    for raw in page.get("Items", [])
                ]
                result = self._writer.write(changes)
                items += len(changes)
                failed += len(result.failed)
                with self._lock:
                    self._done += len(changes)
                    self._progress("backfill", self._done, 0)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"Scan of {self._table!r} failed: {e}") from e
        return items, failed

    def _change(self, item: dict[str, Any], key_names: list[str], report: BackfillReport) -> Change:
        keys = {name: item[name] for name in key_names}
        return Change(
            table=self._table,
            keys=keys,
            event_name="INSERT",
            event_id=f"backfill:{report.run_id}",
            sequence_number=BACKFILL_SEQUENCE,
            event_time_us=report.event_time_us,
            new_image=item,
        )

    def _record(self, report: BackfillReport, capture: BackgroundCapture) -> None:
        folder = f"{table_root(self._prefix, self._table)}v1/backfills/{report.run_id}"
        settings = upload_settings(self._s3, self._bucket, f"{folder}/", capture.result())
        key = f"{folder}.json"
        body = {
            "run_id": report.run_id,
            "event_time": format_time_us(report.event_time_us),
            "event_time_us": report.event_time_us,
            "items": report.items,
            "failed": report.failed,
            "settings": asdict(settings),  # pinned like a snapshot file
            "clock": asdict(self._now.reading),  # S3's Date and the host's clock at the start
        }
        put_json(self._s3, self._bucket, key, body)


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "backfill",
        parents=[common],
        help="copy the table's existing items into the backup (run once, after the stream)",
        description="Scans the source table (parallel segments, consistent reads) and writes "
        "each item as a change just before the scan began, so the backup is complete from "
        "day one and no backfilled image overrides a newer stream change.",
    )
    parser.add_argument("--segments", type=positive_int, default=8, help="parallel scan segments")
    parser.add_argument("--writers", type=positive_int, default=16, help="parallel S3 writes")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, max_pool_connections=args.writers + args.segments + 4)
    s3 = make_client("s3", settings)
    clock = BucketClock(s3, args.bucket)
    for warning in clock.warnings():  # reads S3's clock, refusing an unversioned bucket
        note(args, warning)
    progress = progress_for(args)
    report = Backfiller(
        s3,
        make_client("dynamodb", settings),
        args.bucket,
        args.table,
        prefix=args.prefix,
        segments=args.segments,
        writers=args.writers,
        progress=progress,
        autoscaling=make_client("application-autoscaling", settings),
        bucket_clock=clock,
    ).run()
    progress.close()
    if args.json:
        emit_json(
            {
                "table": args.table,
                "items": report.items,
                "event_time": format_time_us(report.event_time_us),
                "run_id": report.run_id,
                "seconds": round(report.seconds, 3),
            }
        )
    else:
        print(
            f"backfilled {report.items} items of {args.table} as changes at "
            f"{format_time_us(report.event_time_us)} in {report.seconds:.2f}s"
        )
    return 0
