"""Backup Lambda throughput: records per second through `handler` into S3, in three modes
run alternately (each in its own bucket): `items_only` (the Lambda before the change journal:
the journal write stubbed out, one PUT per record), `journal_and_items` (today's default: a
journal object per batch, then the item objects) and `journal_only` (BACKUP_JOURNAL_ONLY:
the journal object alone). PUTs and bytes sent per 1k records are counted per mode.

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


MODES = ("items_only", "journal_and_items", "journal_only")


def writer_for(mode: str, s3: Any, bucket: str) -> Any:
    """The handler's writer for a mode, on a counted S3 client."""
    from backup_lambda.writer import ChangeWriter

    writer = ChangeWriter(
        s3, bucket, "", journal_only=mode == "journal_only", claim_coverage=True, writer="lambda"
    )
    if mode == "items_only":
        journal = writer._journal  # the pre-journal Lambda, for comparison
        journal.write = lambda table, batch: ("", journal.now_us())  # type: ignore[method-assign]
    return writer


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
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    puts: dict[str, list[int]] = {m: [] for m in MODES}
    sent: dict[str, list[int]] = {m: [] for m in MODES}
    with s3_server(args.endpoint) as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        counter = RequestCounter()
        s3, _ = clients(endpoint, counter)
        buckets = {m: f"bench-{m.replace('_', '')[:12]}-{uuid.uuid4().hex[:6]}" for m in MODES}
        for bucket in buckets.values():
            make_bucket(s3, bucket)
        os.environ["BACKUP_BUCKET"] = buckets["journal_and_items"]
        from backup_lambda import handler  # after the environment is set

        # One writer per mode for the whole run, as one Lambda container keeps its writer:
        # its markers are written once, on its first batch.
        writers = {m: writer_for(m, s3, buckets[m]) for m in MODES}
        for _ in range(args.runs):
            for mode in MODES:  # alternating, so drift in the machine hits all alike
                handler._writer = writers[mode]
                batch_records = records(args.records)
                counter.reset()
                started = time.perf_counter()
                for i in range(0, len(batch_records), args.batch):
                    result = handler.handler(
                        {"Records": batch_records[i : i + args.batch]}, FakeLambdaContext()
                    )
                    assert not result["batchItemFailures"], result
                rates[mode].append(len(batch_records) / (time.perf_counter() - started))
                calls = counter.reset()
                puts[mode].append(calls["PutObject"])
                sent[mode].append(calls[RequestCounter.BYTES_SENT])
    per_k = 1000 / args.records
    modes = {
        m: {
            "records_per_second_median": round(statistics.median(rates[m]), 1),
            "samples": [round(r, 1) for r in rates[m]],
            "puts_per_1k_records": round(statistics.median(puts[m]) * per_k, 1),
            "bytes_sent_per_record": round(statistics.median(sent[m]) / args.records, 1),
        }
        for m in MODES
    }
    base, journal, only = (modes[m] for m in MODES)
    print(
        json.dumps(
            {
                "records": args.records,
                "batch_size": args.batch,
                **modes,
                "journal_and_items_over_items_only_rate": round(
                    journal["records_per_second_median"] / base["records_per_second_median"], 3
                ),
                "journal_only_over_items_only_rate": round(
                    only["records_per_second_median"] / base["records_per_second_median"], 3
                ),
                "journal_extra_puts_per_1k_records": round(
                    journal["puts_per_1k_records"] - base["puts_per_1k_records"], 1
                ),
                "journal_extra_bytes_per_change": round(
                    journal["bytes_sent_per_record"] - base["bytes_sent_per_record"], 1
                ),
                "journal_only_puts_over_items_only": round(
                    only["puts_per_1k_records"] / base["puts_per_1k_records"], 4
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
