"""Bootstrapping a backup: `import-export` of a DynamoDB full export against `backfill` of
the same items from a table (a Scan, then one change object per item), side by side.

    python -m bench.import_export [--items 100000] [--files 8] [--backfill-items N]
                                  [--workers 4] [--endpoint URL]

The export is written in DynamoDB's layout (AWSDynamoDB/<id>/ with manifests, MD5s and
gzip data files, one empty) to a source bucket; the table for the backfill is loaded into
DynamoDB (BENCH_DYNAMODB_ENDPOINT, else moto). Each measured run is its own process,
which reports its time, its request counts and its peak RSS (the high-water mark reset
after its imports, Linux clear_refs), so neither the data generation nor the other run
counts. `--backfill-items` (default: --items) lets the slower backfill run on fewer items;
items/s are then the comparable figure.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import random
import resource
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    PREFIX,
    TABLE,
    RequestCounter,
    clients,
    env_endpoint,
    item_for,
    make_bucket,
    s3_server,
)
from compaction.executor import ThreadUnitExecutor
from compaction.importexport import ExportImporter, ImportOptions
from compaction.manifest import KeyAttribute
from jobs.ops.backfill import Backfiller
from jobs.restore.ddbitems import to_client_item

SCHEMA = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))
EXPORTS = "exports"
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"


def write_export(s3: Any, bucket: str, items: int, files: int) -> float:
    """A full export of `items` items in DynamoDB's layout; returns its gzip bytes."""
    export_id = f"{int(time.time() * 1000) - 3_600_000:014d}-{uuid.uuid4().hex[:8]}"
    folder = f"{EXPORTS}/AWSDynamoDB/{export_id}/"
    random.seed(11)

    def one(index: int) -> dict[str, Any]:
        indexes = range(index, items, files) if index < files else range(0)
        text = "".join(
            json.dumps({"Item": item_for(i, 0)}, separators=(",", ":")) + "\n" for i in indexes
        )
        count = len(indexes)
        body = gzip.compress(text.encode(), 6)
        key = f"{folder}data/{uuid.uuid4().hex[:26]}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        digest = hashlib.md5(body).digest()  # noqa: S324 - the format's checksum
        return {
            "itemCount": count,
            "md5Checksum": base64.b64encode(digest).decode(),
            "etag": digest.hex(),
            "dataFileS3Key": key,
            "bytes": len(body),
        }

    with ThreadPoolExecutor(4) as pool:
        entries = list(pool.map(one, range(files + 1)))  # the last one is empty
    size = sum(e.pop("bytes") for e in entries)
    files_body = "".join(json.dumps(e) + "\n" for e in entries).encode()
    s3.put_object(Bucket=bucket, Key=folder + "manifest-files.json", Body=files_body)
    export_ms = int(export_id[:14])
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{TABLE_ARN}/export/{export_id}",
        "startTime": _iso(export_ms),
        "endTime": _iso(export_ms + 60_000),
        "tableArn": TABLE_ARN,
        "tableId": "00000000-0000-0000-0000-000000000000",
        "exportTime": _iso(export_ms),
        "s3Bucket": bucket,
        "s3Prefix": EXPORTS,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": folder + "manifest-files.json",
        "billedSizeBytes": 0,
        "itemCount": items,
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    }
    s3.put_object(
        Bucket=bucket, Key=folder + "manifest-summary.json", Body=json.dumps(summary).encode()
    )
    return size


def _iso(millis: int) -> str:
    moment = time.gmtime(millis // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{millis % 1000:03d}Z"


def load_table(dynamodb: Any, name: str, items: int) -> None:
    """The source table of the backfill (with the stream it insists on), holding the same
    items as the export."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    random.seed(11)
    batches = [
        [
            {"PutRequest": {"Item": to_client_item(item_for(i, 0))}}
            for i in range(s, min(s + 25, items))
        ]
        for s in range(0, items, 25)
    ]

    def write(batch: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {name: batch}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, batches))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def child(kind: str, endpoint: str, source: str, bucket: str, table: str, workers: int) -> None:
    """One measured run in this process: the import, or the backfill."""
    import pyarrow.parquet  # noqa: F401 - loaded before the baseline

    counter = RequestCounter()
    s3, dynamodb = clients(endpoint, counter, pool=64)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        baseline = _status_kb("VmRSS")
    except OSError:  # no /proc: the peak includes the imports
        baseline = 0
    started = time.perf_counter()
    if kind == "import":
        report = ExportImporter(
            s3,
            bucket,
            table,
            f"s3://{source}/{EXPORTS}/",
            prefix=PREFIX,
            options=ImportOptions(key_schema=SCHEMA),
            executor=ThreadUnitExecutor(workers),
        ).run()
        items = sum(o.items for o in report.exports)
    else:
        items = (
            Backfiller(s3, dynamodb, bucket, table, prefix=PREFIX, segments=workers, writers=32)
            .run()
            .items
        )
    seconds = time.perf_counter() - started
    try:
        peak = _status_kb("VmHWM")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    calls = counter.reset()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "items": items,
                "peak_kb": peak,
                "baseline_kb": baseline,
                "s3_puts": calls["PutObject"],
                "s3_gets": calls["GetObject"],
                "dynamodb_scans": calls["Scan"],
            }
        )
    )


def measure(
    kind: str, endpoint: str, source: str, bucket: str, table: str, workers: int
) -> dict[str, Any]:
    code = (
        "from bench.import_export import child; "
        f"child({kind!r}, {endpoint!r}, {source!r}, {bucket!r}, {table!r}, {workers})"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{kind} run failed: {result.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "items": data["items"],
        "seconds": round(data["seconds"], 2),
        "items_per_second": round(data["items"] / data["seconds"], 1),
        "peak_rss_mb": round(data["peak_kb"] / 1024, 1),
        "rss_growth_mb": round((data["peak_kb"] - data["baseline_kb"]) / 1024, 1),
        "s3_puts": data["s3_puts"],
        "s3_gets": data["s3_gets"],
        "dynamodb_scans": data["dynamodb_scans"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=8, help="data files of the export")
    parser.add_argument("--backfill-items", type=int, default=None)
    parser.add_argument("--workers", type=int, default=4, help="files/units or scan segments")
    parser.add_argument("--endpoint", default=env_endpoint())
    args = parser.parse_args()
    backfill_items = args.items if args.backfill_items is None else args.backfill_items
    with s3_server(args.endpoint) as endpoint:
        s3, dynamodb = clients(endpoint, RequestCounter())
        run = uuid.uuid4().hex[:8]
        source, target = f"exports-{run}", f"bench-{run}"
        s3.create_bucket(Bucket=source)
        make_bucket(s3, target)
        started = time.perf_counter()
        export_bytes = write_export(s3, source, args.items, args.files)
        export_seconds = time.perf_counter() - started
        imported = measure("import", endpoint, source, target, TABLE, args.workers)
        result: dict[str, Any] = {
            "items": args.items,
            "export": {
                "data_files": args.files + 1,
                "gzip_mb": round(export_bytes / 2**20, 1),
                "written_in_s": round(export_seconds, 1),
            },
            "import_export": imported,
        }
        if backfill_items:
            table = f"source-{run}"
            started = time.perf_counter()
            load_table(dynamodb, table, backfill_items)
            result["backfill_table_load_s"] = round(time.perf_counter() - started, 1)
            backfill = measure("backfill", endpoint, source, target, table, args.workers)
            result["backfill"] = backfill
            result["items_per_second_ratio"] = round(
                imported["items_per_second"] / backfill["items_per_second"], 1
            )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
