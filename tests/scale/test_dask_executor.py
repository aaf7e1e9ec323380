"""Compaction and restore on dask.distributed give the same results as on local threads.

The workers are separate processes (a LocalCluster), so everything a task needs must
pickle, clients are built on the workers, and spills travel through S3."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from backup_lambda.journal import (
    COVERAGE,
    JOURNAL_ONLY,
    encode_journal,
    journal_key,
    write_marker,
)
from backup_lambda.layout import Change, encode_change, object_key
from compaction import catalog
from compaction.compactor import CompactionConfig, Compactor
from compaction.executor import DaskUnitExecutor
from compaction.lease import lease_key
from compaction.policy import SnapshotPolicy
from compaction.snapshot_io import read_base_rows
from jobs.cli.clients import AwsSettings, ClientFactory, make_client
from jobs.demo.standin import local_aws
from jobs.main import main
from jobs.restore.restorer import RestoreOptions, Restorer
from tests.jobs.restore.restore_fixtures import create_table

BUCKET = "dask-bucket"
TABLE = "orders"
JOURNALED = "journaled"  # the same changes, in a journal-only backup
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
    journaled: list[Change] = []
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
            journaled.append(dataclasses.replace(change, table=JOURNALED))
    for marker in (COVERAGE, JOURNAL_ONLY):  # complete and journal-only from the start
        write_marker(client, BUCKET, "", JOURNALED, marker, 0, "tests")
    for n in range(0, len(journaled), 25):
        key = journal_key("", JOURNALED, start + n, f"{n:04d}")
        client.put_object(Bucket=BUCKET, Key=key, Body=encode_journal(journaled[n : n + 25]))
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
    # AND the workers' spills did not stay behind in the bucket (only listed files remain,
    # and the run's lease)
    run_root = catalog.run_prefix("", TABLE, distributed.id, distributed.run_id)
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=run_root)
    stored = {o["Key"] for o in listing.get("Contents", [])}
    assert stored == {f.key for f in distributed.files} | {lease_key(run_root)}


def test_journal_changes_reach_the_dask_workers(
    s3: Any, endpoint: str, dask_executor: DaskUnitExecutor
) -> None:
    # GIVEN a journal-only backup of the same changes WHEN compacted on threads and on dask
    as_of = int(time.time() * SEC)
    config = CompactionConfig(full=True, shard_digits=1)
    local = Compactor(s3, BUCKET, JOURNALED, config=config).run(as_of).manifest
    factory = ClientFactory("s3", AwsSettings(endpoint_url=endpoint))
    distributed = (
        Compactor(s3, BUCKET, JOURNALED, config=config, executor=dask_executor, s3_factory=factory)
        .run(as_of + 1)
        .manifest
    )
    # THEN each unit's share of the journal window reached its worker: the same snapshot
    assert distributed.change_source == local.change_source == "journal"
    assert snapshot_content(s3, local) == snapshot_content(s3, distributed)
    assert local.counts == distributed.counts
    assert (distributed.counts.items, distributed.counts.journal_changes) == (54, 120)


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


# Restore ---------------------------------------------------------------------------


def target_items(dynamodb: Any, table: str) -> dict[str, Any]:
    pages = dynamodb.get_paginator("scan").paginate(TableName=table)
    items = [item for page in pages for item in page["Items"]]
    return {json.dumps([item["pk"], item["sk"]], sort_keys=True): item for item in items}


@pytest.fixture(scope="module")
def dynamodb(endpoint: str) -> Any:
    """The stand-in's DynamoDB, with the source table (restores take its key schema)."""
    client = make_client("dynamodb", AwsSettings(endpoint_url=endpoint))
    if TABLE not in client.list_tables()["TableNames"]:  # moto's state is per process
        create_table(client, TABLE, {"pk": "S", "sk": "N"})
    return client


def test_dask_and_local_restores_leave_the_same_items(
    s3: Any, dynamodb: Any, endpoint: str, dask_executor: DaskUnitExecutor
) -> None:
    settings = AwsSettings(endpoint_url=endpoint)
    factories = (ClientFactory("s3", settings), ClientFactory("dynamodb", settings))
    options = RestoreOptions(
        as_of_us=int(time.time() * SEC), create_table=True, shard_digits=1, verify=True
    )

    def restorer(target: str, executor: DaskUnitExecutor | None) -> Restorer:
        return Restorer(
            s3,
            dynamodb,
            BUCKET,
            TABLE,
            target,
            options=options,
            announce=lambda text: None,
            executor=executor,
            client_factories=factories,
        )

    # GIVEN the same state restored on threads and on dask (16 units, bulk into new tables)
    local = restorer("restored-local", None).run()
    distributed = restorer("restored-dask", dask_executor).run()
    # THEN the tables and the reports agree
    expected = target_items(dynamodb, "restored-local")
    assert len(expected) == 54
    assert target_items(dynamodb, "restored-dask") == expected
    assert (distributed.state_items, distributed.puts, distributed.writes.requests) == (
        local.state_items,
        local.puts,
        local.writes.requests,
    )
    assert distributed.verified is True

    # WHEN the dask target drifts (2 changed, 3 missing, 1 extra) and is restored again
    keys = sorted(expected)
    changed = [{**expected[k], "v": {"N": "99"}} for k in keys[:2]]
    extra = {"pk": {"S": "not backed up"}, "sk": {"N": "0"}}
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda item: dynamodb.put_item(TableName="restored-dask", Item=item),
                [*changed, extra],
            )
        )
        list(
            pool.map(
                lambda k: dynamodb.delete_item(
                    TableName="restored-dask",
                    Key={"pk": expected[k]["pk"], "sk": expected[k]["sk"]},
                ),
                keys[2:5],
            )
        )
    again = restorer("restored-dask", dask_executor).run()
    # THEN only the difference is written, on the workers, and the target is equal again
    assert again.mode == "diff"
    assert (again.puts, again.deletes, again.unchanged) == (5, 1, 49)
    assert target_items(dynamodb, "restored-dask") == expected


def test_distributed_restore_without_client_factories_is_refused(
    s3: Any, dask_executor: DaskUnitExecutor
) -> None:
    with pytest.raises(ValueError, match="client_factories"):
        Restorer(s3, object(), BUCKET, TABLE, "t", executor=dask_executor)


def test_cli_restore_with_dask_executor(s3: Any, dynamodb: Any, endpoint: str, capsys: Any) -> None:
    capsys.readouterr()
    code = main(
        [
            *("restore", "--bucket", BUCKET, "--table", TABLE, "--endpoint-url", endpoint),
            *("--to", "restored-cli", "--create-table", "--shard-digits", "1"),
            *("--executor", "dask", "--dask-workers", "1", "--verify", "--json"),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["items"], report["puts"], report["verified"]) == (54, 54, True)


def test_import_export_on_dask_matches_local_threads(
    s3: Any, endpoint: str, dask_executor: DaskUnitExecutor
) -> None:
    # GIVEN a full DynamoDB export of 40 items in 3 data files (and an empty one)
    from compaction.importexport import ExportImporter, ImportOptions
    from compaction.manifest import KeyAttribute
    from tests.compaction.awsexports import ExportFolder

    s3.create_bucket(Bucket="dask-exports")
    items = [{"pk": {"S": f"i#{i}"}, "sk": {"N": str(i)}, "v": {"SS": ["x"]}} for i in range(40)]
    export_time = (int(time.time()) - 7200) * SEC
    ExportFolder(s3, bucket="dask-exports").full(items, export_time, files=3)
    schema = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))
    options = ImportOptions(key_schema=schema, shard_digits=1)
    factory = ClientFactory("s3", AwsSettings(endpoint_url=endpoint))
    # WHEN it is imported on local threads and on dask (pieces travel through S3)
    manifests = []
    for table, executor in (("imp_local", None), ("imp_dask", dask_executor)):
        ExportImporter(
            s3,
            BUCKET,
            table,
            "s3://dask-exports/exports/",
            options=options,
            executor=executor,
            s3_factory=factory,
        ).run()
        manifest = catalog.newest_at_or_before(s3, BUCKET, "", table, None)
        assert manifest is not None
        manifests.append(manifest)
    local, distributed = manifests
    # THEN both snapshots hold the same rows, and no piece is left in the bucket
    assert snapshot_content(s3, local) == snapshot_content(s3, distributed)
    assert distributed.counts.items == 40
    run_root = catalog.run_prefix("", "imp_dask", distributed.id, distributed.run_id)
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=run_root)
    stored = {v["Key"] for v in listing.get("Versions", [])}
    assert stored == {f.key for f in distributed.files} | {lease_key(run_root)}


def test_dask_builds_and_restores_a_delta_chain_as_threads_do(
    s3: Any, dynamodb: Any, endpoint: str, dask_executor: DaskUnitExecutor
) -> None:
    # GIVEN a full snapshot (16 units) and, after it, updates, removals and a new item
    table, start = "chained", int(time.time() * SEC) - 1800 * SEC
    states: dict[str, dict[str, Any]] = {}

    def change(i: int, at_s: int, value: int | None) -> None:
        keys = {"pk": {"S": f"user#{i}"}, "sk": {"N": str(i % 3)}}
        image = None if value is None else {**keys, "v": {"N": str(value)}}
        name = "REMOVE" if image is None else "MODIFY"
        body = Change(
            table, keys, name, f"c{at_s}-{i}", str(at_s * 100 + i), start + at_s * SEC, image
        )
        s3.put_object(Bucket=BUCKET, Key=object_key("", table, keys), Body=encode_change(body))
        key = json.dumps([keys["pk"], keys["sk"]], sort_keys=True)
        if image is None:
            states.pop(key, None)
        else:
            states[key] = image

    for i in range(30):
        change(i, 0, i)
    sixteen = CompactionConfig(shard_digits=1)
    full = Compactor(s3, BUCKET, table, config=sixteen).run(start + 10 * SEC).manifest
    for i in range(3):
        change(i, 20, 100 + i)
    change(5, 21, None)
    change(30, 22, 30)
    # WHEN the delta on it is built on dask, and (withdrawn) the same one on threads
    delta = dataclasses.replace(sixteen, policy=SnapshotPolicy(kind="delta"))
    factory = ClientFactory("s3", AwsSettings(endpoint_url=endpoint))
    distributed = (
        Compactor(s3, BUCKET, table, config=delta, executor=dask_executor, s3_factory=factory)
        .run(start + 30 * SEC)
        .manifest
    )
    assert (distributed.kind, distributed.parent) == ("delta", full.id)
    name = catalog.manifest_key("", table, distributed.id)
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=name)["Versions"]:
        s3.delete_object(Bucket=BUCKET, Key=name, VersionId=version["VersionId"])
    local = Compactor(s3, BUCKET, table, config=delta).run(start + 30 * SEC).manifest
    # THEN the two deltas hold the same rows, tombstones, export lines and counts
    assert snapshot_content(s3, distributed) == snapshot_content(s3, local)
    assert distributed.counts == local.counts
    assert (local.counts.items, local.counts.removed) == (30, 1)
    # AND a restore of the chain on dask leaves exactly the state
    create_table(dynamodb, "chain-dask", {"pk": "S", "sk": "N"})
    settings = AwsSettings(endpoint_url=endpoint)
    Restorer(
        s3,
        dynamodb,
        BUCKET,
        table,
        "chain-dask",
        options=RestoreOptions(as_of_us=local.as_of_us, shard_digits=1, verify=True),
        announce=lambda text: None,
        executor=dask_executor,
        client_factories=(ClientFactory("s3", settings), ClientFactory("dynamodb", settings)),
    ).run()
    assert target_items(dynamodb, "chain-dask") == states
