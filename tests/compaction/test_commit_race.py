"""The commit stays single-winner on S3 servers that ignore If-None-Match on versioned
buckets (Ceph RGW 16): the oldest manifest version is the commit, a later one withdraws."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from backup_lambda.errors import ConflictError
from compaction import catalog
from compaction.manifest import Counts, KeyAttribute, Manifest

TABLE = "orders"


class IgnoresIfNoneMatch:
    """An S3 client whose PutObject drops the condition, like RGW 16 on versioned buckets."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def put_object(self, **kwargs: Any) -> Any:
        kwargs.pop("IfNoneMatch", None)
        return self._s3.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def manifest(run_id: str) -> Manifest:
    return Manifest(
        id="20261128T120000.000000Z",
        table=TABLE,
        as_of_us=1,
        built_at_us=2,
        listing_watermark_us=2,
        base=None,
        shard_digits=0,
        key_schema=(KeyAttribute("pk", "S", "HASH"),),
        key_schema_source="recorded",
        columns=(),
        files=(),
        counts=Counts(0, 0, 0, 0, 0),
        newest_event_time_us=None,
        run_id=run_id,
    )


def test_second_commit_is_refused_even_when_the_server_ignores_the_condition(
    s3_client: Any, backup_bucket: str, sim_clock: Any
) -> None:
    # GIVEN a server that accepts a PUT despite If-None-Match
    s3 = IgnoresIfNoneMatch(s3_client)
    catalog.commit(s3, backup_bucket, "", manifest("first"))
    # (moto orders versions with equal LastModified arbitrarily; S3 never does)
    sim_clock.set(1)
    # WHEN a second run commits the same snapshot id
    with pytest.raises(ConflictError, match="committed by another run"):
        catalog.commit(s3, backup_bucket, "", manifest("second"))
    # THEN the first run's manifest is the snapshot, and the second left no version behind
    loaded = catalog.load_manifest(s3_client, backup_bucket, "", TABLE, manifest("x").id)
    assert loaded is not None
    assert loaded.run_id == "first"
    key = catalog.manifest_key("", TABLE, manifest("x").id)
    versions = s3_client.list_object_versions(Bucket=backup_bucket, Prefix=key)
    assert len(versions.get("Versions", [])) == 1
    assert not versions.get("DeleteMarkers")


def test_a_single_commit_on_such_a_server_succeeds(s3_client: Any, backup_bucket: str) -> None:
    s3 = IgnoresIfNoneMatch(s3_client)
    committed = dataclasses.replace(manifest("only"))
    catalog.commit(s3, backup_bucket, "", committed)
    loaded = catalog.load_manifest(s3_client, backup_bucket, "", TABLE, committed.id)
    assert loaded == committed


class LosesTheFirstAnswer:
    """The manifest PUT goes through, its answer is lost, and botocore sends it again."""

    def __init__(self, s3: Any, later: Callable[[], None]) -> None:
        self._s3 = s3
        self._later = later  # the retry is written later than the first attempt
        self.lost = False

    def put_object(self, **kwargs: Any) -> Any:
        if not self.lost:
            self.lost = True
            self._s3.put_object(**kwargs)
            self._later()
        return self._s3.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


@pytest.mark.parametrize("server", ["honours If-None-Match", "ignores If-None-Match"])
def test_a_commit_whose_answer_was_lost_is_this_runs_commit(
    s3_client: Any, backup_bucket: str, sim_clock: Any, server: str
) -> None:
    s3 = s3_client if server == "honours If-None-Match" else IgnoresIfNoneMatch(s3_client)
    # WHEN the retried PUT meets the manifest its own first attempt wrote
    lossy = LosesTheFirstAnswer(s3, lambda: sim_clock.set(1))
    catalog.commit(lossy, backup_bucket, "", manifest("mine"))
    # THEN that is the commit, not another run's: one version, this run's
    loaded = catalog.load_manifest(s3_client, backup_bucket, "", TABLE, manifest("x").id)
    assert loaded is not None
    assert loaded.run_id == "mine"
    key = catalog.manifest_key("", TABLE, manifest("x").id)
    versions = s3_client.list_object_versions(Bucket=backup_bucket, Prefix=key)
    assert len(versions.get("Versions", [])) == 1
