"""Late changes and restores from object versions alone (no snapshot)."""

from __future__ import annotations

import time
from typing import Any

from backup_lambda.layout import key_hash
from tests.jobs.restore.restore_fixtures import (
    SECOND,
    Backup,
    backup,  # noqa: F401 - fixture
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)


class CountingS3:
    """Delegates to an S3 client and counts GETs of change objects (not snapshot files)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.change_gets = 0

    def get_object(self, **kwargs: Any) -> Any:
        if "/v1/items/" in kwargs["Key"]:
            self.change_gets += 1
        return self._s3.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def test_late_changes_land_by_event_time_and_only_they_are_read(backup: Backup) -> None:  # noqa: F811
    """A snapshot built well after its versions were written carries them; late changes
    (event time before the snapshot's as-of, written after it was built) are still
    included, and a restore reads only those from the object versions."""
    b = backup
    base = now_us() - 3600 * SECOND
    for sk in range(8):
        b.item("p", sk, base + sk * SECOND, status="placed")
    b.remove("p", 7, base + 20 * SECOND)
    # LastModified is the write time cut to the second, and 1 s of clock skew is allowed:
    # a restore takes versions with LastModified <= as-of - 2 s as folded into the snapshot.
    # Wait until the last write falls there, so that the snapshot carries them.
    last_write = time.time()
    time.sleep(int(last_write) + 2.05 - last_write)
    as_of = now_us()
    manifest = b.compact(as_of)
    assert manifest.counts.items == 7

    b.item("p", 1, as_of - 5 * SECOND, status="late modify")
    b.remove("p", 2, as_of - 4 * SECOND)
    b.item("p", 9, as_of - 3 * SECOND, status="late insert")
    b.item("p", 3, as_of + 10 * SECOND, status="after the as-of")

    counting = CountingS3(b.s3)
    restore_backup = Backup(counting, b.dynamodb, changes=b.changes)
    report = restore_backup.restore("late", as_of, create_table=True)
    assert report.snapshot == manifest.id
    assert b.target_items("late") == b.oracle(as_of)
    assert b.target_items("late")[key_hash(key_of("p", 1))]["status"] == {"S": "late modify"}
    assert key_hash(key_of("p", 2)) not in b.target_items("late")
    assert counting.change_gets == 4  # the late versions (and the later one), nothing else

    # Before the late changes' event times the snapshot cannot be used; the object
    # versions alone still give the state.
    earlier = as_of - 6 * SECOND
    assert b.restore("earlier", earlier, create_table=True).snapshot is None
    assert b.target_items("earlier") == b.oracle(earlier)


def test_restore_without_any_snapshot_uses_object_versions(backup: Backup) -> None:  # noqa: F811
    b = backup
    base = now_us() - 600 * SECOND
    for sk in range(30):
        b.item("q", sk, base + sk * SECOND, status="v1")
    for sk in range(0, 30, 3):
        b.item("q", sk, base + 100 * SECOND + sk, status="v2")
    for sk in range(1, 30, 5):
        b.remove("q", sk, base + 200 * SECOND)
    for as_of in (base + 50 * SECOND, base + 150 * SECOND, now_us()):
        target = f"versions-{as_of}"
        report = b.restore(target, as_of, create_table=True)
        assert report.snapshot is None
        assert b.target_items(target) == b.oracle(as_of)
