"""`query --as-of T` sees exactly the state a restore to T produces (and the oracle)."""

from __future__ import annotations

import base64
import functools
import json
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backup_lambda.ddbjson import AttributeValue, Item
from backup_lambda.layout import key_hash
from compaction.manifest import Manifest
from jobs.query import sql
from tests.jobs.restore.restore_fixtures import (
    MODES,
    SECOND,
    Backup,
    Server,
    key_of,
    now_us,
    run_cli,
    server,  # noqa: F401 - fixture
    standin_server,  # noqa: F401 - fixture
)
from tests.support import answered

BUCKET = "query-as-of"


class Data:
    def __init__(self, backup: Backup, base: int, newest: Manifest, known: int) -> None:
        self.backup = backup
        self.bucket = backup.bucket
        self.base = base
        self.newest = newest
        self.known_at_newest = known  # changes written before the newest snapshot


@pytest.fixture(scope="module", params=MODES)
def data(standin_server: Server, request: pytest.FixtureRequest) -> Data:  # noqa: F811
    """One history, written as item objects, with the journal beside them, or as the
    journal alone (a bucket each)."""
    b = standin_server.backup(f"{BUCKET}-{request.param}").declare_journal(request.param)
    base = now_us() - 3600 * SECOND

    def at(seconds: int) -> int:
        return base + seconds * SECOND

    for sk in range(12):
        b.put(
            key_of("p" + str(sk % 3), sk),
            at(sk),
            {
                **key_of("p" + str(sk % 3), sk),
                "amount": {"N": f"{sk}.{sk}"},
                "blob": {"B": base64.b64encode(bytes([sk, 0, 255])).decode()},
                "tags": {"SS": [f"t{sk}", "all"]},
            },
        )
    for sk in range(0, 12, 4):
        b.item("p" + str(sk % 3), sk, at(100 + sk), status="modified")
    b.remove("p1", 1, at(120))
    b.remove("p2", 2, at(121))
    b.item("p1", 1, at(250), status="back again")
    b.item("p9", 99, at(260), seq=7, status="tie loses")
    b.item("p9", 99, at(260), seq=12, status="tie wins")
    b.compact(at(110))
    newest = b.compact(at(300), shard_digits=1)  # several Parquet files
    assert len(newest.files_of("parquet")) > 1
    known = len(b.changes)
    b.item("p0", 3, at(290), status="late")
    b.remove("p2", 5, at(115))  # late, before the first snapshot
    b.item("p0", 6, at(400), status="after every snapshot")
    return Data(b, base, newest, known)


def _normal(value: AttributeValue) -> Any:
    ((tag, inner),) = value.items()
    if tag in {"SS", "NS", "BS"}:
        return {tag: sorted(inner)}
    if tag == "M":
        return {"M": {k: _normal(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [_normal(v) for v in inner]}
    return {tag: inner}


def normal(items: dict[str, Item]) -> dict[str, Any]:
    return {d: {n: _normal(v) for n, v in item.items()} for d, item in items.items()}


def queried_items(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    *as_of: str,
    bucket: str = BUCKET,
) -> dict[str, Item]:
    code, out, err = run_cli(
        capsys, server, bucket, "query", *as_of, "--format", "jsonl", "SELECT __item FROM items"
    )
    assert (code, answered(err)) == (0, ""), err
    items = [json.loads(line)["__item"] for line in out.splitlines()]
    return {key_hash({"pk": i["pk"], "sk": i["sk"]}): i for i in items}


POINTS = [50, 110, 115, 260, 290, 300, None]


@pytest.mark.parametrize("seconds", POINTS, ids=[str(p) for p in POINTS])
def test_query_as_of_equals_a_restore(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    seconds: int | None,
) -> None:
    b = data.backup
    as_of = now_us() if seconds is None else data.base + seconds * SECOND
    target = f"restored-{seconds}"
    b.restore(target, as_of, create_table=True)
    restored = b.target_items(target)
    queried = queried_items(capsys, server, "--as-of", str(as_of / SECOND), bucket=data.bucket)
    assert sorted(queried) == sorted(restored)
    assert normal(queried) == normal(restored)
    assert queried == b.oracle(as_of)


def test_without_as_of_the_newest_snapshot_is_queried(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    """The newest snapshot is the state as known when it was built: without the late
    changes written after it (those need --as-of)."""
    b = data.backup
    known = Backup(b.s3, b.dynamodb, bucket=b.bucket, changes=b.changes[: data.known_at_newest])
    assert queried_items(capsys, server, bucket=b.bucket) == known.oracle(data.newest.as_of_us)
    with_late = queried_items(
        capsys, server, "--as-of", str(data.newest.as_of_us / SECOND), bucket=b.bucket
    )
    assert with_late == b.oracle(data.newest.as_of_us)
    assert with_late != known.oracle(data.newest.as_of_us)


def test_typed_columns_agree_with_the_state(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
) -> None:
    as_of = data.base + 200 * SECOND
    code, out, _ = run_cli(
        capsys,
        server,
        data.bucket,
        "query",
        "--as-of",
        str(as_of / SECOND),
        "--format",
        "jsonl",
        "SELECT pk, sk, amount, status, hex(blob) AS blob, tags FROM items ORDER BY sk",
    )
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    expected = sorted(data.backup.oracle(as_of).values(), key=lambda i: int(i["sk"]["N"]))
    assert [int(r["sk"]) for r in rows] == [int(i["sk"]["N"]) for i in expected]
    for row, item in zip(rows, expected, strict=True):
        assert row["pk"] == item["pk"]["S"]
        amount = item.get("amount")
        assert (None if row["amount"] is None else Decimal(str(row["amount"]))) == (
            Decimal(amount["N"]) if amount else None
        )
        assert row["status"] == item.get("status", {}).get("S")
        blob = item.get("blob")
        assert row["blob"] == (base64.b64decode(blob["B"]).hex().upper() if blob else None)
        assert (sorted(row["tags"]) if row["tags"] else None) == (
            sorted(item["tags"]["SS"]) if "tags" in item else None
        )


@pytest.fixture
def tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the query's local files go to."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_as_of_reads_unit_by_unit_into_local_files_removed_after(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    tmp_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Memory holds one unit: each unit's rows become a local Parquet file, and the
    files are gone once the query has printed its result."""
    monkeypatch.setattr(sql, "plan_state", functools.partial(sql.plan_state, shard_digits=1))
    written: list[tuple[Path, int]] = []
    real = sql.write_parquet

    def spy(path: Path, spill: Any, columns: Any) -> int:
        written.append((path, spill.num_rows))
        return real(path, spill, columns)

    monkeypatch.setattr(sql, "write_parquet", spy)
    as_of = now_us()
    queried = queried_items(capsys, server, "--as-of", str(as_of / SECOND), bucket=data.bucket)
    assert queried == data.backup.oracle(as_of)
    assert len(written) > 1, "one file per unit with rows"
    assert sum(rows for _, rows in written) == len(queried)
    assert {path.parent.parent for path, _ in written} == {tmp_dir}
    assert list(tmp_dir.iterdir()) == []


def test_as_of_files_are_removed_when_the_sql_fails(
    capsys: pytest.CaptureFixture[str],
    server: Server,  # noqa: F811
    data: Data,
    tmp_dir: Path,
) -> None:
    code, out, err = run_cli(
        capsys,
        server,
        data.bucket,
        "query",
        "--as-of",
        str(now_us() / SECOND),
        "SELECT nope FROM items",
    )
    assert (code, out) == (1, "")
    assert "nope" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_dir.iterdir()) == []
