"""Compaction on in-process moto: snapshots, manifests, the commit protocol and the CLI.

Change documents are written straight as S3 object versions with the Lambda's own encoder
(`encode_change` to `object_key`), at simulated write times (moto's clock, see conftest),
with explicit event times; snapshots are read back from the files their manifest lists.
"""

from __future__ import annotations

import base64
import decimal
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError

from backup_lambda.ddbjson import Item
from backup_lambda.errors import ConflictError, CorruptVersionError, StorageError
from backup_lambda.layout import (
    SHARD_HEX_DIGITS,
    Change,
    encode_change,
    format_time_us,
    items_prefix,
    key_hash,
    object_key,
)
from compaction import catalog
from compaction import compactor as compactor_module
from compaction.compactor import CompactionConfig, CompactionResult
from compaction.manifest import KeyAttribute, Manifest, SkippedVersion
from compaction.snapshot_io import arrow_type
from compaction.state import StatePlan, StateReader, unit_listing_prefix, units_for
from jobs.main import main
from tests.compaction.helpers import (
    BUCKET,
    ITEMS,
    MODES,
    SEC,
    TABLE,
    SimClock,
    Snapshot,
    Store,
    actual_content,
    compact,
    expected_content,
    read_snapshot,
)


def key(i: int) -> Item:
    return {"pk": {"S": f"user#{i:03d}"}, "sk": {"N": str(i % 4)}}


def digest(i: int) -> str:
    return key_hash(key(i))


def forget(s3: Any, manifest: Manifest, table: str = TABLE) -> None:
    """Remove a committed manifest for good (every version), to rebuild the same as-of."""
    name = catalog.manifest_key("", table, manifest.id)
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=name).get("Versions", []):
        s3.delete_object(Bucket=BUCKET, Key=name, VersionId=version["VersionId"])
    assert catalog.load_manifest(s3, BUCKET, "", table, manifest.id) is None


def snapshot_objects(s3: Any, table: str = TABLE) -> list[str]:
    prefix = catalog.snapshots_prefix("", table)
    response = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in response.get("Contents", []))


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], moto_aws: None) -> Cli:
    """Run `ddb-backup ARGS...` in process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def iso(clock: SimClock, offset_s: float) -> str:
    return format_time_us(clock.at(offset_s))


def assert_source(result: CompactionResult, store: Store) -> None:
    """With a journal that covers everything, no item version is listed or read."""
    counts = result.manifest.counts
    if store.mode == ITEMS:
        assert result.manifest.change_source == "listing"
        assert counts.journal_objects == 0
    else:
        assert result.manifest.change_source == "journal"
        assert (counts.versions_listed, counts.objects_read) == (0, 0)


# Every exactness test below runs on each way of writing: item objects only, the journal
# beside them (read instead of listing), and the journal alone.
each_mode = pytest.mark.parametrize("store", MODES, indirect=True)


# --- full then incremental equals full ----------------------------------------------------


@each_mode
def test_full_then_incremental_equals_full(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    first: dict[int, Change] = {}
    for i in range(24):
        first[i] = store.put(key(i), {"n": {"N": str(i)}, "tag": {"S": "v1"}}, event_s=i / 4)
    for i in range(0, 24, 4):
        store.put(
            key(i), {"n": {"N": str(i)}, "tag": {"S": "v2"}}, event_s=8 + i / 10, name="MODIFY"
        )
    store.put(key(1), None, event_s=11)  # removed before T1 ...
    store.put(key(2), None, event_s=11.5)  # ... and re-inserted after it
    t1 = 20
    # After T1 but before the T1 run lists: listed by it, folded only by the next run.
    store.put(key(10), {"tag": {"S": "after T1"}}, event_s=25, name="MODIFY")
    r1 = compact(s3_client, sim_clock, as_of_s=t1, run_s=30)
    assert r1.created
    assert r1.manifest.base is None
    assert_source(r1, store)
    s1 = read_snapshot(s3_client, r1.manifest)
    assert actual_content(s1) == expected_content(store, sim_clock.at(t1))
    assert len(s1.rows) == 22

    # Written after the T1 snapshot was built:
    store.put(key(3), {"tag": {"S": "late"}}, event_s=19, write_s=40, name="MODIFY")  # <= T1
    store.put(key(1), {"tag": {"S": "older"}}, event_s=5, write_s=41, name="INSERT")  # stays gone
    store.put(key(2), {"tag": {"S": "again"}}, event_s=45, name="INSERT")  # re-insert
    store.put(key(5), None, event_s=46)  # removal
    store.write(first[8], write_s=47)  # stale re-drive, after key 8's modify
    store.write(first[9], write_s=47.5)  # replay of the current change
    store.put(key(7), {"tag": {"S": "wins"}}, event_s=50, name="MODIFY", sequence="10000")
    store.put(
        key(7), {"tag": {"S": "loses"}}, event_s=50, write_s=51, name="MODIFY", sequence="9999"
    )
    store.put(key(30), {"tag": {"S": "new"}}, event_s=52)
    store.put(key(9), {"tag": {"S": "future"}}, event_s=200, name="MODIFY")  # after T2
    t2 = 60
    r2 = compact(s3_client, sim_clock, as_of_s=t2, run_s=210)
    assert r2.created
    assert r2.manifest.base == r1.manifest.id
    assert_source(r2, store)
    assert r2.manifest.counts.carried_rows > 0, "unchanged rows are carried from the base"
    assert r2.manifest.counts.changed_keys < r2.manifest.counts.items
    s2 = read_snapshot(s3_client, r2.manifest)
    expected = expected_content(store, sim_clock.at(t2))
    assert actual_content(s2) == expected
    items = s2.items()
    assert digest(1) not in items
    assert digest(5) not in items
    assert {i: items[digest(i)]["tag"]["S"] for i in (2, 3, 7, 8, 9, 10, 30)} == {
        2: "again",  # re-inserted
        3: "late",  # late write, event time before T1
        7: "wins",  # same second: sequence 10000 > 9999
        8: "v2",  # the stale re-drive changed nothing
        9: "v1",  # the change after T2 is not in
        10: "after T1",
        30: "new",
    }

    forget(s3_client, r2.manifest)
    r3 = compact(s3_client, sim_clock, as_of_s=t2, run_s=220, config=CompactionConfig(full=True))
    assert r3.created
    assert r3.manifest.base is None
    s3 = read_snapshot(s3_client, r3.manifest)
    # The same rows, down to the stored version each came from, and the same export.
    assert s2.content() == s3.content()
    assert s2.export_lines() == s3.export_lines()
    # And the same tombstones, which the next incremental run folds against.
    assert s2.removed == s3.removed
    assert set(s2.removed) == {digest(1), digest(5)}
    assert r2.manifest.columns == r3.manifest.columns
    assert r2.manifest.counts.items == r3.manifest.counts.items == len(expected)


@each_mode
def test_incremental_across_unit_sizes(s3_client: Any, store: Store, sim_clock: SimClock) -> None:
    """A base in 16 units, the next snapshot in one unit, the next in 16 again."""
    for i in range(30):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i / 10)
    one = CompactionConfig(shard_digits=0)
    sixteen = CompactionConfig(shard_digits=1)
    r1 = compact(s3_client, sim_clock, as_of_s=10, run_s=20, config=sixteen)
    assert r1.manifest.shard_digits == 1
    data_files = [f for f in r1.manifest.files if f.format != "aws-export"]
    assert {f.unit for f in data_files} <= set(units_for(1))
    assert len(r1.manifest.files_of("parquet")) > 1
    for i in range(0, 30, 3):
        store.put(key(i), {"n": {"N": str(-i)}}, event_s=30 + i / 10, name="MODIFY")
    store.put(key(4), None, event_s=40)
    r2 = compact(s3_client, sim_clock, as_of_s=50, run_s=60, config=one)
    assert r2.manifest.base == r1.manifest.id
    assert {f.unit for f in r2.manifest.files} == {""}
    s2 = read_snapshot(s3_client, r2.manifest)
    assert actual_content(s2) == expected_content(store, sim_clock.at(50))
    store.put(key(5), None, event_s=70)
    store.put(key(31), {"n": {"N": "31"}}, event_s=71)
    r3 = compact(s3_client, sim_clock, as_of_s=80, run_s=90, config=sixteen)
    assert r3.manifest.base == r2.manifest.id
    assert_source(r3, store)
    s3 = read_snapshot(s3_client, r3.manifest)
    assert actual_content(s3) == expected_content(store, sim_clock.at(80))
    forget(s3_client, r3.manifest)
    full = compact(
        s3_client,
        sim_clock,
        as_of_s=80,
        run_s=100,
        config=CompactionConfig(full=True, shard_digits=0),
    )
    rebuilt = read_snapshot(s3_client, full.manifest)
    assert rebuilt.content() == s3.content()
    assert rebuilt.export_lines() == s3.export_lines()


def test_units_of_three_digits_list_inside_their_shard_folder(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    """Keys live under <hash[:2]>/<hash>.json: a 3-digit unit must list inside that folder."""
    root = items_prefix("", TABLE)
    for i in range(40):
        name = object_key("", TABLE, key(i))
        for digits in range(4):
            unit = digest(i)[:digits]
            assert name.startswith(unit_listing_prefix(root, unit))
            other = unit[:-1] + ("0" if unit[-1:] != "0" else "1") if unit else None
            if other is not None:
                assert not name.startswith(unit_listing_prefix(root, other))
    assert SHARD_HEX_DIGITS == 2

    for i in range(3):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    plan = StatePlan(BUCKET, "", TABLE, sim_clock.at(10), None, None, 3)
    with ThreadPoolExecutor(4) as reads:
        reader = StateReader(s3_client, plan, reads)
        for i in range(3):
            state = reader.unit(digest(i)[:3])
            assert [r.key_hash for r in state.rows] == [digest(i)]
            assert state.listed == 1


@pytest.mark.parametrize("unit_digits", [0, 1, 3])
def test_a_large_unit_lists_its_sixteen_sub_prefixes_with_the_same_result(
    s3_client: Any, store: Store, sim_clock: SimClock, unit_digits: int
) -> None:
    for version in range(2):
        for i in range(60):
            store.put(key(i), {"v": {"N": str(version)}}, event_s=version + i / 100)
    prefixes: list[str] = []

    def record(params: dict[str, Any], **kwargs: Any) -> None:
        prefixes.append(params["Prefix"])

    s3_client.meta.events.register("before-parameter-build.s3.ListObjectVersions", record)
    unit = digest(7)[:unit_digits]
    small = StatePlan(BUCKET, "", TABLE, sim_clock.at(10), None, None, unit_digits)
    large = StatePlan(
        BUCKET, "", TABLE, sim_clock.at(10), None, None, unit_digits, estimated_items=10**9
    )
    states = []
    for plan in (small, large):
        prefixes.clear()
        with ThreadPoolExecutor(4) as reads:
            states.append(StateReader(s3_client, plan, reads).unit(unit))
        listed = sorted(prefixes)
        root = items_prefix("", TABLE)
        if plan is small:
            assert listed == [unit_listing_prefix(root, unit)]
        else:
            assert listed == sorted(unit_listing_prefix(root, unit + h) for h in "0123456789abcdef")
    one, split = states
    assert [(r.key_hash, r.version_id) for r in split.rows] == [
        (r.key_hash, r.version_id) for r in one.rows
    ]
    assert split.listed == one.listed == 2 * sum(1 for i in range(60) if digest(i).startswith(unit))
    assert digest(7) in {r.key_hash for r in split.rows}


# --- the manifest and the typed columns ---------------------------------------------------


MIXED_ITEMS: list[Item] = [
    {
        "name": {"S": "first"},
        "price": {"N": "12.5"},
        "qty": {"N": "3"},
        "big": {"N": "1E+100"},
        "flag": {"BOOL": True},
        "data": {"B": base64.b64encode(b"\x00\x01\xff").decode()},
        "tags": {"SS": ["a", "b"]},
        "nums": {"NS": ["1", "2.5"]},
        "bins": {"BS": ["AAE="]},
        "lst": {"L": [{"S": "x"}, {"N": "1"}]},
        "m": {"M": {"k": {"S": "v"}}},
        "mixed": {"S": "text"},
        "maybe": {"NULL": True},
    },
    {
        "name": {"S": ""},
        "price": {"N": "0.25"},
        "qty": {"N": "1E+2"},
        "big": {"N": "7"},
        "flag": {"BOOL": False},
        "data": {"B": ""},
        "mixed": {"N": "5"},
        "maybe": {"S": "set"},
    },
    {"name": {"S": "third"}, "price": {"N": "-0"}, "mixed": {"BOOL": True}},
]
MIXED_TYPES = {
    "pk": "varchar",
    "sk": "decimal(38,0)",
    "name": "varchar",
    "price": "decimal(38,2)",
    "qty": "decimal(38,0)",
    "big": "double",  # 1E+100 does not fit DECIMAL(38, s)
    "flag": "boolean",
    "data": "blob",
    "tags": "json",
    "nums": "json",
    "bins": "json",
    "lst": "json",
    "m": "json",
    "mixed": "json",  # S, N and BOOL across items
    "maybe": "varchar",  # NULL is SQL NULL in a typed column
}


def _check_typed_columns(snapshot: Snapshot, sim_clock: SimClock) -> None:
    """The Parquet schema follows the manifest's column types; values have natural types."""
    for column in snapshot.manifest.columns:
        assert snapshot.schema.field(column.name).type == arrow_type(column.type), column.name
    # Data layout 2: the canonical key text and the rest of the item; no S3 version ids.
    for name in ("__key", "__rest", "__sequence_number", "__event_name"):
        assert snapshot.schema.field(name).type == pa.string()
    assert snapshot.schema.field("__event_time").type == pa.timestamp("us", tz="UTC")
    assert snapshot.manifest.data_layout == 2
    for gone in ("__key_hash", "__item", "__version_id", "__written_at"):
        assert gone not in snapshot.schema.names
    row = snapshot.rows[digest(1)]
    assert row["price"] == decimal.Decimal("0.25")
    assert row["qty"] == decimal.Decimal("100")
    assert row["big"] == 7.0
    assert row["data"] == b""
    assert row["maybe"] == "set"
    assert json.loads(row["mixed"]) == 5
    row0 = snapshot.rows[digest(0)]
    assert row0["maybe"] is None
    assert row0["qty"] == decimal.Decimal("4")
    assert row0["data"] == b"\x00\x01\xff"
    assert json.loads(row0["tags"]) == ["a", "b"]
    assert json.loads(row0["m"]) == {"k": "v"}
    assert row0["__event_time"] == sim_clock.at(8)
    assert row0["__event_name"] == "MODIFY"


def test_manifest_files_schema_and_counts(
    s3_client: Any, ddb_client: Any, orders_table: str, store: Store, sim_clock: SimClock
) -> None:
    for i, image in enumerate(MIXED_ITEMS):
        store.put(key(i), image, event_s=i)
    store.put(key(3), {"name": {"S": "gone"}}, event_s=3.5)
    store.put(key(3), None, event_s=4)
    store.put(key(0), {**MIXED_ITEMS[0], "qty": {"N": "4"}}, event_s=8, name="MODIFY")
    result = compact(s3_client, sim_clock, as_of_s=10, run_s=20, dynamodb=ddb_client)
    manifest = result.manifest

    assert manifest.key_schema == (
        KeyAttribute("pk", "S", "HASH"),
        KeyAttribute("sk", "N", "RANGE"),
    )
    assert manifest.key_schema_source == "describe_table"
    columns = {c.name: c.type for c in manifest.columns}
    assert columns == MIXED_TYPES
    assert [c.name for c in manifest.columns][:2] == ["pk", "sk"]
    assert manifest.counts.items == 3
    assert manifest.counts.versions_listed == 6
    assert manifest.counts.changed_keys == 4
    assert manifest.counts.carried_rows == 0
    assert manifest.counts.items <= manifest.counts.objects_read <= 6
    assert manifest.newest_event_time_us == sim_clock.at(8)
    assert manifest.as_of_us == sim_clock.at(10)
    assert manifest.listing_watermark_us <= manifest.built_at_us
    assert manifest.listing_watermark_us >= sim_clock.at(20)
    assert manifest.table == TABLE
    assert manifest.skipped == ()
    # 4 keys changed, 3 live: the removed one is kept as a tombstone.
    assert manifest.counts.removed == 1
    # aws-export: the DynamoDB-style manifests beside the JSON lines (test_export_manifests);
    # with a DynamoDB client, the table's settings document is listed too.
    assert {f.format for f in manifest.files} == {
        "parquet",
        "json.gz",
        "tombstones",
        "aws-export",
        "table-settings",
    }
    assert all(f.rows > 0 for f in manifest.files if f.format != "aws-export")
    assert manifest.total_bytes == sum(f.bytes for f in manifest.files) > 0

    # read_snapshot recomputes bytes, sha256 and rows of every listed file.
    _check_typed_columns(read_snapshot(s3_client, manifest), sim_clock)

    # The stored manifest is the committed one, and it round-trips.
    name = catalog.manifest_key("", TABLE, manifest.id)
    body = s3_client.get_object(Bucket=BUCKET, Key=name)["Body"].read()
    document = json.loads(body)
    assert document["format"] == "ddb-backup-snapshot"
    assert document["version"] == 2
    assert document["as_of"] == iso(sim_clock, 10)
    # Every file is pinned to the S3 version the run wrote, with its MD5.
    for data_file in manifest.files:
        head = s3_client.head_object(Bucket=BUCKET, Key=data_file.key)
        assert data_file.version_id == head["VersionId"]
        assert data_file.md5
        assert data_file.bytes == head["ContentLength"]
    stats = {s.name: s for s in manifest.column_stats}
    assert set(stats) == set(columns)
    assert stats["pk"].tags == ("S",)
    assert stats["pk"].count == 3
    assert Manifest.from_json(body, name) == manifest
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == [manifest]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"pk": {"S": "a"}, "sk": {"N": "1"}}, (("pk", "S", None), ("sk", "N", None))),
        ({"id": {"B": "AAE="}}, (("id", "B", "HASH"),)),
    ],
)
def test_key_schema_is_recorded_without_a_live_table(
    s3_client: Any,
    ddb_client: Any,
    store: Store,
    sim_clock: SimClock,
    keys: Item,
    expected: tuple[tuple[str, str, str | None], ...],
) -> None:
    store.put(keys, {"v": {"S": "x"}}, event_s=1)
    manifest = compact(s3_client, sim_clock, as_of_s=5, run_s=6, dynamodb=ddb_client).manifest
    assert manifest.key_schema_source == "recorded"
    assert manifest.key_schema == tuple(KeyAttribute(*k) for k in expected)


def test_attributes_named_like_system_columns_stay_in_the_item(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    keys = {"__key_hash": {"S": "a key"}}
    image = {
        "__event_name": {"N": "5"},
        "__item": {"S": "x"},
        "__written_at": {"BOOL": True},
        "plain": {"S": "p"},
    }
    store.put(keys, image, event_s=1)
    manifest = compact(s3_client, sim_clock, as_of_s=5, run_s=6).manifest
    assert [(c.name, c.type) for c in manifest.columns] == [("plain", "varchar")]
    snapshot = read_snapshot(s3_client, manifest)
    for column in manifest.columns:
        assert snapshot.schema.field(column.name).type == arrow_type(column.type)
    row = snapshot.rows[key_hash(keys)]
    assert row["__key_hash"] == key_hash(keys)
    assert row["__event_name"] == "INSERT"
    assert json.loads(row["__item"]) == {**image, **keys}
    assert snapshot.export == [{"Item": {**image, **keys}}]


def test_a_table_with_every_item_removed(s3_client: Any, store: Store, sim_clock: SimClock) -> None:
    for i in range(3):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    for i in range(3):
        store.put(key(i), None, event_s=5 + i)
    empty = compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    assert empty.created
    assert empty.manifest.counts.items == 0
    assert read_snapshot(s3_client, empty.manifest).rows == {}
    store.put(key(1), {"n": {"N": "11"}}, event_s=30)
    again = compact(s3_client, sim_clock, as_of_s=40, run_s=50)
    assert again.manifest.base == empty.manifest.id
    snapshot = read_snapshot(s3_client, again.manifest)
    assert actual_content(snapshot) == expected_content(store, sim_clock.at(40))
    assert set(snapshot.rows) == {digest(1)}


# --- lossless ------------------------------------------------------------------------------

EVERY_TYPE: Item = {
    "n38": {"N": "12345678901234567890123456789012345678"},
    "n38_negative_small": {"N": "-1.2345678901234567890123456789012345678E-100"},
    "n_max": {"N": "9.9999999999999999999999999999999999999E+125"},
    "n_spelled": {"N": "1.50"},
    "s_empty": {"S": ""},
    "s_text": {"S": 'ünï 😀 "quoted" \\ / \n\t'},
    "b": {"B": base64.b64encode(bytes(range(256))).decode()},
    "bs": {"BS": ["AAE=", "/w==", base64.b64encode(b"\x00" * 10).decode()]},
    "ss": {"SS": ["", "a", "ü"]},
    "ns": {"NS": ["1", "-3E+5", "0.000000000000000000000000000000000000000001"]},
    "bool": {"BOOL": False},
    "null": {"NULL": True},
    "list": {"L": [{"S": ""}, {"N": "0.000"}, {"M": {"x": {"L": []}}}, {"B": "AA=="}]},
    "map": {
        "M": {
            "nested": {
                "M": {"deeper": {"SS": ["z"]}, "n": {"N": "99999999999999999999999999999999999999"}}
            },
            "": {"S": "empty attribute name"},
            "empty": {"M": {}},
        }
    },
}


def test_every_dynamodb_type_round_trips(s3_client: Any, store: Store, sim_clock: SimClock) -> None:
    keys_text = {"pk": {"S": "a/../b/ü/😀 " + "x" * 300}, "sk": {"N": "-0.5"}}
    store.put(keys_text, EVERY_TYPE, event_s=1)
    store.put(key(1), {"n38": {"N": "-99999999999999999999999999999999999999"}}, event_s=2)
    blob_store = Store(s3_client, BUCKET, sim_clock, table="blobs")
    blob_keys = {"id": {"B": base64.b64encode(b"\x00/\xff..").decode()}}
    blob_store.put(blob_keys, EVERY_TYPE, event_s=3)

    manifest = compact(s3_client, sim_clock, as_of_s=10, run_s=20).manifest
    snapshot = read_snapshot(s3_client, manifest)
    expected = {key_hash(keys_text): {**EVERY_TYPE, **keys_text}}
    expected[digest(1)] = {"n38": {"N": "-99999999999999999999999999999999999999"}, **key(1)}
    assert snapshot.items() == expected
    assert sorted(json.dumps(line, sort_keys=True) for line in snapshot.export) == sorted(
        json.dumps({"Item": item}, sort_keys=True) for item in expected.values()
    )
    # The lossless item is the stored image, byte for byte (numbers keep their spelling).
    stored = json.loads(encode_change(store.changes[0]))["newImage"]
    raw = snapshot.rows[key_hash(keys_text)]["__item"]
    assert json.loads(raw) == stored
    assert '"1.50"' in raw
    assert snapshot.rows[digest(1)]["n38"] == decimal.Decimal(
        "-99999999999999999999999999999999999999"
    )
    assert snapshot.rows[key_hash(keys_text)]["n38"] == decimal.Decimal(EVERY_TYPE["n38"]["N"])

    blobs = compact(s3_client, sim_clock, as_of_s=10, run_s=21, bucket=BUCKET, table="blobs")
    blob_snapshot = read_snapshot(s3_client, blobs.manifest)
    assert blob_snapshot.items() == {key_hash(blob_keys): {**EVERY_TYPE, **blob_keys}}
    assert blob_snapshot.rows[key_hash(blob_keys)]["id"] == b"\x00/\xff.."
    assert blob_snapshot.export == [{"Item": {**EVERY_TYPE, **blob_keys}}]


# --- the commit protocol --------------------------------------------------------------------


def _crash_in_commit(monkeypatch: pytest.MonkeyPatch, s3: Any) -> type[Exception]:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed between data files and manifest")

    monkeypatch.setattr(catalog, "commit", crash)
    return RuntimeError


def _fail_manifest_put(monkeypatch: pytest.MonkeyPatch, s3: Any) -> type[Exception]:
    def refuse(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Key", "").endswith("/manifest.json"):
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "injected"}}, "PutObject"
            )

    s3.meta.events.register("before-parameter-build.s3.PutObject", refuse, "inject-failure")
    return StorageError


@pytest.mark.parametrize("inject", [_crash_in_commit, _fail_manifest_put])
def test_crash_before_the_manifest_leaves_no_snapshot(
    s3_client: Any,
    store: Store,
    sim_clock: SimClock,
    monkeypatch: pytest.MonkeyPatch,
    cli: Cli,
    inject: Callable[[pytest.MonkeyPatch, Any], type[Exception]],
) -> None:
    for i in range(5):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    with monkeypatch.context() as patch:
        error = inject(patch, s3_client)
        with pytest.raises(error):
            compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    s3_client.meta.events.unregister(
        "before-parameter-build.s3.PutObject", unique_id="inject-failure"
    )

    written = snapshot_objects(s3_client)
    assert any(name.endswith(".parquet") for name in written), "the data files were written"
    assert not any(name.endswith("manifest.json") for name in written)
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == []
    assert catalog.newest_at_or_before(s3_client, BUCKET, "", TABLE, None) is None
    code, out, _ = cli("snapshots", "--bucket", BUCKET, "--table", TABLE, "--json")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["snapshots"] == []

    rerun = compact(s3_client, sim_clock, as_of_s=10, run_s=30)
    assert rerun.created
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == [rerun.manifest]
    snapshot = read_snapshot(s3_client, rerun.manifest)
    assert actual_content(snapshot) == expected_content(store, sim_clock.at(10))
    # Only the committed run's files are listed; the crashed run's are orphans.
    listed = {f.key for f in rerun.manifest.files}
    assert all(f"/run-{rerun.manifest.run_id}/" in name for name in listed)
    code, out, _ = cli("snapshots", "--bucket", BUCKET, "--table", TABLE, "--json")
    assert [s["id"] for s in json.loads(out.splitlines()[-1])["snapshots"]] == [rerun.manifest.id]


def _meet_before_commit(monkeypatch: pytest.MonkeyPatch, runs: int) -> None:
    """Every run waits for the others just before its commit, so that all reach it.

    The conditional writes themselves are sent one after the other: S3 decides atomically,
    moto's check-then-put does not, and that is not what is tested here.
    """
    barrier = threading.Barrier(runs, timeout=60)
    lock = threading.Lock()
    commit = catalog.commit

    def meet(*args: Any, **kwargs: Any) -> None:
        barrier.wait()
        with lock:
            commit(*args, **kwargs)

    monkeypatch.setattr(catalog, "commit", meet)


def test_concurrent_compactions_commit_exactly_one(
    s3_client: Any, store: Store, sim_clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(8):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    sim_clock.set(20)
    _meet_before_commit(monkeypatch, 2)
    clients = [boto3.client("s3", region_name="us-east-1") for _ in range(2)]
    outcomes: list[CompactionResult | Exception] = []

    def run(client: Any) -> None:
        from compaction.compactor import Compactor

        try:
            outcomes.append(
                Compactor(client, BUCKET, TABLE, clock=sim_clock.time).run(sim_clock.at(10))
            )
        except Exception as e:  # noqa: BLE001 - collected and checked below
            outcomes.append(e)

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    wins = [o for o in outcomes if isinstance(o, CompactionResult)]
    losses = [o for o in outcomes if not isinstance(o, CompactionResult)]
    assert len(wins) == 1, outcomes
    assert len(losses) == 1, outcomes
    assert isinstance(losses[0], ConflictError)
    assert "committed by another run" in str(losses[0])
    assert wins[0].created
    committed = catalog.committed_snapshots(s3_client, BUCKET, "", TABLE)
    assert committed == [wins[0].manifest]
    read_snapshot(s3_client, committed[0])
    # Both runs wrote their data files; only the winner's are listed.
    runs = {
        name.split("/run-")[1].split("/")[0]
        for name in snapshot_objects(s3_client)
        if "/run-" in name
    }
    assert len(runs) == 2
    assert all(f"/run-{wins[0].manifest.run_id}/" in f.key for f in committed[0].files)


def test_concurrent_cli_compactions_the_loser_exits_4(
    s3_client: Any,
    store: Store,
    sim_clock: SimClock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for i in range(4):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    _meet_before_commit(monkeypatch, 2)
    sim_clock.set(20)  # S3's now: after the as-of
    args = ["compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(sim_clock, 10)]
    codes: list[int] = []
    threads = [
        threading.Thread(target=lambda: codes.append(main([*args, "--json"]))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    out, err = capsys.readouterr()
    assert sorted(codes) == [0, 4]
    errors = err.strip().splitlines()
    assert len(errors) == 1, err
    assert errors[0].startswith("ddb-backup: error: snapshot ")
    assert "committed by another run" in errors[0]
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["created"] is True
    assert len(catalog.committed_snapshots(s3_client, BUCKET, "", TABLE)) == 1


def test_rerunning_the_same_compaction_is_a_noop(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    for i in range(5):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    first = compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    files = snapshot_objects(s3_client)
    store.put(key(9), {"n": {"N": "9"}}, event_s=9, write_s=25)  # late, after the build
    again = compact(s3_client, sim_clock, as_of_s=10, run_s=30)
    assert first.created
    assert not again.created
    assert again.manifest == first.manifest
    assert snapshot_objects(s3_client) == files, "nothing was written"

    args = ["compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(sim_clock, 10)]
    code, out, _ = cli(*args, "--json")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["created"] is False
    assert summary["snapshot"] == first.manifest.id
    code, out, _ = cli(*args)
    assert code == 0
    assert "already committed" in out
    # The late change lands in the next snapshot.
    later = compact(s3_client, sim_clock, as_of_s=12, run_s=40)
    assert digest(9) in read_snapshot(s3_client, later.manifest).rows


# --- corrupt versions -----------------------------------------------------------------------


def test_corrupt_version_fails_the_run_naming_it(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    store.put(key(0), {"n": {"N": "0"}}, event_s=0)
    good = store.put(key(1), {"n": {"N": "1"}}, event_s=1)
    corrupt = store.put_raw(key(1), b'{"layout": 1, "eventName": "INS', write_s=5)
    with pytest.raises(CorruptVersionError) as raised:
        compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    assert corrupt.key in str(raised.value)
    assert corrupt.version_id in str(raised.value)
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == []

    code, out, err = cli(
        "compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(sim_clock, 10)
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ddb-backup: error: ")
    assert corrupt.key in lines[0]
    assert corrupt.version_id in lines[0]

    # A valid document stored under another item's object key is corrupt too.
    misplaced = store.put_raw(key(0), encode_change(good), write_s=21)
    result = compact(
        s3_client,
        sim_clock,
        as_of_s=10,
        run_s=30,
        config=CompactionConfig(skip_corrupt=True),
    )
    skipped = {(s.key, s.version_id) for s in result.manifest.skipped}
    assert skipped == {(corrupt.key, corrupt.version_id), (misplaced.key, misplaced.version_id)}
    assert all(isinstance(s, SkippedVersion) and s.reason for s in result.manifest.skipped)
    snapshot = read_snapshot(s3_client, result.manifest)
    assert actual_content(snapshot) == expected_content(store, sim_clock.at(10))
    # The row is the good version's change (layout 2 keeps no S3 version ids).
    assert snapshot.rows[digest(1)]["__sequence_number"] == good.sequence_number

    code, out, _ = cli(
        "compact",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--as-of",
        iso(sim_clock, 11),
        "--skip-corrupt",
        "--full",
        "--json",
    )
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["skipped_versions"] == 2


# --- removals, re-inserts and replays ----------------------------------------------------


@each_mode
def test_removals_reinserts_and_replays(s3_client: Any, store: Store, sim_clock: SimClock) -> None:
    history = [
        store.put(key(0), {"v": {"S": "a"}}, event_s=1),
        store.put(key(1), {"v": {"S": "c"}}, event_s=1.5),
        store.put(key(0), None, event_s=2),
        store.put(key(1), {"v": {"S": "d"}}, event_s=2.5, name="MODIFY"),
        store.put(key(0), {"v": {"S": "b"}}, event_s=3),
        store.put(key(1), None, event_s=4),
        store.put(key(2), {"v": {"S": "e"}}, event_s=0.5, write_s=4.5),
    ]
    snapshots = {}
    for as_of_s in (0.5, 1.5, 2.5, 3.5, 5):  # each incremental from the one before
        result = compact(s3_client, sim_clock, as_of_s=as_of_s, run_s=10 + as_of_s)
        assert_source(result, store)
        snapshot = read_snapshot(s3_client, result.manifest)
        assert actual_content(snapshot) == expected_content(store, sim_clock.at(as_of_s))
        snapshots[as_of_s] = snapshot
    assert set(snapshots[2.5].items()) == {digest(1), digest(2)}
    assert snapshots[3.5].items()[digest(0)]["v"] == {"S": "b"}
    assert set(snapshots[5].items()) == {digest(0), digest(2)}

    # Replays of every change, long after, in reverse order (stale re-drives written last).
    for offset, change in enumerate(reversed(history)):
        store.write(change, write_s=40 + offset)
    replayed = compact(s3_client, sim_clock, as_of_s=5.5, run_s=60)
    assert replayed.manifest.base == snapshots[5].manifest.id
    assert_source(replayed, store)
    after = read_snapshot(s3_client, replayed.manifest)
    assert after.content() == snapshots[5].content()  # the same versions, first writes
    full = compact(s3_client, sim_clock, as_of_s=6, run_s=61, config=CompactionConfig(full=True))
    assert read_snapshot(s3_client, full.manifest).content() == snapshots[5].content()


# --- reads per changed key ------------------------------------------------------------------


def test_incremental_reads_one_object_per_changed_key(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    keys = 40
    for version in range(3):  # three versions per key, written seconds apart
        for i in range(keys):
            store.put(key(i), {"v": {"N": str(version)}}, event_s=version * 4 + i / 100)
    gets: list[str] = []

    def count(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Key"].startswith(items_prefix("", TABLE)):
            gets.append(params["Key"])

    s3_client.meta.events.register("before-parameter-build.s3.GetObject", count)
    full = compact(s3_client, sim_clock, as_of_s=12, run_s=20)
    assert full.manifest.counts.versions_listed == 3 * keys
    assert full.manifest.counts.objects_read == keys == len(gets)

    changed = list(range(0, keys, 10))  # 10% of the keys, changed once
    for n, i in enumerate(changed):
        store.put(key(i), {"v": {"S": "changed"}}, event_s=100 + n, name="MODIFY")
    gets.clear()
    incremental = compact(s3_client, sim_clock, as_of_s=200, run_s=210)
    counts = incremental.manifest.counts
    assert incremental.manifest.base == full.manifest.id
    assert counts.changed_keys == len(changed)
    assert counts.objects_read == len(changed) == len(gets)
    assert sorted(gets) == sorted(object_key("", TABLE, key(i)) for i in changed)
    assert counts.carried_rows == keys - len(changed)
    snapshot = read_snapshot(s3_client, incremental.manifest)
    assert actual_content(snapshot) == expected_content(store, sim_clock.at(200))


@pytest.mark.parametrize(
    ("shard_digits", "workers", "per_unit"),
    [(0, 4, 32), (1, 4, 8), (1, 1, 32), (1, 64, 4)],
    ids=["one-unit", "16-units-4-at-once", "16-units-one-at-a-time", "floor-of-4"],
)
def test_units_running_at_once_share_the_reads_in_flight(
    s3_client: Any,
    store: Store,
    sim_clock: SimClock,
    monkeypatch: pytest.MonkeyPatch,
    shard_digits: int,
    workers: int,
    per_unit: int,
) -> None:
    for i in range(20):
        store.put(key(i), {"v": {"N": "1"}}, event_s=i / 10)
    seen: set[int] = set()
    real_phase = compactor_module.phase_changes

    def spy(task: Any, unit: str) -> Any:
        seen.add(task.read_concurrency)
        return real_phase(task, unit)

    monkeypatch.setattr(compactor_module, "phase_changes", spy)
    config = CompactionConfig(full=True, shard_digits=shard_digits, workers=workers)
    result = compact(s3_client, sim_clock, as_of_s=10, run_s=20, config=config)
    assert result.manifest.counts.items == 20
    assert seen == {per_unit}


# --- the command line -------------------------------------------------------------------------


def test_cli_compact_and_snapshots(
    s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    for i in range(6):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i)
    sim_clock.set(10)  # S3's now: at the as-of
    code, out, err = cli(
        "compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(sim_clock, 10), "--json"
    )
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert {"items", "versions_listed", "objects_read", "bytes_written", "seconds"} <= set(summary)
    manifest = catalog.committed_snapshots(s3_client, BUCKET, "", TABLE)[0]
    assert summary["items"] == 6 == manifest.counts.items
    assert summary["versions_listed"] == 6
    assert summary["objects_read"] == manifest.counts.objects_read
    assert summary["bytes_written"] == manifest.total_bytes
    assert summary["snapshot"] == manifest.id
    assert summary["created"] is True
    assert isinstance(summary["seconds"], int | float)

    store.put(key(0), None, event_s=30)
    sim_clock.set(40)
    epoch = str(sim_clock.at(40) // SEC)  # epoch seconds work too
    code, out, _ = cli("compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", epoch)
    assert code == 0
    # 1 of 6 keys changed: over the default share of 10%, so a full snapshot, and why
    assert f"full, built from {manifest.id}" in out
    assert "over --max-delta-share 0.1" in out
    store.put(key(1), None, event_s=50)
    sim_clock.set(60)
    code, out, _ = cli(
        "compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(sim_clock, 60), "--delta"
    )
    assert code == 0
    second = catalog.committed_snapshots(s3_client, BUCKET, "", TABLE)[1]
    assert f"delta of {second.id}, chain depth 1" in out
    code, out, _ = cli("snapshots", "--bucket", BUCKET, "--table", TABLE, "--json")
    assert code == 0
    listed = json.loads(out.strip().splitlines()[-1])["snapshots"]
    assert [(s["as_of"], s["items"], s["base"], s["kind"], s["parent"]) for s in listed] == [
        (iso(sim_clock, 10), 6, None, "full", None),
        (iso(sim_clock, 40), 5, manifest.id, "full", None),
        (iso(sim_clock, 60), 4, second.id, "delta", second.id),
    ]
    assert all({"id", "as_of", "items", "bytes", "base", "depth"} <= set(s) for s in listed)
    assert listed[0]["id"] == manifest.id
    assert listed[0]["bytes"] == manifest.total_bytes
    assert listed[2]["bytes"] < listed[1]["bytes"], "a delta holds only what changed"
    code, out, _ = cli("snapshots", "--bucket", BUCKET, "--table", TABLE)
    assert code == 0
    assert manifest.id in out
    last = out.strip().splitlines()[-1].split()
    assert (last[2], last[3], last[5]) == ("delta:1", "4", second.id)
    with pytest.raises(SystemExit) as usage:
        cli("compact", "--bucket", BUCKET, "--table", TABLE, "--full", "--delta")
    assert usage.value.code == 2


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddb-backup: error:")
    assert "Traceback" not in err
    return lines[0]


def test_cli_errors(s3_client: Any, store: Store, sim_clock: SimClock, cli: Cli) -> None:
    store.put(key(0), {"n": {"N": "0"}}, event_s=0)
    future = format_time_us(sim_clock.at(3600))  # S3's clock is the simulated one
    code, _, err = cli("compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", future)
    assert code == 2
    assert "later than S3's clock" in _one_error_line(err)
    code, _, err = cli("compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", "yesterday")
    assert code == 2
    _one_error_line(err)

    sim_clock.set(5)
    code, _, err = cli(
        "compact", "--bucket", BUCKET, "--table", "unknown", "--as-of", iso(sim_clock, 5)
    )
    assert code == 3
    assert "unknown" in _one_error_line(err)
    code, _, err = cli("snapshots", "--bucket", BUCKET, "--table", "unknown")
    assert code == 3
    _one_error_line(err)

    code, _, err = cli(
        "compact", "--bucket", "no-such-bucket", "--table", TABLE, "--as-of", iso(sim_clock, 5)
    )
    assert code == 3
    assert "no-such-bucket" in _one_error_line(err)
    code, _, err = cli("snapshots", "--bucket", "no-such-bucket", "--table", TABLE)
    assert code == 3
    _one_error_line(err)
    assert catalog.committed_snapshots(s3_client, BUCKET, "", TABLE) == []
