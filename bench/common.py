"""Shared benchmark plumbing: an S3 server, request counting, data generation, medians."""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backup_lambda.layout import Change, encode_change, object_key
from jobs.clients import AwsSettings, make_client
from jobs.standin import local_aws

TABLE = "bench"
PREFIX = "bench"


class RequestCounter:
    """Counts API calls per operation through botocore's event hooks."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.*.*", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1

    def reset(self) -> Counter[str]:
        with self._lock:
            snapshot = Counter(self.counts)
            self.counts.clear()
        return snapshot


@contextlib.contextmanager
def s3_server(endpoint: str | None) -> Iterator[str]:
    """A given S3 endpoint (real server), else the embedded moto server."""
    if endpoint:
        yield endpoint
        return
    with local_aws() as standin:
        yield standin.endpoint_url


def clients(endpoint: str, counter: RequestCounter, pool: int = 64) -> tuple[Any, Any]:
    settings = AwsSettings(endpoint_url=endpoint, max_pool_connections=pool)
    return counter.attach(make_client("s3", settings)), counter.attach(
        make_client("dynamodb", settings)
    )


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
