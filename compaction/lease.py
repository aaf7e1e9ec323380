"""A running build's lease: a small object in its run folder, renewed while the run lasts.

`expire` removes run folders that no committed manifest lists (crashed runs, losers of a
commit race) once their newest file is older than its grace period. A compaction that ran
longer than that grace, or an `expire --grace-hours 0`, lost the files it had written, and
then committed a manifest listing files that no longer existed (issue 13, finding 2).

So a compaction (and an import of a full export) writes `run-<run>/lease.json` before any
data file and writes it again every RENEW_SECONDS from a thread until the run ends; `expire`
leaves a run folder whose lease was written less than LIVE_US ago alone and says so. The
lease is never deleted (the function roles may not delete): after the commit its folder is
listed by the manifest, and after a crash it goes with the folder. Renewals that fail are
counted, not fatal: the commit checks its files all the same (compaction.commitcheck).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from backup_lambda.errors import BackupError
from compaction.versions import put_json

LEASE_NAME = "lease.json"
RENEW_SECONDS = 300.0
# A lease written within this (three renewals) belongs to a run that is still going.
LIVE_US = 15 * 60 * 1_000_000


def lease_key(run_root: str) -> str:
    return f"{run_root}{LEASE_NAME}"


class RunLease:
    """`with RunLease(s3, bucket, run_root, run_id):` around the part of a run that writes
    into `run_root`. Entering writes the lease (a failure fails the run before it writes
    anything); a thread renews it every `interval` seconds until the block ends."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        run_root: str,
        run_id: str,
        interval: float = RENEW_SECONDS,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = lease_key(run_root)
        self._run_id = run_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0
        self.failed_renewals = 0

    def __enter__(self) -> RunLease:
        self._write()
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _renew(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._write()
            except BackupError:
                self.failed_renewals += 1  # the next renewal may go through
            else:
                self.renewals += 1

    def _write(self) -> None:
        document = {"run_id": self._run_id, "renewals": self.renewals}
        put_json(self._s3, self._bucket, self._key, document)
