"""`ddb-backup demo`: the pipeline end to end on an embedded local AWS stand-in."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

from jobs.cli.clients import AwsSettings, make_client
from jobs.demo.standin import FakeLambdaContext, StandIn, local_aws
from jobs.demo.streams import StreamReader, lambda_event

BUCKET = "ddb-backup-demo"
TABLE = "orders"
BATCH_SIZE = 100
SAMPLE_SQL = "SELECT customer, order_id, status FROM items ORDER BY 1, 2"


def register(commands: Any, cli: Callable[[Sequence[str]], int]) -> None:
    """`cli` is the command line's own entry point: the demo runs its commands through it."""
    parser = commands.add_parser(
        "demo",
        help="run the pipeline on an embedded local AWS stand-in (no account needed)",
        description="Starts moto's server on loopback, creates a table with a stream and a "
        "versioned bucket, makes changes, runs the backup Lambda on the real stream "
        "records, then the commands (each echoed in full, ready to paste): backfill, "
        "compact, restore, query, drill, expire, history, tables and status.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the local stand-in running afterwards (prints its endpoint and the "
        "environment to use it from another shell) until Ctrl-C",
    )
    parser.set_defaults(run=functools.partial(run, cli=cli))


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
    )
    return str(response["TableDescription"]["TableName"])


def _enable_stream(dynamodb: Any) -> str:
    response = dynamodb.update_table(
        TableName=TABLE,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(response["TableDescription"]["LatestStreamArn"])


def _put_order(dynamodb: Any, customer: str, order: int, status: str) -> None:
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "customer": {"S": customer},
            "order_id": {"N": str(order)},
            "status": {"S": status},
            "total": {"N": "12345678901234567890.123456789012345678"},
            "tags": {"SS": ["new", customer]},
            "receipt": {"B": b"\x00\x01\xfe\xff"},
            "lines": {"L": [{"M": {"sku": {"S": "A-1"}, "qty": {"N": "2"}}}]},
        },
    )


def _set_status(dynamodb: Any, customer: str, order: int, status: str) -> None:
    dynamodb.update_item(
        TableName=TABLE,
        Key={"customer": {"S": customer}, "order_id": {"N": str(order)}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}},
    )


def _delete(dynamodb: Any, customer: str, order: int) -> None:
    dynamodb.delete_item(
        TableName=TABLE, Key={"customer": {"S": customer}, "order_id": {"N": str(order)}}
    )


def _first_changes(dynamodb: Any) -> int:
    for customer in ("alice", "bob", "carol"):
        for order in range(1, 4):
            _put_order(dynamodb, customer, order, "placed")
    _set_status(dynamodb, "alice", 1, "paid")
    _delete(dynamodb, "bob", 2)
    return 11


def _later_changes(dynamodb: Any) -> int:
    _set_status(dynamodb, "alice", 1, "shipped")
    _delete(dynamodb, "carol", 3)
    _put_order(dynamodb, "dave", 1, "placed")
    return 3


class _Pipeline:
    """The demo's moving parts: stream -> Lambda -> bucket, and the CLI on top."""

    def __init__(self, endpoint_url: str, cli: Callable[[Sequence[str]], int]) -> None:
        from backup_lambda import handler as backup_handler

        settings = AwsSettings(endpoint_url=endpoint_url)
        self.s3 = make_client("s3", settings)
        self.dynamodb = make_client("dynamodb", settings)
        self.streams = make_client("dynamodbstreams", settings)
        self.endpoint_url = endpoint_url
        self.handler = backup_handler
        self.failures = 0
        self._cli = cli

    def setup(self, existing_items: int = 0) -> StreamReader:
        """Bucket and table; `existing_items` are written before the stream is on."""
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        _create_table(self.dynamodb)
        for order in range(1, existing_items + 1):
            _put_order(self.dynamodb, "erin", order, "archived")
        stream_arn = _enable_stream(self.dynamodb)
        print(f"{existing_items} items written before the stream; stream {stream_arn}")
        os.environ["BACKUP_BUCKET"] = BUCKET
        self.handler._writer = None  # the handler builds its client against the stand-in
        return StreamReader(self.streams, stream_arn)

    def deliver(self, reader: StreamReader) -> None:
        records = reader.poll()
        started = time.perf_counter()
        for start in range(0, len(records), BATCH_SIZE):
            batch = lambda_event(records[start : start + BATCH_SIZE])
            result = self.handler.handler(batch, FakeLambdaContext())
            self.failures += len(result["batchItemFailures"])
        elapsed = time.perf_counter() - started
        print(f"{len(records)} stream records -> Lambda -> S3 in {elapsed:.2f}s")

    def show_newest_drill_report(self) -> None:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{TABLE}/v1/drills/")
        newest = max(listing.get("Contents", []), key=lambda o: o["Key"], default=None)
        if newest is not None:
            body = self.s3.get_object(Bucket=BUCKET, Key=newest["Key"])["Body"].read()
            print(f"s3://{BUCKET}/{newest['Key']}:\n{body.decode()}")

    def cli(self, command: str, *argv: str, table: bool = True) -> int:
        """Run a command with every flag given, and echo it as it can be pasted."""
        full = [command, "--bucket", BUCKET]
        full += ["--table", TABLE] if table else []
        full += ["--endpoint-url", self.endpoint_url, *argv]
        print(f"$ {shlex.join(['ddb-backup', *full])}")
        return self._cli(full)


def _now_after_writes() -> str:
    # LastModified has 1-second resolution and compaction allows 1 s of clock skew: let the
    # clock pass the last write by more, so the next incremental run need not re-read it.
    time.sleep(2.2)
    return str(int(time.time()))


def _wait_for_interrupt() -> None:
    while True:
        time.sleep(3600)


def run(
    args: argparse.Namespace,
    cli: Callable[[Sequence[str]], int],
    wait: Callable[[], None] = _wait_for_interrupt,
) -> int:
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    with local_aws() as standin:
        print(f"local AWS stand-in (moto server) at {standin.endpoint_url}")
        demo = _Pipeline(standin.endpoint_url, cli)
        code = walkthrough(demo)
        ok = code == 0 and demo.failures == 0
        print("\ndemo finished" if ok else "\ndemo FAILED")
        if getattr(args, "keep", False):
            _keep(standin, wait)
        return code or (0 if ok else 1)


def _keep(standin: StandIn, wait: Callable[[], None]) -> None:
    env = {**standin.env, "BACKUP_BUCKET": BUCKET}
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    tries = [
        "ddb-backup status",
        shlex.join(["ddb-backup", "query", "--table", TABLE, SAMPLE_SQL]),
        f"aws s3 ls --recursive s3://{BUCKET}/{TABLE}/v1/snapshots/",
    ]
    print(
        f"\nThe local stand-in keeps running at {standin.endpoint_url} until Ctrl-C. "
        f"In another shell:\n  export {exports}\n" + "".join(f"  {t}\n" for t in tries),
        end="",
        flush=True,
    )
    try:
        wait()
    except KeyboardInterrupt:
        print("\nstopping the local stand-in")


def walkthrough(demo: _Pipeline) -> int:
    """The pipeline step by step; the first failing command's exit status, else 0."""
    _step(f"versioned bucket s3://{BUCKET}; table {TABLE!r} with items, then its stream")
    reader = demo.setup(existing_items=2)

    _step("backfill: the items from before the stream, so the backup is complete")
    code = demo.cli("backfill")

    _step("changes on the table; the backup Lambda on the real stream records")
    print(f"{_first_changes(demo.dynamodb)} item changes made")
    demo.deliver(reader)

    _step("a full snapshot as of now")
    first = _now_after_writes()
    code = code or demo.cli("compact", "--as-of", first)

    _step("more changes, then an incremental snapshot (reads only what changed)")
    print(f"{_later_changes(demo.dynamodb)} item changes made")
    demo.deliver(reader)
    code = code or demo.cli("compact", "--as-of", _now_after_writes())
    code = code or demo.cli("snapshots")

    _step("restore the table as of the first snapshot into a new table, and verify it")
    code = code or demo.cli(
        "restore", "--to", "orders_restored", "--as-of", first, "--create-table", "--verify"
    )
    _step("bring the restored table to the latest state: only the differences are written")
    code = code or demo.cli("restore", "--to", "orders_restored", "--verify")

    _step("SQL over the newest snapshot, and over the state at the first snapshot's time")
    code = code or demo.cli(
        "query",
        "SELECT customer, count(*) AS orders, sum(total) AS total, "
        "list(status ORDER BY order_id) AS statuses FROM items GROUP BY customer ORDER BY 1",
    )
    code = code or demo.cli(
        "query",
        "--as-of",
        first,
        "--format",
        "jsonl",
        "SELECT customer, order_id, status, lines->>'$[0].sku' AS first_sku FROM items "
        "WHERE customer = 'alice' ORDER BY order_id",
    )

    _step("a restore drill: scratch table, verify, recovery point; its report in the bucket")
    code = code or demo.cli("drill", "--max-rpo", "3600", "--max-restore-seconds", "120")
    demo.show_newest_drill_report()

    _step("retention: what expire would remove, and the safe lifecycle rule")
    code = code or demo.cli("expire", "--keep-last", "1", "--dry-run")

    _step("the history of one item, and of a deleted one")
    code = code or demo.cli("history", "--key", '{"customer": "alice", "order_id": 1}')
    code = code or demo.cli("history", "--key", '{"customer": "bob", "order_id": 2}')

    _step("what the bucket backs up, and whether every backup is healthy")
    code = code or demo.cli("tables", table=False)
    return code or demo.cli("status", table=False)
