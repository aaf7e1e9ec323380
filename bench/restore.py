"""Restore benchmark: from a snapshot (our way) against the version walk of earlier tools
(list every version, GET each chosen version, one item per BatchWriteItem).

    python -m bench.restore [--keys 2000] [--versions 3] [--runs 3] [--endpoint URL]

Both write into fresh tables on the same DynamoDB endpoint (the embedded moto server by
default) with the same number of writer threads; items/s and request counts are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backup_lambda.layout import decode_change, items_prefix
from bench.common import (
    PREFIX,
    TABLE,
    RequestCounter,
    Sequence,
    clients,
    env_endpoint,
    generate,
    make_bucket,
    s3_server,
    write_changes,
)
from compaction.compactor import Compactor
from compaction.versions import iter_versions
from jobs.restore.ddbitems import to_client_item
from jobs.restore.restorer import RestoreOptions, Restorer

WRITERS = 8
READERS = 32


def create_table(dynamodb: Any, name: str) -> None:
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
    )


def our_restore(
    s3: Any, dynamodb: Any, bucket: str, as_of: int, counter: RequestCounter
) -> dict[str, Any]:
    target = f"ours-{uuid.uuid4().hex[:6]}"
    create_table(dynamodb, target)
    counter.reset()
    started = time.perf_counter()
    report = Restorer(
        s3,
        dynamodb,
        bucket,
        TABLE,
        target,
        prefix=PREFIX,
        options=RestoreOptions(as_of_us=as_of, workers=WRITERS, read_concurrency=READERS),
        announce=lambda text: None,
    ).run()
    seconds = time.perf_counter() - started
    calls = counter.reset()
    return {
        "seconds": seconds,
        "items": report.state_items,
        "batch_write_calls": calls["BatchWriteItem"],
        "s3_gets": calls["GetObject"],
        "s3_lists": calls["ListObjectVersions"] + calls["ListObjectsV2"],
    }


def version_walk(
    s3: Any, dynamodb: Any, bucket: str, as_of: int, counter: RequestCounter
) -> dict[str, Any]:
    """What earlier tools do: newest version by LastModified <= T, one item per request."""
    target = f"walk-{uuid.uuid4().hex[:6]}"
    create_table(dynamodb, target)
    counter.reset()
    started = time.perf_counter()
    chosen: dict[str, Any] = {}
    for ref in iter_versions(s3, bucket, items_prefix(PREFIX, TABLE)):
        if ref.is_delete_marker or ref.last_modified.timestamp() * 1e6 > as_of:
            continue
        best = chosen.get(ref.key)
        if best is None or ref.last_modified > best.last_modified:
            chosen[ref.key] = ref

    def restore_one(ref: Any) -> None:
        body = s3.get_object(Bucket=bucket, Key=ref.key, VersionId=ref.version_id)["Body"].read()
        change = decode_change(body, ref.key)
        if change.new_image is not None:
            request = {"PutRequest": {"Item": to_client_item(change.new_image)}}
            dynamodb.batch_write_item(RequestItems={target: [request]})

    with ThreadPoolExecutor(READERS) as pool:
        list(pool.map(restore_one, chosen.values()))
    seconds = time.perf_counter() - started
    calls = counter.reset()
    return {
        "seconds": seconds,
        "items": len(chosen),
        "batch_write_calls": calls["BatchWriteItem"],
        "s3_gets": calls["GetObject"],
        "s3_lists": calls["ListObjectVersions"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--endpoint", default=env_endpoint())
    args = parser.parse_args()
    with s3_server(args.endpoint) as endpoint:
        counter = RequestCounter()
        s3, dynamodb = clients(endpoint, counter)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        make_bucket(s3, bucket)
        start = int(time.time() * 1_000_000) - 3600 * 1_000_000
        write_changes(
            s3, bucket, generate(range(args.keys), args.versions, start, 10**6, Sequence())
        )
        time.sleep(2.1)
        as_of = int(time.time() * 1_000_000)
        Compactor(s3, bucket, TABLE, prefix=PREFIX).run(as_of)
        ours, walk = [], []
        for _ in range(args.runs):  # side by side, alternating
            ours.append(our_restore(s3, dynamodb, bucket, as_of, counter))
            walk.append(version_walk(s3, dynamodb, bucket, as_of, counter))

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        median = statistics.median(r["seconds"] for r in runs)
        first = runs[0]
        return {
            "median_seconds": round(median, 3),
            "samples": [round(r["seconds"], 3) for r in runs],
            "items": first["items"],
            "items_per_second": round(first["items"] / median, 1),
            "batch_write_calls": first["batch_write_calls"],
            "s3_gets": first["s3_gets"],
            "s3_lists": first["s3_lists"],
        }

    mine, theirs = summary(ours), summary(walk)
    print(
        json.dumps(
            {
                "keys": args.keys,
                "versions": args.keys * args.versions,
                "snapshot_restore": mine,
                "version_walk": theirs,
                "speedup": round(theirs["median_seconds"] / mine["median_seconds"], 2),
                "batch_write_calls_vs_ceil_items_over_25": [
                    mine["batch_write_calls"],
                    math.ceil(mine["items"] / 25),
                ],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
