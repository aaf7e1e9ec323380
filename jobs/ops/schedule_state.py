"""What `scheduled` remembers of a table between runs, in one small object:

    <prefix>/<table>/v1/scheduled/state.json

- the newest snapshot it knows of, with its listing bound and change source, so that a
  run with nothing new needs no LIST of the snapshots and no manifest GET: one GET of
  this object and one LIST of the journal after the bound;
- how many of its compactions read the journal since one verified it
  (`--verify-journal-every`).

It is a hint, never trusted for what a snapshot holds. A stale one (a manual `compact`
since, a concurrent run) only makes the bound earlier, so the check finds changes, and
the run then lists the snapshots and checks again after the newest one. A missing or
unreadable one is rebuilt from the snapshots (the journal count starts again at 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import LAYOUT_DIR, table_root
from compaction.newchanges import SnapshotBound
from compaction.s3errors import translate
from compaction.s3read import get_bytes
from compaction.versions import put_json

STATE_FORMAT = "ddb-backup-scheduled-state"
STATE_VERSION = 1


def state_key(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/scheduled/state.json"


@dataclass(frozen=True)
class ScheduleState:
    snapshot: SnapshotBound | None = None  # the newest snapshot known to `scheduled`
    # compactions that read the journal alone since the last one that verified it
    unverified_journal_runs: int = 0

    def to_document(self, table: str) -> dict[str, Any]:
        snapshot = self.snapshot
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "table": table,
            "snapshot": None
            if snapshot is None
            else {
                "id": snapshot.id,
                "as_of_us": snapshot.as_of_us,
                "since_us": snapshot.since_us,
                "change_source": snapshot.change_source,
            },
            "unverified_journal_runs": self.unverified_journal_runs,
        }

    @classmethod
    def from_json(cls, body: bytes) -> ScheduleState:
        """Raises ValueError (with KeyError and TypeError) on anything unexpected."""
        doc = json.loads(body)
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise ValueError("not a scheduled-run state")
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"state version {doc.get('version')!r}")
        raw = doc["snapshot"]
        snapshot = (
            None
            if raw is None
            else SnapshotBound(
                str(raw["id"]),
                int(raw["as_of_us"]),
                int(raw["since_us"]),
                str(raw["change_source"]),
            )
        )
        runs = int(doc["unverified_journal_runs"])
        if runs < 0:
            raise ValueError("negative run count")
        return cls(snapshot, runs)


def read_state(
    s3: Any, bucket: str, prefix: str, table: str
) -> tuple[ScheduleState | None, str | None]:
    """(the state, or None; why it could not be used when it exists but is unreadable)."""
    key = state_key(prefix, table)
    try:
        body = get_bytes(s3, bucket, key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None, None
        raise translate(e, bucket, key) from e
    except BotoCoreError as e:
        raise translate(e, bucket, key) from e
    try:
        return ScheduleState.from_json(body), None
    except (ValueError, KeyError, TypeError) as e:
        return None, f"s3://{bucket}/{key} was unreadable ({e}); rebuilt from the snapshots"


def write_state(s3: Any, bucket: str, prefix: str, table: str, state: ScheduleState) -> None:
    put_json(s3, bucket, state_key(prefix, table), state.to_document(table))
