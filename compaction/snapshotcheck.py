"""`snapshots --verify`: read every file of a snapshot through and check it against its
manifest (compaction.verified: the pinned version, size, SHA-256, and rows: Parquet
footers, JSON lines of the export, the settings document).

Unlike a reader, which stops at the first bad file, a check goes through all of them and
reports each one that fails, so one run says everything that is damaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backup_lambda.errors import CorruptSnapshotError
from compaction import verified
from compaction.manifest import DataFile, Manifest


@dataclass(frozen=True)
class SnapshotCheck:
    id: str
    files: int
    bytes: int
    failures: tuple[str, ...]  # one line per file that failed, naming it

    @property
    def ok(self) -> bool:
        return not self.failures


def check_snapshot(s3: Any, bucket: str, manifest: Manifest, concurrency: int = 8) -> SnapshotCheck:
    """Every file the manifest lists, read at its pinned version and checked."""
    files = list(manifest.files)

    def one(data_file: DataFile) -> str | None:
        try:
            verified.verify(s3, bucket, data_file)
        except CorruptSnapshotError as e:
            return str(e)
        return None

    failures: Sequence[str | None] = []
    if files:
        with ThreadPoolExecutor(max(1, min(concurrency, len(files)))) as pool:
            failures = list(pool.map(one, files))
    return SnapshotCheck(
        id=manifest.id,
        files=len(files),
        bytes=sum(f.bytes for f in files),
        failures=tuple(f for f in failures if f is not None),
    )
