"""The change journal (docs/FORMAT.md): one immutable object per written batch, holding the
batch's change documents, under a table-wide folder ordered by write time.

    <prefix>/<table>/v1/journal/<yyyy>/<mm>/<dd>/<hh>/<stamp>-<unique>.jsonl.gz
    <prefix>/<table>/v1/journal-coverage/<stamp of complete_from>-<unique>.json
    <prefix>/<table>/v1/journal-only/<stamp of since>-<unique>.json

<stamp> is a UTC time, `20261128T143000.123456Z`: keys sort by it, so "what was written after
B" is one ListObjectsV2 with StartAfter. The body is gzip JSON lines, one change document
(`layout.encode_change`) a line. The invariant readers rely on: every change that is in an
item object is also in a journal object written before it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptVersionError, StorageError
from backup_lambda.layout import LAYOUT_DIR, Change, decode_change, encode_change, table_root

MINUTE_US = 60 * 1_000_000
# An item version is written at most this long after the journal object holding its change:
# the Lambda's longest invocation (15 minutes); other writers enforce it (ITEM_DEADLINE_US).
WRITE_LEAD_US = 15 * MINUTE_US
# A writer starts no item PUT later than this after its journal object's key time, and
# journals again any item whose PUT ended later (so the lead above holds for every writer).
ITEM_DEADLINE_US = 10 * MINUTE_US
# A journal PUT that ends later than this after its key time is written again with a fresh
# key, so every change is in a journal object whose key time is close to its LastModified.
JOURNAL_PUT_LIMIT_US = 1 * MINUTE_US
# Readers list from this much before the window's start (key times are the writer's clock:
# the PUT limit plus clock differences between writers and S3).
KEY_MARGIN_US = 5 * MINUTE_US
# The first journaling writer declares the journal complete from now + this: writers still
# running code without the journal (a deploy's in-flight invocations) end within 15
# minutes; one more for clock differences.
COVERAGE_DELAY_US = 16 * MINUTE_US
# A journal-only writer declares the item objects incomplete from now - this.
JOURNAL_ONLY_MARGIN_US = 1 * MINUTE_US

JOURNAL_SUFFIX = ".jsonl.gz"
COVERAGE_FORMAT = "ddb-backup-journal-coverage"
JOURNAL_ONLY_FORMAT = "ddb-backup-journal-only"
_STAMP = re.compile(r"^(\d{8})T(\d{6})\.(\d{6})Z")


def journal_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/journal/"


def coverage_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/journal-coverage/"


def journal_only_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/journal-only/"


def retention_key(prefix: str, table: str) -> str:
    """Written by `expire`: journal objects written before its bound may be gone."""
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/journal-retention.json"


def stamp(micros: int) -> str:
    """A sortable UTC time: 20261128T143000.123456Z (times before 1970 are 1970)."""
    micros = max(0, micros)
    moment = dt.datetime.fromtimestamp(micros // 1_000_000, dt.UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{micros % 1_000_000:06d}Z"


def parse_stamp(text: str) -> int | None:
    """Epoch microseconds of a name that starts with a stamp (None: it does not)."""
    match = _STAMP.match(text)
    if match is None:
        return None
    day, clock, fraction = match.groups()
    try:
        moment = dt.datetime.strptime(day + clock, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000 + int(fraction)


def _partition(micros: int) -> str:
    moment = dt.datetime.fromtimestamp(max(0, micros) // 1_000_000, dt.UTC)
    return f"{moment:%Y/%m/%d/%H}/"


def journal_key(prefix: str, table: str, micros: int, unique: str) -> str:
    folder = journal_prefix(prefix, table) + _partition(micros)
    return f"{folder}{stamp(micros)}-{unique}{JOURNAL_SUFFIX}"


def start_after(prefix: str, table: str, micros: int) -> str:
    """The StartAfter that lists every journal object with a key time at or after `micros`."""
    return f"{journal_prefix(prefix, table)}{_partition(micros)}{stamp(micros)}"


def key_time_us(key: str) -> int | None:
    """The key time of a journal object key (None: not a journal object name)."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(JOURNAL_SUFFIX):
        return None
    return parse_stamp(name)


def encode_journal(changes: Sequence[Change]) -> bytes:
    lines = b"".join(encode_change(c) + b"\n" for c in changes)
    return gzip.compress(lines, compresslevel=6, mtime=0)


def decode_journal(body: bytes, where: str) -> list[Change]:
    """The changes of a journal object, in order; a bad line names the object and line."""
    try:
        text = gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptVersionError(f"{where}: not a gzip journal object ({e})") from e
    return [
        decode_change(line, f"{where} line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def unique_id() -> str:
    return uuid.uuid4().hex[:16]


class JournalWriter:
    """Writes one journal object per table per batch, and on its first write for a table
    the markers it is configured to declare (coverage; journal-only mode)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str = "",
        *,
        claim_coverage: bool = False,
        journal_only: bool = False,
        clock: Callable[[], float] = time.time,
        writer: str = "writer",
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._claim_coverage = claim_coverage
        self._journal_only = journal_only
        self._clock = clock
        self._writer = writer
        self._declared: set[str] = set()
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def write(self, table: str, changes: Sequence[Change]) -> tuple[str, int]:
        """Put the changes as one journal object: (its key, its key time). Raises
        StorageError when S3 refuses; then none of the changes may be written elsewhere."""
        self._declare(table)
        body = encode_journal(changes)
        for _ in range(3):
            written_at = self.now_us()
            key = journal_key(self._prefix, table, written_at, unique_id())
            self._put(key, body, "application/gzip", {"ddb-changes": str(len(changes))})
            if self.now_us() - written_at <= JOURNAL_PUT_LIMIT_US:
                return key, written_at
            # A slow PUT: its key time is far before its LastModified, so a reader listing
            # from a nearby key might miss it. Write it again under a fresh key.
        raise StorageError(
            f"s3://{self._bucket}/{journal_prefix(self._prefix, table)}: journal PUTs took "
            f"longer than {JOURNAL_PUT_LIMIT_US // 1_000_000} s three times"
        )

    def _declare(self, table: str) -> None:
        with self._lock:
            if table in self._declared:
                return
            now = self.now_us()
            if self._journal_only:
                # Before any change goes only to the journal: readers then know the item
                # objects do not hold everything written after `since`.
                since = now - JOURNAL_ONLY_MARGIN_US
                write_marker(
                    self._s3,
                    self._bucket,
                    self._prefix,
                    table,
                    JOURNAL_ONLY,
                    since,
                    self._writer,
                    now,
                )
            if self._claim_coverage or self._journal_only:
                complete = now + COVERAGE_DELAY_US
                write_marker(
                    self._s3,
                    self._bucket,
                    self._prefix,
                    table,
                    COVERAGE,
                    complete,
                    self._writer,
                    now,
                )
            self._declared.add(table)

    def _put(self, key: str, body: bytes, content_type: str, metadata: dict[str, str]) -> None:
        _put(self._s3, self._bucket, key, body, content_type, metadata)


COVERAGE = "coverage"
JOURNAL_ONLY = "journal-only"
_MARKERS = {
    COVERAGE: (coverage_prefix, COVERAGE_FORMAT, "complete_from"),
    JOURNAL_ONLY: (journal_only_prefix, JOURNAL_ONLY_FORMAT, "since"),
}


def write_marker(
    s3: Any,
    bucket: str,
    prefix: str,
    table: str,
    kind: str,
    micros: int,
    writer: str,
    now_us: int | None = None,
) -> str:
    """A marker object (`coverage`: the journal is complete from `micros`; `journal-only`:
    item objects may miss changes written from `micros`). Markers are never replaced:
    readers take the oldest, whose time is in its name. Returns its key."""
    folder, kind_format, field = _MARKERS[kind]
    key = f"{folder(prefix, table)}{stamp(micros)}-{unique_id()}.json"
    document = {
        "format": kind_format,
        "version": 1,
        "table": table,
        f"{field}_us": micros,
        field: _iso(micros),
        "written_at_us": now_us if now_us is not None else int(time.time() * 1_000_000),
        "writer": writer,
    }
    _put(s3, bucket, key, json.dumps(document, indent=1).encode("utf-8"), "application/json", {})
    return key


def _put(
    s3: Any, bucket: str, key: str, body: bytes, content_type: str, metadata: dict[str, str]
) -> None:
    try:
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata
        )
    except (ClientError, BotoCoreError) as e:
        raise StorageError(f"s3://{bucket}/{key}: {e}") from e


def _iso(micros: int) -> str:
    moment = dt.datetime.fromtimestamp(max(0, micros) // 1_000_000, dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"
