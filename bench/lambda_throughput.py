"""Backup Lambda throughput: records per second through `handler` into S3.

    python -m bench.lambda_throughput [--records 1000] [--batch 100] [--runs 5] [--endpoint URL]

Records are synthetic DynamoDB Streams records in Lambda's event shape (distinct keys, a
few changes per key); the S3 side is the embedded moto server unless --endpoint is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from typing import Any

from bench.common import RequestCounter, clients, env_endpoint, make_bucket, s3_server
from jobs.demo.standin import FakeLambdaContext

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/bench/stream/2026-11-28T00:00:00.000"


def records(count: int, changes_per_key: int = 3) -> list[dict[str, Any]]:
    now = time.time()
    out = []
    for n in range(count):
        key = {"pk": {"S": f"user#{n // changes_per_key:08d}"}}
        image = {**key, "n": {"N": str(n)}, "payload": {"S": "x" * 200}}
        out.append(
            {
                "eventID": uuid.uuid4().hex,
                "eventName": "INSERT" if n % changes_per_key == 0 else "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "eventSourceARN": ARN,
                "dynamodb": {
                    "ApproximateCreationDateTime": int(now),
                    "Keys": key,
                    "NewImage": image,
                    "SequenceNumber": str(10**20 + n),
                    "SizeBytes": 300,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--endpoint", default=env_endpoint())
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    with s3_server(args.endpoint) as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        s3, _ = clients(endpoint, RequestCounter())
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        make_bucket(s3, bucket)
        os.environ["BACKUP_BUCKET"] = bucket
        from backup_lambda import handler  # after the environment is set

        handler._writer = None
        rates = []
        for _ in range(args.runs):
            batch_records = records(args.records)
            started = time.perf_counter()
            for i in range(0, len(batch_records), args.batch):
                result = handler.handler(
                    {"Records": batch_records[i : i + args.batch]}, FakeLambdaContext()
                )
                assert not result["batchItemFailures"], result
            rates.append(len(batch_records) / (time.perf_counter() - started))
    print(
        json.dumps(
            {
                "records": args.records,
                "batch_size": args.batch,
                "records_per_second_median": round(statistics.median(rates), 1),
                "samples": [round(r, 1) for r in rates],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
