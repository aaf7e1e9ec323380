"""How recent a table's backup is: its newest journal object and the newest change in it,
found without listing the journal (docs/FORMAT.md, "The change journal").

Journal keys sort by write time and sit in hour partitions (`journal/yyyy/mm/dd/hh/`). The
newest object is found with one LIST from a recent StartAfter when the table is busy, else
by walking down the newest partition folders (delimiter LISTs: years, months, days, hours)
and listing the newest hour only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptVersionError
from backup_lambda.journal import journal_prefix, key_time_us
from compaction.discovery import subfolders
from compaction.journal import JournalObject, iter_journal, read_changes
from compaction.s3errors import translate

# Journal objects written this recently are found with one LIST from a StartAfter.
RECENT_US = 15 * 60 * 1_000_000
_PARTITION_LEVELS = 4  # yyyy/mm/dd/hh


@dataclass(frozen=True)
class NewestWrite:
    """The newest journal object of a table, and the newest event time among its changes
    (None when the object could not be read: `problem` says why)."""

    key: str
    written_at_us: int  # its LastModified
    event_time_us: int | None
    changes: int
    problem: str | None = None


def newest_journal_object(
    s3: Any, bucket: str, prefix: str, table: str, now_us: int
) -> JournalObject | None:
    """The journal object written last (None: the table has no journal)."""
    recent = list(iter_journal(s3, bucket, prefix, table, now_us - RECENT_US))
    if recent:
        return max(recent, key=lambda o: (o.last_modified_us, o.key))
    return _newest_in(s3, bucket, journal_prefix(prefix, table), _PARTITION_LEVELS)


def _newest_in(s3: Any, bucket: str, folder: str, levels: int) -> JournalObject | None:
    if levels == 0:
        return _newest_object(s3, bucket, folder)
    for partition in reversed(subfolders(s3, bucket, folder)):
        found = _newest_in(s3, bucket, partition, levels - 1)
        if found is not None:
            return found
    return None


def _newest_object(s3: Any, bucket: str, folder: str) -> JournalObject | None:
    newest = None
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            for entry in page.get("Contents", []):
                if key_time_us(entry["Key"]) is not None:  # keys come in order: the last wins
                    newest = entry
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e
    if newest is None:
        return None
    written = int(newest["LastModified"].timestamp() * 1_000_000)
    return JournalObject(newest["Key"], written, int(newest.get("Size", 0)))


def newest_write(s3: Any, bucket: str, prefix: str, table: str, now_us: int) -> NewestWrite | None:
    """The newest journal object and its newest change (one GET); None without a journal."""
    obj = newest_journal_object(s3, bucket, prefix, table, now_us)
    if obj is None:
        return None
    try:
        changes = read_changes(s3, bucket, obj)
    except CorruptVersionError as e:
        return NewestWrite(obj.key, obj.last_modified_us, None, 0, str(e))
    newest = max((c.event_time_us for c in changes), default=None)
    return NewestWrite(obj.key, obj.last_modified_us, newest, len(changes))
