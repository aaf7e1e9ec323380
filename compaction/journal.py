"""Reading the change journal: coverage, the window after a base, and its changes by unit.

Which source finds the changes written after a base (docs/COMPACTION.md, "Change sources"):

- **journal**: the journal covers the window. Journal objects written after the window's
  start are listed with one ListObjectsV2 (StartAfter = the key a writer gave at the start,
  less a margin), read once per plan, and split by unit; no item version is listed or read.
- **listing**: no coverage (no journaling writer yet, or the window starts before the
  journal became complete): item versions are listed as before.
- **listing+journal**: listing, plus the journal from the time the table went journal-only
  (its item objects then miss changes that only the journal holds).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptVersionError, NotFoundError
from backup_lambda.journal import (
    KEY_MARGIN_US,
    WRITE_LEAD_US,
    coverage_prefix,
    decode_journal,
    journal_only_prefix,
    journal_prefix,
    key_time_us,
    parse_stamp,
    retention_key,
    start_after,
)
from backup_lambda.layout import Change, decode_change, format_time_us, key_hash
from compaction.fold import LAST_MODIFIED_RESOLUTION_US, Row
from compaction.manifest import Manifest, SkippedVersion
from compaction.s3errors import translate
from compaction.s3read import get_bytes

LISTING = "listing"
JOURNAL = "journal"
BOTH = "listing+journal"
JOURNAL_VERSION_PREFIX = "journal:"


def _micros(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


# ---------------------------------------------------------------- coverage markers


def _first_stamp(s3: Any, bucket: str, folder: str) -> int | None:
    """The time in the first (oldest) marker name under `folder` (one LIST)."""
    try:
        response = s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e
    for entry in response.get("Contents", []):
        found = parse_stamp(entry["Key"][len(folder) :])
        if found is not None:
            return found
    return None


def complete_from(s3: Any, bucket: str, prefix: str, table: str) -> int | None:
    """Since when every change of the table is in the journal (0: from the start; None:
    no journaling writer has declared it)."""
    return _first_stamp(s3, bucket, coverage_prefix(prefix, table))


def journal_only_since(s3: Any, bucket: str, prefix: str, table: str) -> int | None:
    """Since when changes may be in the journal alone (None: never journal-only)."""
    return _first_stamp(s3, bucket, journal_only_prefix(prefix, table))


def retained_from(s3: Any, bucket: str, prefix: str, table: str) -> int | None:
    """Journal objects written at or before this may have been removed by `expire`."""
    key = retention_key(prefix, table)
    try:
        body = get_bytes(s3, bucket, key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise translate(e, bucket, key) from e
    except BotoCoreError as e:
        raise translate(e, bucket, key) from e
    try:
        return int(json.loads(body)["removed_through_us"])
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptVersionError(f"s3://{bucket}/{key}: not a journal retention record") from e


def has_journal(s3: Any, bucket: str, prefix: str, table: str) -> bool:
    folder = journal_prefix(prefix, table)
    try:
        response = s3.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=1)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e
    return bool(response.get("KeyCount", 0))


# ---------------------------------------------------------------- which source


@dataclass(frozen=True)
class ChangeSource:
    """How the changes after a base are found, and why (said in every command's output)."""

    kind: str  # LISTING | JOURNAL | BOTH
    reason: str
    journal_start_us: int | None = None  # journal objects written after this (None: all)


def window_start(base: Manifest | None, since_us: int | None) -> int | None:
    """Where a journal window after `base` starts. After a base that read the journal,
    `since` suffices: every journal object written by then was read by it or folded into
    its own base. After a base built by listing, an item version written after `since`
    may carry a change whose journal object was written up to the write lead earlier
    (a writer journals first, then writes its items, within its invocation)."""
    if since_us is None:
        return None
    if base is not None and base.change_source in (JOURNAL, BOTH):
        return since_us
    return since_us - WRITE_LEAD_US - LAST_MODIFIED_RESOLUTION_US


def choose_source(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    base: Manifest | None,
    since_us: int | None,
    *,
    listing: bool = False,
) -> ChangeSource:
    """The change source for the window after `base` (written after `since_us`; None: the
    whole history). `listing` forces the item listing (plus the journal where the table
    was journal-only, the only record there)."""
    complete = complete_from(s3, bucket, prefix, table)
    reason = _why_not_journal(s3, bucket, prefix, table, base, since_us, complete, listing)
    if reason is None:
        start = window_start(base, since_us)
        covered = "the whole history" if since_us is None else "the window"
        return ChangeSource(JOURNAL, f"the journal covers {covered}", start)
    only = journal_only_since(s3, bucket, prefix, table) if complete is not None else None
    if only is None:
        return ChangeSource(LISTING, reason)
    start = max(since_us if since_us is not None else only, only) - WRITE_LEAD_US
    start -= LAST_MODIFIED_RESOLUTION_US
    retained = retained_from(s3, bucket, prefix, table)
    if retained is not None and start <= retained:
        raise NotFoundError(
            f"table {table!r} is journal-only since {_iso(only)} and its journal before "
            f"{_iso(retained)} was removed by `ddb-backup expire`: this point in time is "
            "before the oldest kept snapshot and cannot be rebuilt (compact incrementally, "
            "without --full)"
        )
    return ChangeSource(BOTH, f"{reason}; journal-only since {_iso(only)}: the journal too", start)


def _why_not_journal(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    base: Manifest | None,
    since_us: int | None,
    complete: int | None,
    listing: bool,
) -> str | None:
    if listing:
        return "listing asked for (--listing)"
    if complete is None:
        return "the table has no complete journal yet"
    if base is not None and any("/v1/items/" in s.key for s in base.skipped):
        # The base has no row for keys whose versions it skipped; only their full history
        # (by listing) can say how they ended.
        return f"base {base.id} skipped corrupt item versions"
    if since_us is None:
        if complete > 0:
            return f"the journal is complete only from {_iso(complete)}, not the whole history"
        retained = retained_from(s3, bucket, prefix, table)
        if retained is not None:
            return f"journal objects up to {_iso(retained)} were removed by expire"
        return None
    if since_us < complete:
        return f"the journal is complete only from {_iso(complete)}, after the window's start"
    return None


def _iso(micros: int) -> str:
    return format_time_us(max(0, micros))


# ---------------------------------------------------------------- the window


@dataclass(frozen=True)
class JournalObject:
    key: str
    last_modified_us: int
    size: int

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def iter_journal(
    s3: Any, bucket: str, prefix: str, table: str, after_us: int | None
) -> Iterator[JournalObject]:
    """Journal objects written after `after_us` (all if None), oldest key first.

    Keys sort by the writer's clock when the PUT began; LastModified is S3's when it
    ended. A journal object whose PUT ended after `after_us` has a key time after
    `after_us - KEY_MARGIN` (writers re-journal a slow PUT under a fresh key), so the
    listing starts there and filters by LastModified."""
    folder = journal_prefix(prefix, table)
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": folder}
    if after_us is not None:
        params["StartAfter"] = start_after(prefix, table, after_us - KEY_MARGIN_US)
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(**params):
            for entry in page.get("Contents", []):
                written = _micros(entry["LastModified"])
                if key_time_us(entry["Key"]) is None:
                    continue
                if after_us is None or written > after_us:
                    yield JournalObject(entry["Key"], written, int(entry.get("Size", 0)))
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, folder) from e


def has_journal_after(s3: Any, bucket: str, prefix: str, table: str, after_us: int) -> bool:
    """Whether any journal object was written after `after_us` (stops at the first: one
    LIST when nothing new was written)."""
    return next(iter_journal(s3, bucket, prefix, table, after_us), None) is not None


@dataclass(frozen=True)
class JournalEntry:
    """One change line of the window, kept encoded until its unit folds it."""

    key_hash: str
    line: bytes
    version_id: str  # journal:<object name>#<line>
    written_at_us: int  # the journal object's LastModified

    def row(self, where: str) -> Row:
        change = decode_change(self.line, where)
        return Row(self.key_hash, change, self.version_id, self.written_at_us)


@dataclass(frozen=True)
class JournalWindow:
    """The changes of a window, split by unit (key-hash prefix of `digits` hex digits)."""

    start_us: int | None
    digits: int
    objects: int
    changes: int
    by_unit: Mapping[str, tuple[JournalEntry, ...]] = field(default_factory=dict)
    skipped: tuple[SkippedVersion, ...] = ()

    def entries(self, unit: str) -> tuple[JournalEntry, ...]:
        return self.by_unit.get(unit, ())


def read_object(s3: Any, bucket: str, obj: JournalObject) -> bytes:
    try:
        return get_bytes(s3, bucket, obj.key)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, obj.key) from e


def read_changes(s3: Any, bucket: str, obj: JournalObject) -> list[Change]:
    return decode_journal(read_object(s3, bucket, obj), f"s3://{bucket}/{obj.key}")


def read_window(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    start_us: int | None,
    digits: int,
    *,
    concurrency: int = 16,
    skip_corrupt: bool = False,
) -> JournalWindow:
    """List the window once, read every journal object in it once (in parallel), and
    split the lines by unit. A line that is not a valid change document fails the read
    naming the object and line, or with `skip_corrupt` is skipped and reported."""
    objects = list(iter_journal(s3, bucket, prefix, table, start_us))
    by_unit: dict[str, list[JournalEntry]] = {}
    skipped: list[SkippedVersion] = []
    changes = 0
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="journal-get") as pool:
        for obj, body in zip(
            objects, pool.map(lambda o: read_object(s3, bucket, o), objects), strict=True
        ):
            for entry in _entries(bucket, obj, body, skip_corrupt, skipped):
                by_unit.setdefault(entry.key_hash[:digits], []).append(entry)
                changes += 1
    return JournalWindow(
        start_us,
        digits,
        len(objects),
        changes,
        {unit: tuple(entries) for unit, entries in by_unit.items()},
        tuple(skipped),
    )


def _entries(
    bucket: str,
    obj: JournalObject,
    body: bytes,
    skip_corrupt: bool,
    skipped: list[SkippedVersion],
) -> Iterator[JournalEntry]:
    where = f"s3://{bucket}/{obj.key}"
    try:
        text = gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as e:
        error = CorruptVersionError(f"{where}: not a gzip journal object ({e})")
        if not skip_corrupt:
            raise error from e
        skipped.append(SkippedVersion(obj.key, "", str(error)))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            change = decode_change(line, f"{where} line {number}")
        except CorruptVersionError as e:
            if not skip_corrupt:
                raise
            skipped.append(SkippedVersion(obj.key, f"line {number}", str(e)))
            continue
        yield JournalEntry(
            key_hash(change.keys),
            line,
            f"{JOURNAL_VERSION_PREFIX}{obj.name}#{number}",
            obj.last_modified_us,
        )


def rows_by_key(entries: Sequence[JournalEntry], bucket: str) -> dict[str, list[Row]]:
    """Decode a unit's entries into rows, grouped by key hash."""
    grouped: dict[str, list[Row]] = {}
    for entry in entries:
        where = f"s3://{bucket}/{entry.version_id.removeprefix(JOURNAL_VERSION_PREFIX)}"
        grouped.setdefault(entry.key_hash, []).append(entry.row(where))
    return grouped
