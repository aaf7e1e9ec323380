"""The whole pipeline against a real S3 server: Ceph's RADOS Gateway (RGW) for S3, moto's
server for DynamoDB and its stream (RGW has no DynamoDB).

Start RGW with `scripts/rgw.sh up` and export what it prints, or run `make test-rgw`
(which does both and stops RGW afterwards). Without RGW_ENDPOINT these tests are skipped;
the default test run deselects them (`-m "not rgw"`).

The flow: a moto table with a stream; item changes of every DynamoDB type (binary, sets,
38-digit numbers, nesting), updates and deletes; the real stream records delivered to the
backup Lambda, which writes object versions to a versioned bucket on RGW; `ddb-backup
compact` (full, then incremental); `restore --create-table --verify` into new moto tables
(the latest state and a point in time); `query` (DuckDB over pyarrow's S3 filesystem on
RGW, and the --as-of path); `history` and `snapshots`.
"""

from __future__ import annotations

import base64
import contextlib
import decimal
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from backup_lambda import handler as backup_handler
from jobs.demo.standin import FakeLambdaContext
from jobs.demo.streams import StreamReader, lambda_event
from jobs.main import main as cli_main

pytestmark = pytest.mark.rgw

REGION = "us-east-1"
BATCH_SIZE = 100


@dataclass(frozen=True)
class Rgw:
    endpoint: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="module")
def rgw() -> Rgw:
    """RGW's endpoint and keys from the environment (read before the per-test fake env)."""
    endpoint = os.environ.get("RGW_ENDPOINT")
    if not endpoint:
        pytest.skip(
            'RGW_ENDPOINT is not set: run `make test-rgw`, or `eval "$(scripts/rgw.sh up)"` '
            "and then `pytest -m rgw tests/integration`"
        )
    access = os.environ.get("RGW_ACCESS_KEY") or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("RGW_SECRET_KEY") or os.environ.get("AWS_SECRET_ACCESS_KEY")
    assert access, "RGW_ENDPOINT is set but neither RGW_ACCESS_KEY nor AWS_ACCESS_KEY_ID is"
    assert secret, "RGW_ENDPOINT is set but neither RGW_SECRET_KEY nor AWS_SECRET_ACCESS_KEY is"
    return Rgw(endpoint.rstrip("/"), access, secret)


@pytest.fixture(scope="module")
def moto_endpoint(rgw: Rgw) -> Iterator[str]:
    """moto's server on loopback, for DynamoDB and DynamoDB Streams only."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Split:
    """Clients of the split setup: S3 on RGW, DynamoDB (+ Streams) on moto."""

    rgw: Rgw
    moto: str
    s3: Any
    dynamodb: Any
    streams: Any
    bucket: str


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch, rgw: Rgw, moto_endpoint: str) -> Split:
    """boto3's standard settings point S3 at RGW and DynamoDB at moto, for every client
    the code under test builds (the Lambda's, the CLI's, pyarrow's S3 filesystem)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", rgw.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rgw.access_key)  # moto accepts any keys
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rgw.secret_key)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # The shared test session carries fake keys; the Lambda's boto3.client() must use ours.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(backup_handler, "_writer", None)
    session = boto3.session.Session(region_name=REGION)
    s3 = session.client("s3")
    dynamodb = session.client("dynamodb")
    assert s3.meta.endpoint_url == rgw.endpoint
    assert dynamodb.meta.endpoint_url == moto_endpoint
    bucket = f"ddb-backup-it-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv("BACKUP_BUCKET", bucket)
    return Split(rgw, moto_endpoint, s3, dynamodb, session.client("dynamodbstreams"), bucket)


# --- items of every type -------------------------------------------------------------------

N38 = "12345678901234567890123456789012345678"
N38_NEG = "-98765432109876543210987654321098765432"
N38_FRACTION = "0.12345678901234567890123456789012345678"


def key(pk: str, sk: str | int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def every_type(pk: str, sk: str | int, version: int) -> dict[str, Any]:
    return {
        **key(pk, sk),
        "s": {"S": f'ü ✓ "quoted", comma\nnewline v{version}'},
        "empty": {"S": ""},
        "n38": {"N": N38},
        "n38_neg": {"N": N38_NEG},
        "n38_fraction": {"N": N38_FRACTION},
        "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
        "tiny": {"N": "1E-130"},
        "version": {"N": str(version)},
        "b": {"B": bytes([0, 1, 254, 255, version % 256])},
        "b_empty_ish": {"B": b"\x00"},
        "bs": {"BS": [b"\x00", b"\xff\xfe", bytes([version % 256, 7])]},
        "ss": {"SS": ["x", "y", f"v{version}"]},
        "ns": {"NS": ["1", "-2.5", N38]},
        "yes": {"BOOL": True},
        "no": {"BOOL": False},
        "nothing": {"NULL": True},
        "l": {"L": [{"S": "x"}, {"N": "1"}, {"B": b"\x01"}, {"M": {"k": {"BOOL": False}}}]},
        "empty_l": {"L": []},
        "m": {
            "M": {
                "nested": {"M": {"deep": {"L": [{"NULL": True}, {"SS": ["a"]}]}}},
                "n": {"N": "-0.5"},
                "odd name-with.dots": {"S": "ok"},
            }
        },
        "empty_m": {"M": {}},
        "order-total": {"N": f"{version}.99"},
    }


def simple(pk: str, sk: str | int, status: str) -> dict[str, Any]:
    return {**key(pk, sk), "status": {"S": status}, "total": {"N": f"{len(status)}.25"}}


@dataclass
class Table:
    """A moto table with a stream, the Lambda on its stream, and what each key went through."""

    split: Split
    name: str
    reader: StreamReader
    events: dict[str, list[str]] = field(default_factory=dict)
    delivered: int = 0

    def _note(self, item_key: dict[str, Any], event: str) -> None:
        self.events.setdefault(json.dumps(item_key, sort_keys=True), []).append(event)

    def put(self, item: dict[str, Any]) -> None:
        item_key = {"pk": item["pk"], "sk": item["sk"]}
        existed = "Item" in self.split.dynamodb.get_item(TableName=self.name, Key=item_key)
        self.split.dynamodb.put_item(TableName=self.name, Item=item)
        self._note(item_key, "MODIFY" if existed else "INSERT")

    def update(self, item_key: dict[str, Any], expression: str, **values: Any) -> None:
        """`expression` names attributes #name and values :name (given as keywords)."""
        request: dict[str, Any] = {
            "ExpressionAttributeNames": {f"#{n}": n for n in re.findall(r"#(\w+)", expression)}
        }
        if values:
            request["ExpressionAttributeValues"] = {f":{n}": v for n, v in values.items()}
        self.split.dynamodb.update_item(
            TableName=self.name, Key=item_key, UpdateExpression=expression, **request
        )
        self._note(item_key, "MODIFY")

    def delete(self, item_key: dict[str, Any]) -> None:
        self.split.dynamodb.delete_item(TableName=self.name, Key=item_key)
        self._note(item_key, "REMOVE")

    def deliver(self) -> int:
        """The stream's new records, through the backup Lambda in batches, as Lambda would."""
        records = self.reader.poll()
        for start in range(0, len(records), BATCH_SIZE):
            result = backup_handler.handler(
                lambda_event(records[start : start + BATCH_SIZE]), FakeLambdaContext()
            )
            assert result["batchItemFailures"] == [], result
        self.delivered += len(records)
        return len(records)


def create_table(split: Split, name: str) -> Table:
    response = split.dynamodb.create_table(
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
    arn = response["TableDescription"]["LatestStreamArn"]
    return Table(split, name, StreamReader(split.streams, arn))


# --- comparing items exactly ---------------------------------------------------------------


def plain(value: Any) -> Any:
    """A DynamoDB JSON value with bytes as base64 and sets sorted: one spelling per value."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        out = {}
        for tag, inner in value.items():
            if tag in {"SS", "NS", "BS"}:
                out[tag] = sorted(plain(v) for v in inner)
            else:
                out[tag] = plain(inner)
        return out
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def canonical(items: list[dict[str, Any]]) -> dict[str, str]:
    """Items keyed by their key, each as canonical JSON (exact strings, nothing parsed)."""
    out = {}
    for item in items:
        text = json.dumps(plain(item), sort_keys=True, ensure_ascii=False)
        item_key = json.dumps(plain({"pk": item["pk"], "sk": item["sk"]}), sort_keys=True)
        assert item_key not in out
        out[item_key] = text
    return out


def scan(dynamodb: Any, table: str) -> dict[str, str]:
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items += page["Items"]
    return canonical(items)


# --- the command line ----------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], split: Split, table: str, *argv: str) -> str:
    """`ddb-backup <argv>` in-process; asserts exit 0 and no error; returns stdout."""
    capsys.readouterr()
    code = cli_main([argv[0], "--bucket", split.bucket, "--table", table, *argv[1:]])
    out, err = capsys.readouterr()
    assert code == 0, f"ddb-backup {' '.join(argv)} exited {code}: {err}"
    assert "error" not in err, err
    return out


def cli_json(capsys: pytest.CaptureFixture[str], split: Split, table: str, *argv: str) -> Any:
    out = cli(capsys, split, table, *argv, "--json")
    return json.loads(out.splitlines()[-1])


def settled_time() -> int:
    """A snapshot time after everything written so far, and before anything written next.

    Far enough after the writes (more than LastModified's assumed resolution plus the
    allowed clock skew, 2 s) that the next incremental run need not re-read them."""
    time.sleep(3.2)
    as_of = int(time.time())
    time.sleep(1.5)
    return as_of


# --- the pipeline --------------------------------------------------------------------------


def first_changes(t: Table) -> None:
    for sk in range(8):
        t.put(every_type("typed", sk, version=0))
    for sk in (N38, N38_NEG, "-1.5", "0", "1E+100"):
        t.put(every_type("numkeys", sk, version=0))
    for sk in range(40):
        t.put(simple("plain", sk, "placed"))
    t.put(every_type("typed", 0, version=1))  # a whole-item replace
    t.update(key("typed", 1), "SET #s = :s, #version = :v", s={"S": "updated"}, v={"N": "1"})
    t.update(key("typed", 2), "ADD #ss :ss", ss={"SS": ["added"]})
    t.update(key("typed", 3), "REMOVE #b, #bs, #m")
    for sk in range(5):
        t.update(key("plain", sk), "SET #status = :status", status={"S": "paid"})
    for sk in (35, 36, 37):
        t.delete(key("plain", sk))
    t.delete(key("typed", 7))
    t.put(every_type("typed", 7, version=2))  # deleted, then back
    t.put(simple("history", 1, "placed"))
    t.update(key("history", 1), "SET #status = :status", status={"S": "paid"})


def later_changes(t: Table) -> None:
    t.put(every_type("typed", 0, version=3))
    t.update(key("typed", 4), "SET #b = :b", b={"B": b"\xde\xad\xbe\xef"})
    t.delete(key("typed", 5))
    t.delete(key("numkeys", N38))
    for sk in range(5, 10):
        t.update(key("plain", sk), "SET #status = :status", status={"S": "shipped"})
    for sk in range(40, 45):
        t.put(simple("plain", sk, "new"))
    t.put(simple("plain", 35, "back again"))
    t.delete(key("history", 1))
    t.put(simple("history", 1, "reopened"))


def test_pipeline_on_rgw(split: Split, capsys: pytest.CaptureFixture[str]) -> None:
    table = create_table(split, "orders")
    first_changes(table)
    assert table.deliver() > 60

    first = settled_time()
    state_first = scan(split.dynamodb, table.name)
    full = cli_json(capsys, split, table.name, "compact", "--full", "--as-of", str(first))
    assert full["created"] is True
    assert full["base"] is None
    assert full["items"] == len(state_first)
    assert full["versions_listed"] == table.delivered

    later_changes(table)
    changed = table.deliver()
    second = settled_time()
    state_second = scan(split.dynamodb, table.name)
    assert state_second != state_first
    incremental = cli_json(capsys, split, table.name, "compact", "--as-of", str(second))
    assert incremental["created"] is True
    assert incremental["base"] == full["snapshot"]
    assert incremental["items"] == len(state_second)
    # Incremental: only the versions written after the base snapshot are read.
    assert incremental["objects_read"] <= changed < full["objects_read"], (incremental, changed)

    listed = cli_json(capsys, split, table.name, "snapshots")
    assert [s["id"] for s in listed["snapshots"]] == [full["snapshot"], incremental["snapshot"]]

    # Restore the latest state and the first snapshot's state into new moto tables.
    latest = cli_json(
        capsys, split, table.name, "restore", "--to", "orders_latest", "--create-table", "--verify"
    )
    assert latest["verified"] is True
    assert scan(split.dynamodb, "orders_latest") == state_second
    at_first = cli_json(
        capsys,
        split,
        table.name,
        "restore",
        "--to",
        "orders_first",
        "--as-of",
        str(first),
        "--create-table",
        "--verify",
    )
    assert at_first["verified"] is True
    assert scan(split.dynamodb, "orders_first") == state_first

    # SQL over the newest snapshot, read in place through pyarrow's S3 filesystem on RGW.
    def query_items(*extra: str) -> dict[str, str]:
        out = cli(
            capsys,
            split,
            table.name,
            "query",
            *extra,
            "--format",
            "jsonl",
            "SELECT __item FROM items",
        )
        return canonical([json.loads(line)["__item"] for line in out.splitlines()])

    assert query_items() == state_second
    assert query_items("--as-of", str(first)) == state_first
    out = cli(
        capsys,
        split,
        table.name,
        "query",
        "--format",
        "jsonl",
        "SELECT sk, n38, n38_neg, n38_fraction, b FROM items WHERE pk = 'numkeys' ORDER BY sk",
    )
    rows = [json.loads(line, parse_float=decimal.Decimal) for line in out.splitlines()]
    assert len(rows) == 4  # N38 deleted; sk mixes 1E+100 and 38 digits, so it is a DOUBLE
    for row in rows:  # exact DECIMAL(38, s) columns
        assert decimal.Decimal(str(row["n38"])) == decimal.Decimal(N38)
        assert decimal.Decimal(str(row["n38_neg"])) == decimal.Decimal(N38_NEG)
        assert decimal.Decimal(str(row["n38_fraction"])) == decimal.Decimal(N38_FRACTION)
        assert base64.b64decode(row["b"]) == bytes([0, 1, 254, 255, 0])
    out = cli(
        capsys,
        split,
        table.name,
        "query",
        "--format",
        "csv",
        "SELECT status, count(*) AS n FROM items WHERE pk = 'plain' GROUP BY 1 ORDER BY 1",
    )
    assert out.splitlines() == [
        "status,n",
        "back again,1",
        "new,5",
        "paid,5",
        "placed,27",
        "shipped,5",
    ]

    # History: every change of one item, in order, from its object's versions on RGW.
    history = cli_json(capsys, split, table.name, "history", "--key", '{"pk": "history", "sk": 1}')
    events = [v["eventName"] for v in history["versions"]]
    assert events == table.events[json.dumps(key("history", 1), sort_keys=True)]
    assert events == ["INSERT", "MODIFY", "REMOVE", "INSERT"]
    assert history["versions"][-1]["image"]["status"] == {"S": "reopened"}
    typed = cli_json(capsys, split, table.name, "history", "--key", '{"pk": "typed", "sk": 0}')
    assert [v["image"]["version"]["N"] for v in typed["versions"]] == ["0", "1", "3"]

    # Nothing went to moto's S3: every object is on RGW.
    moto_s3 = boto3.session.Session(region_name=REGION).client("s3", endpoint_url=split.moto)
    assert moto_s3.list_buckets()["Buckets"] == []


def test_version_listing_has_millisecond_last_modified(split: Split) -> None:
    """RGW keeps LastModified to the millisecond (moto and S3 listings: whole seconds)."""
    for n in range(20):
        split.s3.put_object(Bucket=split.bucket, Key="probe/key.json", Body=str(n).encode())
    page = split.s3.list_object_versions(Bucket=split.bucket, Prefix="probe/")
    versions = page["Versions"]
    assert len(versions) == 20
    assert [v["IsLatest"] for v in versions] == [True] + [False] * 19
    stamps = [v["LastModified"] for v in versions]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert all(s.microsecond % 1000 == 0 for s in stamps)
    assert any(s.microsecond != 0 for s in stamps), f"whole seconds only: {stamps}"


def test_conditional_put_in_versioned_bucket_is_refused_or_versioned(split: Split) -> None:
    """What compaction's manifest commit meets on this server. AWS S3 refuses a second
    `If-None-Match: *` PUT with 412; Ceph 16.2 (Debian 12) accepts it in a versioned
    bucket (it refuses it in an unversioned one) and keeps both as versions. Either is
    safe for catalog.commit, which falls back to the key's oldest version
    (test_manifest_commit_stays_single_winner_on_rgw); anything else is not."""
    from botocore.exceptions import ClientError

    manifest = "snapshots/probe/manifest.json"
    first = split.s3.put_object(Bucket=split.bucket, Key=manifest, Body=b"{}", IfNoneMatch="*")
    try:
        second = split.s3.put_object(Bucket=split.bucket, Key=manifest, Body=b"{}", IfNoneMatch="*")
    except ClientError as refused:
        code = refused.response["Error"]["Code"]
        expected = [first["VersionId"]]
    else:
        code = "accepted"
        expected = [second["VersionId"], first["VersionId"]]  # newest first
    assert code in {"PreconditionFailed", "accepted"}
    listed = split.s3.list_object_versions(Bucket=split.bucket, Prefix=manifest)
    assert [v["VersionId"] for v in listed["Versions"]] == expected


def test_conditional_put_in_unversioned_bucket(split: Split) -> None:
    from botocore.exceptions import ClientError

    bucket = f"{split.bucket}-plain"
    split.s3.create_bucket(Bucket=bucket)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(split.s3.delete_bucket, Bucket=bucket)
        cleanup.callback(split.s3.delete_object, Bucket=bucket, Key="m.json")
        split.s3.put_object(Bucket=bucket, Key="m.json", Body=b"{}", IfNoneMatch="*")
        with pytest.raises(ClientError) as raised:
            split.s3.put_object(Bucket=bucket, Key="m.json", Body=b"{}", IfNoneMatch="*")
        assert raised.value.response["Error"]["Code"] == "PreconditionFailed"


def test_manifest_commit_stays_single_winner_on_rgw(split: Split) -> None:
    """RGW accepts the second If-None-Match PUT, so catalog.commit falls back to the
    key's versions: the oldest is the commit, the later run withdraws and reports 4."""
    from backup_lambda.errors import ConflictError
    from compaction import catalog
    from tests.compaction.test_commit_race import manifest

    catalog.commit(split.s3, split.bucket, "", manifest("first"))
    with pytest.raises(ConflictError):
        catalog.commit(split.s3, split.bucket, "", manifest("second"))
    loaded = catalog.load_manifest(split.s3, split.bucket, "", "orders", manifest("x").id)
    assert loaded is not None
    assert loaded.run_id == "first"
