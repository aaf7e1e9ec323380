"""Verified local copies of snapshot files, named by their SHA-256.

Snapshot files never change once committed, and the manifest pins each by its checksum,
so a copy named by that checksum serves every later query of the same snapshot (a notebook
re-running its cells, a second query a minute later) without downloading it again. A copy
is written whole or not at all (compaction.verified.download), and checked again (size
and SHA-256) each time it is used; a copy that fails is downloaded afresh.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backup_lambda.errors import CorruptSnapshotError
from compaction import verified
from compaction.manifest import DataFile

DEFAULT_MAX_BYTES = 10 * 1024**3
CACHE_ENV = "DDB_BACKUP_CACHE_DIR"


def default_cache_dir() -> Path:
    """$DDB_BACKUP_CACHE_DIR, else $XDG_CACHE_HOME/ddb-backup, else ~/.cache/ddb-backup."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ddb-backup"


class FileCache:
    """A folder of verified snapshot files. `root=None`: a private folder removed by close()."""

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="ddb-backup-files-")
            root = Path(self._temporary.name)
        self.root = root
        self.max_bytes = max_bytes
        self.downloaded = 0  # files fetched from S3 (the rest were served locally)

    def path_for(self, data_file: DataFile) -> Path:
        suffix = ".json.gz" if data_file.format == "json.gz" else ".parquet"
        return self.root / "files" / data_file.sha256[:2] / f"{data_file.sha256}{suffix}"

    def get(self, s3: Any, bucket: str, data_file: DataFile) -> Path:
        """A local path holding exactly the pinned file."""
        path = self.path_for(data_file)
        if path.exists():
            try:
                verified.check_local(path, data_file, verified.where(bucket, data_file))
            except CorruptSnapshotError:
                path.unlink(missing_ok=True)  # a damaged copy: fetch it again
            else:
                with contextlib.suppress(OSError):
                    os.utime(path)  # recently used: trimmed last
                return path
        verified.download(s3, bucket, data_file, path)
        self.downloaded += 1
        return path

    def get_all(
        self, s3: Any, bucket: str, files: Sequence[DataFile], concurrency: int = 8
    ) -> list[Path]:
        """Every file, in parallel; then the cache is trimmed to `max_bytes`, sparing these."""
        with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="s3-file") as pool:
            paths = list(pool.map(lambda f: self.get(s3, bucket, f), files))
        if self._temporary is None:
            self.trim(keep=set(paths))
        return paths

    def trim(self, keep: set[Path]) -> None:
        """Remove the least recently used copies until the cache holds at most max_bytes."""
        entries = []
        for path in (self.root / "files").glob("*/*"):
            if path.name.startswith("."):  # a download in progress
                continue
            with contextlib.suppress(OSError):
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path in keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
