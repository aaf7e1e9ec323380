"""Shared benchmark plumbing: an S3 server, request counting, data generation, medians.

S3 is BENCH_S3_ENDPOINT (e.g. Ceph RGW from `scripts/rgw.sh up`) or the embedded moto
server; DynamoDB is BENCH_DYNAMODB_ENDPOINT or moto (see s3_server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backup_lambda.layout import Change, encode_change, object_key
from jobs.cli.clients import AwsSettings, make_client
from jobs.demo.standin import local_aws

TABLE = "bench"
PREFIX = "bench"


class RequestCounter:
    """Counts API calls per operation through botocore's event hooks, and the body bytes
    of the PUT/POST requests sent (`BYTES_SENT`, from each request's Content-Length)."""

    BYTES_SENT = "bytes_sent"

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.*.*", self._count)
        client.meta.events.register("before-send.*.*", self._bytes)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1

    def _bytes(self, request: Any, **_: Any) -> None:
        if request.method not in {"PUT", "POST"}:
            return
        length = request.headers.get("Content-Length")
        if length is not None:
            with self._lock:
                self.counts[self.BYTES_SENT] += int(length)

    def reset(self) -> Counter[str]:
        with self._lock:
            snapshot = Counter(self.counts)
            self.counts.clear()
        return snapshot


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the duration."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _moto_dynamodb() -> Iterator[str]:
    """moto's server on loopback, used for DynamoDB only (a real S3 server has none)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def s3_server(endpoint: str | None) -> Iterator[str]:
    """A given S3 endpoint (a real server such as Ceph RGW), else the embedded moto server.

    With a given S3 endpoint, DynamoDB is BENCH_DYNAMODB_ENDPOINT, else an embedded moto
    server; credentials are the environment's (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or
    RGW_ACCESS_KEY/RGW_SECRET_KEY as `scripts/rgw.sh up` prints them). Both endpoints are
    published as boto3's service-specific settings (AWS_ENDPOINT_URL_S3/_DYNAMODB) for the
    duration, so every client follows them (the Lambda's, pyarrow's, a child process's).
    """
    if not endpoint:
        # One embedded server for both; a shell's exported RGW settings must not leak in.
        unset: dict[str, str | None] = dict.fromkeys(_SERVICE_ENDPOINTS)
        with _environment(**unset), local_aws() as standin:
            yield standin.endpoint_url
        return
    credentials: dict[str, str | None] = {}
    if not os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("RGW_ACCESS_KEY"):
        credentials = {
            "AWS_ACCESS_KEY_ID": os.environ["RGW_ACCESS_KEY"],
            "AWS_SECRET_ACCESS_KEY": os.environ.get("RGW_SECRET_KEY"),
            "AWS_SESSION_TOKEN": None,
        }
    with contextlib.ExitStack() as stack:
        dynamodb = os.environ.get("BENCH_DYNAMODB_ENDPOINT") or stack.enter_context(
            _moto_dynamodb()
        )
        stack.enter_context(
            _environment(
                **credentials,
                AWS_ENDPOINT_URL_S3=endpoint,
                AWS_ENDPOINT_URL_DYNAMODB=dynamodb,
                AWS_ENDPOINT_URL_DYNAMODB_STREAMS=dynamodb,
            )
        )
        print(f"S3 {endpoint}; DynamoDB {dynamodb}", file=sys.stderr)
        yield endpoint


_SERVICE_ENDPOINTS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
)


def dynamodb_endpoint(s3_endpoint: str) -> str:
    """DynamoDB's endpoint: the one s3_server published, else the S3 one (embedded moto)."""
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or s3_endpoint


def clients(endpoint: str, counter: RequestCounter, pool: int = 64) -> tuple[Any, Any]:
    s3 = make_client("s3", AwsSettings(endpoint_url=endpoint, max_pool_connections=pool))
    dynamodb = make_client(
        "dynamodb",
        AwsSettings(endpoint_url=dynamodb_endpoint(endpoint), max_pool_connections=pool),
    )
    return counter.attach(s3), counter.attach(dynamodb)


def make_bucket(s3: Any, name: str) -> None:
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def item_for(index: int, version: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"user#{index:08d}"},
        "sk": {"N": str(index % 7)},
        "status": {"S": random.choice(["new", "paid", "shipped"])},
        "amount": {"N": f"{random.randint(1, 10**6)}.{random.randint(0, 99):02d}"},
        "version": {"N": str(version)},
        "tags": {"SS": ["a", f"v{version}"]},
    }


@dataclass
class Sequence:
    value: int = 10**20

    def next(self) -> str:
        self.value += 1
        return str(self.value)


def write_changes(
    s3: Any,
    bucket: str,
    changes: list[Change],
    workers: int = 32,
) -> float:
    """PUT changes as object versions (one item's changes in order); returns seconds."""
    by_key: dict[str, list[Change]] = {}
    for change in changes:
        by_key.setdefault(object_key(PREFIX, change.table, change.keys), []).append(change)

    def put_chain(entry: tuple[str, list[Change]]) -> None:
        key, chain = entry
        for change in chain:
            s3.put_object(Bucket=bucket, Key=key, Body=encode_change(change))

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put_chain, by_key.items()))
    return time.perf_counter() - started


def generate(
    keys: range, versions: int, start_us: int, step_us: int, seq: Sequence
) -> list[Change]:
    """`versions` changes per key, event times spread from start_us by step_us."""
    changes = []
    for v in range(versions):
        for i in keys:
            item = item_for(i, v)
            changes.append(
                Change(
                    table=TABLE,
                    keys={"pk": item["pk"], "sk": item["sk"]},
                    event_name="INSERT" if v == 0 else "MODIFY",
                    event_id=f"e{i}-{v}",
                    sequence_number=seq.next(),
                    event_time_us=start_us + v * step_us,
                    new_image=item,
                )
            )
    return changes


def median_of(runs: int, work: Callable[[], float]) -> tuple[float, list[float]]:
    samples = [work() for _ in range(runs)]
    return statistics.median(samples), samples


def env_endpoint() -> str | None:
    return os.environ.get("BENCH_S3_ENDPOINT") or None
