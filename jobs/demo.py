"""`ddb-backup demo`: the pipeline end to end on an embedded local AWS stand-in."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from jobs.clients import AwsSettings, make_client
from jobs.standin import FakeLambdaContext, local_aws
from jobs.streams import lambda_event, read_stream

BUCKET = "ddb-backup-demo"
TABLE = "orders"
BATCH_SIZE = 100


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the pipeline on an embedded local AWS stand-in (no account needed)",
        description="Starts moto's server on loopback, creates a table with a stream and a "
        "versioned bucket, makes changes, runs the backup Lambda on the real stream "
        "records and shows an item's history.",
    )
    parser.set_defaults(run=run)


def _step(text: str) -> None:
    print(f"\n== {text}")


def _create_table(dynamodb: Any) -> str:
    response = dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "customer", "KeyType": "HASH"},
            {"AttributeName": "order_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "customer", "AttributeType": "S"},
            {"AttributeName": "order_id", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(response["TableDescription"]["LatestStreamArn"])


def _make_changes(dynamodb: Any) -> int:
    changes = 0
    for customer in ("alice", "bob", "carol"):
        for order in range(1, 4):
            dynamodb.put_item(
                TableName=TABLE,
                Item={
                    "customer": {"S": customer},
                    "order_id": {"N": str(order)},
                    "status": {"S": "placed"},
                    "total": {"N": "12345678901234567890.123456789012345678"},
                    "tags": {"SS": ["new", customer]},
                    "receipt": {"B": b"\x00\x01\xfe\xff"},
                    "lines": {"L": [{"M": {"sku": {"S": "A-1"}, "qty": {"N": "2"}}}]},
                },
            )
            changes += 1
    for status in ("paid", "shipped"):
        dynamodb.update_item(
            TableName=TABLE,
            Key={"customer": {"S": "alice"}, "order_id": {"N": "1"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )
        changes += 1
    dynamodb.delete_item(TableName=TABLE, Key={"customer": {"S": "bob"}, "order_id": {"N": "2"}})
    return changes + 1


def run(args: argparse.Namespace) -> int:
    from backup_lambda import handler as backup_handler
    from jobs.cli import main as cli_main

    with local_aws() as standin:
        print(f"local AWS stand-in (moto server) at {standin.endpoint_url}")
        settings = AwsSettings(endpoint_url=standin.endpoint_url)
        s3 = make_client("s3", settings)
        dynamodb = make_client("dynamodb", settings)
        streams = make_client("dynamodbstreams", settings)

        _step(f"versioned bucket s3://{BUCKET} and table {TABLE!r} with a stream")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        stream_arn = _create_table(dynamodb)
        print(f"stream {stream_arn}")

        _step("writes, updates and a delete on the table")
        print(f"{_make_changes(dynamodb)} item changes made")

        _step("the backup Lambda on the stream's records")
        os.environ["BACKUP_BUCKET"] = BUCKET
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        backup_handler._writer = None  # build its client against the stand-in
        records = list(read_stream(streams, stream_arn))
        started = time.perf_counter()
        failures = 0
        for start in range(0, len(records), BATCH_SIZE):
            batch = lambda_event(records[start : start + BATCH_SIZE])
            result = backup_handler.handler(batch, FakeLambdaContext())
            failures += len(result["batchItemFailures"])
        elapsed = time.perf_counter() - started
        print(f"{len(records)} stream records -> S3 in {elapsed:.2f}s, {failures} failures")

        _step("history of alice's order 1 (ddb-backup history)")
        common = ["--bucket", BUCKET, "--table", TABLE, "--endpoint-url", standin.endpoint_url]
        code = cli_main(["history", *common, "--key", '{"customer": "alice", "order_id": 1}'])
        _step("history of bob's deleted order 2")
        code = code or cli_main(["history", *common, "--key", '{"customer": "bob", "order_id": 2}'])
        print("\ndemo finished" if code == 0 and failures == 0 else "\ndemo FAILED")
        return code or (1 if failures else 0)
