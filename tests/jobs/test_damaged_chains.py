"""A delta chain whose parent is missing or damaged (issue 14), beside the full snapshots of
test_damaged_snapshots.py.

The chain: a full snapshot, a delta on it (the parent) and a delta on that (the newest).
The parent's manifest is deleted or unreadable, or one of its files (or the full
snapshot's) is missing or damaged at its pinned version. Every reader of the newest
snapshot (query, query --as-of, restore, restore --dry-run, compact's next delta, drill)
stops with one line naming what is broken (exit 6; the drill's 5), never a smaller table;
`compact --rebuild` then writes a full snapshot that every reader reads exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from compaction import catalog
from compaction.manifest import Manifest
from compaction.policy import SnapshotPolicy
from jobs.main import EXIT_DRILL_FAILED, EXIT_INTEGRITY
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    mocked,  # noqa: F401 - fixture
    now_us,
)
from tests.jobs.test_damaged_snapshots import READERS, cli, count, damage, iso
from tests.support import answered

DELTA = SnapshotPolicy(kind="delta")


class Chain:
    def __init__(self, b: Backup) -> None:
        base = now_us() - 3600 * SECOND
        for sk in range(10):
            b.item("a", sk, base + sk * SECOND, status="placed")
        self.full: Manifest = b.compact(base + 20 * SECOND)
        b.item("a", 1, base + 30 * SECOND, status="paid")
        b.remove("a", 0, base + 31 * SECOND)
        b.item("a", 10, base + 32 * SECOND, status="placed")
        self.parent: Manifest = b.compact(base + 40 * SECOND, policy=DELTA)
        b.item("a", 2, base + 50 * SECOND, status="paid")
        b.remove("a", 10, base + 51 * SECOND)
        self.newest: Manifest = b.compact(base + 60 * SECOND, policy=DELTA)
        assert (self.parent.kind, self.parent.parent) == ("delta", self.full.id)
        assert (self.newest.kind, self.newest.parent) == ("delta", self.parent.id)
        assert self.parent.files_of("tombstones")
        assert self.newest.files_of("tombstones")
        b.item("a", 99, base + 70 * SECOND, status="after")
        self.later = base + 80 * SECOND
        self.backup = b

    # The readers of test_damaged_snapshots take these two.
    @property
    def older(self) -> Manifest:
        return self.full

    @property
    def items(self) -> int:
        return len(self.backup.oracle(self.later))


@pytest.fixture
def chain(backup: Backup) -> Chain:  # noqa: F811
    return Chain(backup)


def _manifest_deleted(c: Chain) -> str:
    name = catalog.manifest_key("", TABLE, c.parent.id)
    s3 = c.backup.s3
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=name)["Versions"]:
        s3.delete_object(Bucket=BUCKET, Key=name, VersionId=version["VersionId"])
    return f"is a delta of snapshot {c.parent.id}, which is not committed"


def _manifest_unreadable(c: Chain) -> str:
    name = catalog.manifest_key("", TABLE, c.parent.id)
    c.backup.s3.put_object(Bucket=BUCKET, Key=name, Body=b'{"format": "ddb-backup-snapsh')
    return name


def _file(c: Chain, level: Manifest, kind: str, how: str) -> str:
    (data_file,) = level.files_of(kind)
    damage(c.backup.s3, data_file, how)
    return data_file.key


DAMAGES: dict[str, Callable[[Chain], str]] = {
    "parent-manifest-deleted": _manifest_deleted,
    "parent-manifest-unreadable": _manifest_unreadable,
    "parent-parquet-missing": lambda c: _file(c, c.parent, "parquet", "missing"),
    "parent-parquet-truncated": lambda c: _file(c, c.parent, "parquet", "truncated"),
    "parent-parquet-rows-dropped": lambda c: _file(c, c.parent, "parquet", "replaced"),
    "parent-tombstones-missing": lambda c: _file(c, c.parent, "tombstones", "missing"),
    "full-parquet-not-parquet": lambda c: _file(c, c.full, "parquet", "not-parquet"),
}
# Every reader meets the first two kinds; the rest are met by a restore and a query.
EVERY_READER = ["parent-manifest-deleted", "parent-parquet-missing"]
CASES = [(d, r) for d in EVERY_READER for r in sorted(READERS)] + [
    (d, r) for d in sorted(DAMAGES) if d not in EVERY_READER for r in ("restore", "query")
]


def manifests(s3: Any) -> set[str]:
    """The snapshots with a manifest object (readable or not)."""
    root = catalog.snapshots_prefix("", TABLE)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=root).get("Contents", [])
    return {
        o["Key"][len(root) :].split("/")[0] for o in listed if o["Key"].endswith("/manifest.json")
    }


@pytest.mark.parametrize(("how", "reader"), CASES)
def test_each_reader_of_a_broken_chain_fails_naming_it(
    chain: Chain, capsys: pytest.CaptureFixture[str], how: str, reader: str
) -> None:
    named = DAMAGES[how](chain)
    code, out, err = cli(capsys, *READERS[reader](chain))  # type: ignore[arg-type]
    assert code == (EXIT_DRILL_FAILED if reader == "drill" else EXIT_INTEGRITY), err
    assert err.startswith("ddb-backup: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert named in err
    assert "count_star" not in out  # no answer at all, let alone a smaller one
    tables = chain.backup.dynamodb.list_tables()["TableNames"]
    assert "copy" not in tables or chain.backup.target_items("copy") == {}
    assert manifests(chain.backup.s3) <= {chain.full.id, chain.parent.id, chain.newest.id}


@pytest.mark.parametrize("how", sorted(set(DAMAGES) - {"parent-manifest-unreadable"}))
def test_compact_rebuild_writes_a_full_snapshot_every_reader_reads(
    chain: Chain, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    DAMAGES[how](chain)
    code, out, err = cli(capsys, "compact", "--as-of", iso(chain.later), "--rebuild", "--json")
    assert (code, err) == (0, "")
    summary = json.loads(out.splitlines()[-1])
    assert (summary["kind"], summary["base"], summary["items"]) == ("full", None, chain.items)
    code, out, err = cli(capsys, "query", "--format", "jsonl", "SELECT count(*) FROM items")
    assert (code, answered(err)) == (0, "")
    assert count(out) == chain.items
    code, out, err = cli(capsys, "restore", "--to", "copy", "--create-table", "--json")
    assert (code, err) == (0, ""), err
    assert json.loads(out.splitlines()[-1])["snapshot"] == summary["snapshot"]
    assert chain.backup.target_items("copy") == chain.backup.oracle(now_us())


def test_an_unreadable_manifest_says_how_to_repair_it(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands that list the snapshots name it until it is repaired; the manifest's first
    S3 version is the committed one, and copied back the chain reads exactly again."""
    name = _manifest_unreadable(chain)
    for argv in (["snapshots"], ["query", "SELECT count(*) FROM items"]):
        code, _, err = cli(capsys, *argv)
        assert code == EXIT_INTEGRITY
        assert err.count("\n") == 1
        assert name in err
        assert "first S3 version is the one compaction committed: copy that back" in err
    s3 = chain.backup.s3
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=name)["Versions"]
    first = [v for v in versions if v["Key"] == name][-1]  # S3 lists a key's newest first
    s3.copy_object(
        Bucket=BUCKET,
        Key=name,
        CopySource={"Bucket": BUCKET, "Key": name, "VersionId": first["VersionId"]},
    )
    code, out, err = cli(capsys, "query", "--format", "jsonl", "SELECT count(*) FROM items")
    assert (code, answered(err)) == (0, "")
    assert count(out) == chain.newest.counts.items
    code, out, err = cli(capsys, "restore", "--to", "copy", "--create-table", "--json")
    assert (code, err) == (0, ""), err
    assert chain.backup.target_items("copy") == chain.backup.oracle(now_us())


def test_an_unreadable_older_manifest_is_passed_over_for_the_fallback(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged full snapshot after the chain: the error names the full snapshot before
    the chain (the chain's parent manifest does not parse), not the manifest's error."""
    newer = chain.backup.compact(chain.later, full=True)
    _manifest_unreadable(chain)
    (data_file,) = newer.files_of("parquet")
    damage(chain.backup.s3, data_file, "truncated")
    code, _, err = cli(capsys, "restore", "--to", "copy", "--create-table")
    assert code == EXIT_INTEGRITY
    assert err.count("\n") == 1
    assert data_file.key in err
    assert f"--snapshot {chain.full.id}" in err
