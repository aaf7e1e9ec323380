"""Before a manifest is written, every file it lists is still there at its pinned version.

A run writes its files first and its manifest last; anything that removed a file between
(an `expire` with too short a grace period, a person cleaning up) would leave a committed
snapshot listing a file that does not exist, and nothing would notice until a reader, or
an ImportTable from the export files, came short (issue 13, finding 2). One HEAD per file,
in parallel; a missing or changed file stops the commit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backup_lambda.errors import CorruptSnapshotError
from compaction import verified
from compaction.manifest import Manifest

_HEADS_IN_FLIGHT = 16


def confirm_files(s3: Any, bucket: str, manifest: Manifest) -> None:
    """Raises CorruptSnapshotError naming the first listed file that is not at its pinned
    version with its recorded size; the manifest is then not to be written."""
    files = list(manifest.files)
    if not files:
        return
    try:
        with ThreadPoolExecutor(min(_HEADS_IN_FLIGHT, len(files))) as pool:
            list(pool.map(lambda f: verified.check_present(s3, bucket, f), files))
    except CorruptSnapshotError as e:
        raise CorruptSnapshotError(
            f"not committing snapshot {manifest.id}: a file of its run went while it was being "
            f"built ({e}); was `expire` run with a grace period shorter than the run? Rerun "
            "the compaction (it writes the files again)"
        ) from e
