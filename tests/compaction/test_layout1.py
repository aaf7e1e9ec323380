"""Snapshots written by release 1 (data layout 1: key hash, whole item and S3 version id per
row, in key-hash order) are still read: by folds, restores, `query`, and as the base of the
next compaction, which is then a full snapshot in layout 2.

The fixture (tests/fixtures/snapshot_layout1/) was written by release 1's compactor: six
items with typed and untyped attributes, one of them removed (a tombstone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backup_lambda.layout import key_hash
from compaction import catalog
from compaction.chain import chain_rows, load_chain
from compaction.compactor import CompactionConfig
from compaction.manifest import Manifest
from compaction.policy import SnapshotPolicy
from compaction.state import plan_state, read_state
from jobs.query.sql import SqlSession
from tests.compaction.helpers import BUCKET, TABLE, SimClock, Store, compact, read_snapshot

FIXTURE = Path(__file__).parent.parent / "fixtures" / "snapshot_layout1"


def _keys(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i}"}, "sk": {"N": str(i % 2)}}


def _item(i: int) -> dict[str, Any]:
    return {
        **_keys(i),
        "amount": {"N": f"{i}.5"},
        "status": {"S": ["new", "paid"][i % 2]},
        "tags": {"SS": ["a", f"t{i}"]},
        "blob": {"B": "AAH/"},
        "spelled": {"N": "1.50"},
    }


EXPECTED = {key_hash(_keys(i)): _item(i) for i in (0, 1, 3, 4, 5)}


@pytest.fixture
def layout1(s3_client: Any, backup_bucket: str) -> Manifest:
    """Release 1's snapshot, stored as release 1 stored it."""
    doc = json.loads((FIXTURE / "manifest.json").read_text())
    for data_file in doc["files"]:
        name = data_file["format"].replace(".", "-") + "-all." + data_file["format"]
        body = (FIXTURE / name.replace(".tombstones", ".parquet")).read_bytes()
        s3_client.put_object(Bucket=BUCKET, Key=data_file["key"], Body=body)
    key = catalog.manifest_key("", TABLE, doc["id"])
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
    manifest = catalog.load_manifest(s3_client, BUCKET, "", TABLE, doc["id"])
    assert manifest is not None
    assert manifest.data_layout == 1
    return manifest


def test_layout1_rows_are_read_exactly(s3_client: Any, layout1: Manifest) -> None:
    rows = chain_rows(s3_client, BUCKET, load_chain(s3_client, BUCKET, "", TABLE, layout1), "")
    live = {d: r.change.new_image for d, r in rows.items() if not r.change.is_removal}
    assert live == EXPECTED
    removed = {d for d, r in rows.items() if r.change.is_removal}
    assert removed == {key_hash(_keys(2))}
    assert all(r.version_id for r in rows.values()), "layout 1 rows keep their version ids"


def test_query_reads_a_layout1_snapshot(s3_client: Any, layout1: Manifest) -> None:
    with SqlSession(s3_client, BUCKET, "", TABLE) as session:
        session.open_latest()
        rows = session.con.execute(
            "SELECT __key_hash, __item, status, amount FROM items ORDER BY pk"
        ).fetchall()
    assert {r[0]: json.loads(r[1]) for r in rows} == EXPECTED
    assert [(r[2], str(r[3])) for r in rows] == [
        ("new", "0.5"),
        ("paid", "1.5"),
        ("paid", "3.5"),
        ("new", "4.5"),
        ("paid", "5.5"),
    ]


def test_a_compaction_on_a_layout1_base_writes_a_full_layout2_snapshot(
    s3_client: Any, layout1: Manifest, store: Store, sim_clock: SimClock
) -> None:
    store.put(_keys(0), {"amount": {"N": "7"}}, event_s=10, name="MODIFY")
    result = compact(s3_client, sim_clock, as_of_s=20, run_s=30)
    manifest = result.manifest
    assert manifest.base == layout1.id
    assert (manifest.kind, manifest.data_layout) == ("full", 2)
    assert manifest.policy_reason is not None
    assert "data layout 1" in manifest.policy_reason
    expected = {**EXPECTED, key_hash(_keys(0)): {"amount": {"N": "7"}, **_keys(0)}}
    assert read_snapshot(s3_client, manifest).items() == expected
    # The next one is a delta on the layout-2 snapshot; the state reads the same.
    store.put(_keys(1), None, event_s=40)
    forced = CompactionConfig(policy=SnapshotPolicy(kind="delta"))  # 1 of 5 is over 10%
    delta = compact(s3_client, sim_clock, as_of_s=50, run_s=60, config=forced).manifest
    assert (delta.kind, delta.parent) == ("delta", manifest.id)
    del expected[key_hash(_keys(1))]
    assert read_snapshot(s3_client, delta).items() == expected
    plan = plan_state(s3_client, BUCKET, "", TABLE, sim_clock.at(50))
    state = {r.key_hash: r.change.new_image for u in read_state(s3_client, plan) for r in u.rows}
    assert state == expected
