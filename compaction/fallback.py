"""When a snapshot fails verification: say so, and name the snapshot to fall back to.

Nothing is read from (or built on) a damaged snapshot. The error names the damaged file
(compaction.verified) and the newest older snapshot whose files are all present at their
pinned versions and sizes (one HEAD per file; `snapshots --verify ID` checks their
checksums too), which restore, query and compact accept as `--snapshot ID`; or
`compact --rebuild`, which writes a full snapshot from the object versions alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backup_lambda.errors import CorruptSnapshotError
from compaction import catalog, verified
from compaction.chain import load_chain
from compaction.manifest import Manifest

_HEADS_IN_FLIGHT = 16


def files_present(s3: Any, bucket: str, manifest: Manifest, chain: Sequence[Manifest] = ()) -> None:
    """Every file the manifest lists (and, for a delta, every file of its `chain`) exists
    at its pinned version with its recorded size; raises CorruptSnapshotError naming the
    first that does not."""
    files = [f for level in (chain or [manifest]) for f in level.files]
    if not files:
        return
    with ThreadPoolExecutor(min(_HEADS_IN_FLIGHT, len(files))) as pool:
        list(pool.map(lambda f: verified.check_present(s3, bucket, f), files))


def sound_older(s3: Any, bucket: str, prefix: str, table: str, damaged: str) -> Manifest | None:
    """The newest committed snapshot older than `damaged` whose files (and its chain's)
    are all present."""
    for candidate in reversed(catalog.list_snapshot_ids(s3, bucket, prefix, table)):
        if candidate >= damaged:
            continue
        try:  # an unreadable manifest (or chain) is no candidate
            manifest = catalog.load_manifest(s3, bucket, prefix, table, candidate)
            if manifest is None:
                continue
            chain = load_chain(s3, bucket, prefix, table, manifest)
            files_present(s3, bucket, manifest, chain.levels)
        except CorruptSnapshotError:
            continue
        return manifest
    return None


def damaged_snapshot(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    manifest: Manifest,
    error: CorruptSnapshotError,
    command: str,
) -> CorruptSnapshotError:
    """The error to report: what failed, and what to run instead."""
    older = sound_older(s3, bucket, prefix, table, manifest.id)
    if older is not None:
        instead = (
            f"`ddb-backup {command} --snapshot {older.id}` uses the newest older snapshot "
            "whose files are all present"
        )
    else:
        instead = "no older snapshot has all its files"
    doing = " (not building on it)" if command == "compact" else ""
    return CorruptSnapshotError(
        f"snapshot {manifest.id} failed verification{doing}: {error}; {instead}; "
        "`ddb-backup compact --rebuild` writes a new full snapshot from the object versions"
    )
