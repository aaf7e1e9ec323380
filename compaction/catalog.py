"""Where snapshots live, how they are found, and the atomic commit of a manifest.

    <prefix>/<table>/v1/snapshots/<id>/manifest.json          (written last, If-None-Match)
    <prefix>/<table>/v1/snapshots/<id>/run-<run>/parquet/...  (data files, written first)
    <prefix>/<table>/v1/snapshots/<id>/run-<run>/export/data/*.json.gz

A snapshot exists only once its manifest exists; readers trust only files it lists.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import ConflictError, CorruptSnapshotError
from backup_lambda.layout import LAYOUT_DIR, table_root
from compaction.manifest import Manifest, snapshot_id
from compaction.s3errors import translate
from compaction.s3read import get_bytes


def snapshots_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/snapshots/"


def manifest_key(prefix: str, table: str, snapshot: str) -> str:
    return f"{snapshots_prefix(prefix, table)}{snapshot}/manifest.json"


def run_prefix(prefix: str, table: str, snapshot: str, run_id: str) -> str:
    return f"{snapshots_prefix(prefix, table)}{snapshot}/run-{run_id}/"


def list_snapshot_ids(s3: Any, bucket: str, prefix: str, table: str) -> list[str]:
    """Ids of snapshot folders (committed or not), oldest first."""
    root = snapshots_prefix(prefix, table)
    ids: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/"):
            ids += [p["Prefix"][len(root) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, root) from e
    return sorted(ids)


def load_manifest(s3: Any, bucket: str, prefix: str, table: str, snapshot: str) -> Manifest | None:
    """The committed manifest of `snapshot`, or None if it was never committed."""
    key = manifest_key(prefix, table, snapshot)
    try:
        body = get_bytes(s3, bucket, key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise translate(e, bucket, key) from e
    except BotoCoreError as e:
        raise translate(e, bucket, key) from e
    try:
        return Manifest.from_json(body, f"s3://{bucket}/{key}")
    except CorruptSnapshotError as e:
        raise CorruptSnapshotError(
            f"{e}: snapshot {snapshot} cannot be read (its manifest's first S3 version is the "
            "one compaction committed: copy that back, or delete the manifest to drop the "
            "snapshot)"
        ) from e


def committed_snapshots(s3: Any, bucket: str, prefix: str, table: str) -> list[Manifest]:
    """Every committed snapshot, oldest as-of first."""
    manifests = [
        load_manifest(s3, bucket, prefix, table, i)
        for i in list_snapshot_ids(s3, bucket, prefix, table)
    ]
    return sorted((m for m in manifests if m is not None), key=lambda m: m.as_of_us)


def newest_at_or_before(
    s3: Any, bucket: str, prefix: str, table: str, as_of_us: int | None
) -> Manifest | None:
    """The newest committed snapshot with as-of <= `as_of_us` (any, if None)."""
    limit = snapshot_id(as_of_us) if as_of_us is not None else None
    for candidate in reversed(list_snapshot_ids(s3, bucket, prefix, table)):
        if limit is not None and candidate > limit:
            continue
        manifest = load_manifest(s3, bucket, prefix, table, candidate)
        if manifest is not None:
            return manifest
    return None


def _conflict(manifest: Manifest) -> ConflictError:
    return ConflictError(
        f"snapshot {manifest.id} was committed by another run; this run's files "
        f"under run-{manifest.run_id}/ are orphans (expire removes them)"
    )


def commit(s3: Any, bucket: str, prefix: str, manifest: Manifest) -> None:
    """Write the manifest only if no manifest exists for this snapshot id (If-None-Match).

    Some S3 implementations (Ceph RGW 16 on a versioned bucket) accept the write despite
    If-None-Match. So the commit then checks the key's versions: the oldest one is the
    commit; a run whose version is not the oldest withdraws it and reports the conflict.

    A PUT whose answer was lost is sent again by botocore; the manifest found then may be
    this run's own (the same run id): that is this run's commit, not a conflict.
    """
    key = manifest_key(prefix, manifest.table, manifest.id)
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=manifest.to_json(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
            if _run_of(s3, bucket, key, None) == manifest.run_id:
                return  # an earlier attempt of this PUT went through; its answer was lost
            raise _conflict(manifest) from e
        raise translate(e, bucket, key) from e
    except BotoCoreError as e:
        raise translate(e, bucket, key) from e
    mine = response.get("VersionId")
    if mine and mine != "null":
        _settle_race(s3, bucket, key, mine, manifest)


def _settle_race(s3: Any, bucket: str, key: str, mine: str, manifest: Manifest) -> None:
    try:
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
        # S3 lists one key's versions newest first: the last is the first write.
        versions = [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]
        if versions and versions[-1] != mine:
            first = _run_of(s3, bucket, key, versions[-1])
            s3.delete_object(Bucket=bucket, Key=key, VersionId=mine)
            if first != manifest.run_id:  # else: the first is this run's lost attempt
                raise _conflict(manifest)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e


def _run_of(s3: Any, bucket: str, key: str, version_id: str | None) -> str | None:
    """The run id of the manifest at `key` (that version, else the current one)."""
    try:
        body = get_bytes(s3, bucket, key, version_id)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, key) from e
    return Manifest.from_json(body, f"s3://{bucket}/{key}").run_id
