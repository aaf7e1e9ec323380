"""An incremental compaction reads its base only through verified reads (issue 13, finding 1):
an overwritten base file is read at its pinned version, and a base that fails
verification is never built on."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backup_lambda.errors import CorruptSnapshotError
from compaction import catalog
from compaction.manifest import Manifest
from tests.compaction.helpers import BUCKET, TABLE, SimClock, Store, compact


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i:03d}"}, "sk": {"N": "0"}}


def parquet_of(manifest: Manifest) -> Any:
    (data_file,) = manifest.files_of("parquet")
    return data_file


def drop_rows(s3: Any, manifest: Manifest, dropped: int) -> None:
    """What the issue reproduced: a later PutObject over the snapshot's Parquet, with rows
    dropped (a new current version; the pinned one stays)."""
    data_file = parquet_of(manifest)
    body = s3.get_object(Bucket=BUCKET, Key=data_file.key)["Body"].read()
    table = pq.read_table(pa.BufferReader(body))
    sink = io.BytesIO()
    pq.write_table(table.slice(dropped), sink)
    s3.put_object(Bucket=BUCKET, Key=data_file.key, Body=sink.getvalue())


@pytest.fixture
def first(store: Store, sim_clock: SimClock, s3_client: Any) -> Manifest:
    for i in range(20):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=10 + i)
    return compact(s3_client, sim_clock, as_of_s=100, run_s=110, config=None).manifest


def test_an_overwritten_base_file_does_not_lose_rows(
    store: Store, sim_clock: SimClock, s3_client: Any, first: Manifest
) -> None:
    drop_rows(s3_client, first, 2)
    store.put(key(99), {"n": {"N": "99"}}, event_s=200)
    second = compact(s3_client, sim_clock, as_of_s=300, run_s=310).manifest
    assert second.base == first.id
    assert second.counts.items == 21


def test_a_base_whose_pinned_version_is_gone_is_not_built_on(
    store: Store, sim_clock: SimClock, s3_client: Any, first: Manifest
) -> None:
    drop_rows(s3_client, first, 2)
    data_file = parquet_of(first)
    s3_client.delete_object(Bucket=BUCKET, Key=data_file.key, VersionId=data_file.version_id)
    store.put(key(99), {"n": {"N": "99"}}, event_s=200)
    with pytest.raises(CorruptSnapshotError, match=data_file.key):
        compact(s3_client, sim_clock, as_of_s=300, run_s=310)
    assert [m.id for m in catalog.committed_snapshots(s3_client, BUCKET, "", TABLE)] == [first.id]
