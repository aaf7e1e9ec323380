"""Compaction on dask.distributed gives the same snapshot as on local threads.

The workers are separate processes (a LocalCluster), so everything a task needs must
pickle, clients are built on the workers, and spills travel through S3."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from backup_lambda.layout import Change, encode_change, object_key
from compaction import catalog
from compaction.compactor import CompactionConfig, Compactor
from compaction.executor import DaskUnitExecutor
from compaction.snapshot_io import read_base_rows
from jobs.cli import main
from jobs.clients import AwsSettings, ClientFactory, make_client
from jobs.standin import local_aws

BUCKET = "dask-bucket"
TABLE = "orders"
SEC = 1_000_000


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with local_aws() as standin:
        yield standin.endpoint_url


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    client = make_client("s3", AwsSettings(endpoint_url=endpoint))
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    start = int(time.time() * SEC) - 3600 * SEC
    for i in range(60):
        keys = {"pk": {"S": f"user#{i}"}, "sk": {"N": str(i % 3)}}
        for version in range(2):
            image = {**keys, "v": {"N": str(version)}, "blob": {"B": "AAH/"}, "tags": {"SS": ["a"]}}
            removal = i % 10 == 0 and version == 1
            change = Change(
                TABLE,
                keys,
                "REMOVE" if removal else "MODIFY",
                f"e{i}-{version}",
                str(1000 + 2 * i + version),
                start + version * SEC,
                None if removal else image,
            )
            client.put_object(
                Bucket=BUCKET, Key=object_key("", TABLE, keys), Body=encode_change(change)
            )
    return client


@pytest.fixture(scope="module")
def dask_executor(endpoint: str) -> Iterator[DaskUnitExecutor]:
    executor = DaskUnitExecutor(workers=2)  # workers inherit the stand-in's AWS_* settings
    yield executor
    executor.close()


def snapshot_content(s3: Any, manifest: Any) -> tuple[dict[str, Any], list[str], list[str]]:
    rows = {
        digest: (row.change.new_image, row.change.event_time_us, row.change.sequence_number)
        for digest, row in read_base_rows(s3, BUCKET, manifest, "", tombstones=True).items()
    }
    export = []
    for data_file in manifest.files_of("json.gz"):
        body = s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
        export += gzip.decompress(body).decode().splitlines()
    columns = [f"{c.name}:{c.type}" for c in manifest.columns]
    return rows, sorted(export), columns


def test_dask_and_local_executors_write_the_same_snapshot(
    s3: Any, endpoint: str, dask_executor: DaskUnitExecutor
) -> None:
    # GIVEN one table's versions WHEN compacted full on threads and on dask (16 units)
    as_of = int(time.time() * SEC)
    config = CompactionConfig(full=True, shard_digits=1)
    local = Compactor(s3, BUCKET, TABLE, config=config).run(as_of).manifest
    factory = ClientFactory("s3", AwsSettings(endpoint_url=endpoint))
    distributed = (
        Compactor(s3, BUCKET, TABLE, config=config, executor=dask_executor, s3_factory=factory)
        .run(as_of + 1)
        .manifest
    )
    # THEN rows, tombstones, export lines, schema and counts are identical
    assert snapshot_content(s3, local) == snapshot_content(s3, distributed)
    assert local.counts == distributed.counts
    assert distributed.counts.items == 54
    assert distributed.counts.removed == 6
    # AND the workers' spills did not stay behind in the bucket (only listed files remain)
    run_root = catalog.run_prefix("", TABLE, distributed.id, distributed.run_id)
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=run_root)
    stored = {o["Key"] for o in listing.get("Contents", [])}
    assert stored == {f.key for f in distributed.files}


def test_distributed_executor_without_client_factory_is_refused(
    s3: Any, dask_executor: DaskUnitExecutor
) -> None:
    with pytest.raises(ValueError, match="s3_factory"):
        Compactor(s3, BUCKET, TABLE, executor=dask_executor)


def test_cli_compact_with_dask_executor(s3: Any, endpoint: str, capsys: Any) -> None:
    as_of = str(int(time.time()))
    code = main(
        [
            "compact",
            "--bucket",
            BUCKET,
            "--table",
            TABLE,
            "--endpoint-url",
            endpoint,
            "--as-of",
            as_of,
            "--full",
            "--executor",
            "dask",
            "--dask-workers",
            "1",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["created"] is True
    assert summary["items"] == 54
