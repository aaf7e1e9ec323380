"""DynamoDB's S3 export format: finding exports, reading their manifests, data files and
lines, strictly (docs/FORMAT.md, "DynamoDB exports").

A full export is `<prefix>/AWSDynamoDB/<export-id>/` with `manifest-summary.json`,
`manifest-files.json` (one JSON line per data file: itemCount, md5Checksum, etag,
dataFileS3Key), their `.md5` files, `_started`, and `data/*.json.gz` of `{"Item": ...}`
lines. An incremental export keeps its manifests in its own folder and its data files in
the shared `<prefix>/AWSDynamoDB/data/`; its lines are
`{"Metadata": {"WriteTimestampMicros": {"N": ..}}, "Keys": .., "NewImage": .., "OldImage": ..}`
(no NewImage: the item was deleted). Every failure is one line naming the file (and line).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import Item, validate_item
from backup_lambda.errors import (
    IntegrityError,
    InvalidValueError,
    NotFoundError,
    StorageError,
    UserInputError,
)
from compaction import s3read
from compaction.s3errors import translate

EXPORT_DIR = "AWSDynamoDB"
SUMMARY_NAME = "manifest-summary.json"
FILES_NAME = "manifest-files.json"
FULL_EXPORT = "FULL_EXPORT"
INCREMENTAL_EXPORT = "INCREMENTAL_EXPORT"
DYNAMODB_JSON = "DYNAMODB_JSON"
NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"
NEW_IMAGE = "NEW_IMAGE"
OUTPUT_VIEWS = frozenset({NEW_AND_OLD_IMAGES, NEW_IMAGE})
_CHUNK = 1 << 20
_ATTEMPTS = 3  # reads of one data file, each resuming where the last was cut


class ExportFormatError(UserInputError):
    """An export is not in DynamoDB's export format (a missing field, a malformed line)."""


class ExportIntegrityError(IntegrityError):
    """An export's data does not match its manifests (MD5, item counts)."""


@dataclass(frozen=True)
class ExportFile:
    """One data file as manifest-files.json lists it; `key` is where it is now."""

    key: str
    item_count: int
    md5: str  # base64 MD5 of the file's bytes
    etag: str | None


@dataclass(frozen=True)
class ExportSummary:
    """One export, as its manifest-summary.json describes it."""

    export_id: str  # the export's folder name
    bucket: str  # where the export is read from
    folder: str  # the export's folder (holds manifest-summary.json), with "/"
    root: str  # the prefix holding AWSDynamoDB/ ("" or ending with "/")
    version: str
    export_arn: str
    table_arn: str
    export_type: str  # FULL_EXPORT | INCREMENTAL_EXPORT
    output_format: str
    output_view: str | None  # incremental exports: NEW_AND_OLD_IMAGES | NEW_IMAGE
    export_time_us: int | None  # full exports: the point in time
    from_us: int | None  # incremental exports: the window [from, to)
    to_us: int | None
    item_count: int
    files_key: str  # manifest-files.json, resolved
    s3_prefix: str

    @property
    def incremental(self) -> bool:
        return self.export_type == INCREMENTAL_EXPORT

    @property
    def start_us(self) -> int:
        """Where the export sits in time: its exportTime, or its window's start."""
        value = self.from_us if self.incremental else self.export_time_us
        return int(value or 0)

    @property
    def end_us(self) -> int:
        value = self.to_us if self.incremental else self.export_time_us
        return int(value or 0)

    @property
    def table_name(self) -> str:
        return table_name_of(self.table_arn)

    @property
    def summary_uri(self) -> str:
        return f"s3://{self.bucket}/{self.folder}{SUMMARY_NAME}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def resolve(self, recorded: str) -> str:
        return resolve_key(recorded, self.s3_prefix, self.root)


def table_name_of(table_arn: str) -> str:
    """`arn:aws:dynamodb:region:account:table/NAME` -> NAME."""
    _, _, resource = table_arn.partition(":table/")
    return resource.split("/", 1)[0]


def same_table(a: str, b: str) -> bool:
    """Whether two table ARNs name the same table. ARNs ddb-backup writes for its own
    snapshots have no region or account (it may not know them): those compare by name."""
    if a == b:
        return True
    parts_a, parts_b = a.split(":"), b.split(":")
    anonymous = any(len(p) > 4 and not (p[3] and p[4]) for p in (parts_a, parts_b))
    return anonymous and table_name_of(a) == table_name_of(b)


def resolve_key(recorded: str, s3_prefix: str, root: str) -> str:
    """Where a key the manifests record is now. Manifests record full keys under the
    export's `s3Prefix`; an export copied to another prefix keeps its relative layout."""
    prefix = s3_prefix.strip("/")
    if prefix and recorded.startswith(prefix + "/"):
        return root + recorded[len(prefix) + 1 :]
    if recorded.startswith(EXPORT_DIR + "/") or not prefix:
        return root + recorded
    return recorded


def parse_time_us(value: object, where: str, name: str) -> int:
    """An ISO-8601 time ("2020-11-04T07:28:34.028Z") or epoch seconds, in microseconds."""
    if isinstance(value, bool) or value is None:
        raise ExportFormatError(f"{where}: {name} is missing or not a time")
    if isinstance(value, int | float):
        return int(decimal.Decimal(str(value)) * 1_000_000)
    if not isinstance(value, str):
        raise ExportFormatError(f"{where}: {name} {value!r} is not a time")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ExportFormatError(f"{where}: {name} {value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise ExportFormatError(f"{where}: {name} {value!r} has no time zone")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _field(doc: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = doc.get(name)
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        raise ExportFormatError(f"{where}: {name} is missing or not a {kind.__name__}")
    return value


def parse_summary(body: bytes, bucket: str, folder: str, root: str) -> ExportSummary:
    """A manifest-summary.json, strictly: every field an import relies on is present."""
    where = f"s3://{bucket}/{folder}{SUMMARY_NAME}"
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportFormatError(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ExportFormatError(f"{where}: not a JSON object")
    export_type = doc.get("exportType") or FULL_EXPORT  # exports before 2023 omit it
    if export_type not in {FULL_EXPORT, INCREMENTAL_EXPORT}:
        raise ExportFormatError(f"{where}: unknown exportType {export_type!r}")
    output_format = _field(doc, "outputFormat", str, where)
    if output_format != DYNAMODB_JSON:
        raise ExportFormatError(
            f"{where}: outputFormat {output_format} is not supported; export the table "
            "again with ExportFormat DYNAMODB_JSON"
        )
    table_arn = _field(doc, "tableArn", str, where)
    if ":table/" not in table_arn:
        raise ExportFormatError(f"{where}: tableArn {table_arn!r} is not a table ARN")
    item_count = _field(doc, "itemCount", int, where)
    if item_count < 0:
        raise ExportFormatError(f"{where}: itemCount is negative")
    view = None
    export_time = from_us = to_us = None
    if export_type == INCREMENTAL_EXPORT:
        from_us = parse_time_us(doc.get("exportFromTime"), where, "exportFromTime")
        to_us = parse_time_us(doc.get("exportToTime"), where, "exportToTime")
        if to_us <= from_us:
            raise ExportFormatError(f"{where}: exportToTime is not after exportFromTime")
        view = _field(doc, "outputView", str, where)
        if view not in OUTPUT_VIEWS:
            raise ExportFormatError(f"{where}: unknown outputView {view!r}")
    else:
        export_time = parse_time_us(doc.get("exportTime"), where, "exportTime")
    s3_prefix = doc.get("s3Prefix") or ""
    if not isinstance(s3_prefix, str):
        raise ExportFormatError(f"{where}: s3Prefix is not a string")
    files_key = _field(doc, "manifestFilesS3Key", str, where)
    return ExportSummary(
        export_id=folder.rstrip("/").rsplit("/", 1)[-1],
        bucket=bucket,
        folder=folder,
        root=root,
        version=_field(doc, "version", str, where),
        export_arn=_field(doc, "exportArn", str, where),
        table_arn=table_arn,
        export_type=export_type,
        output_format=output_format,
        output_view=view,
        export_time_us=export_time,
        from_us=from_us,
        to_us=to_us,
        item_count=item_count,
        files_key=resolve_key(files_key, s3_prefix, root),
        s3_prefix=s3_prefix,
    )


def parse_files_manifest(body: bytes, summary: ExportSummary) -> list[ExportFile]:
    """manifest-files.json: one JSON object per line; the item counts add up."""
    where = summary.uri(summary.files_key)
    files: list[ExportFile] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        at = f"{where} line {number}"
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ExportFormatError(f"{at}: not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ExportFormatError(f"{at}: not a JSON object")
        count = _field(doc, "itemCount", int, at)
        md5 = _field(doc, "md5Checksum", str, at)
        if count < 0 or len(_b64(md5, at, "md5Checksum")) != 16:
            raise ExportFormatError(f"{at}: itemCount or md5Checksum is invalid")
        etag = doc.get("etag")
        key = summary.resolve(_field(doc, "dataFileS3Key", str, at))
        files.append(ExportFile(key, count, md5, etag if isinstance(etag, str) else None))
    total = sum(f.item_count for f in files)
    if total != summary.item_count:
        raise ExportIntegrityError(
            f"{where}: data files hold {total} items, manifest-summary.json says "
            f"{summary.item_count}"
        )
    if len({f.key for f in files}) != len(files):
        raise ExportFormatError(f"{where}: a data file is listed twice")
    return files


def _b64(text: str, where: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ExportFormatError(f"{where}: {name} {text[:40]!r} is not base64") from None


def md5_matches(expected: str, data: bytes) -> bool:
    """A `.md5` file's text (base64 or hex MD5) against `data`."""
    digest = hashlib.md5(data).digest()  # noqa: S324 - the format's checksum, not security
    text = expected.strip()
    return text in {base64.b64encode(digest).decode("ascii"), digest.hex()}


# ---- the storage side ---------------------------------------------------------------


def get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    """A small object's bytes, or None if it does not exist."""
    try:
        body = s3read.get_bytes(s3, bucket, key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise translate(e, bucket, key) from e
    except BotoCoreError as e:
        raise translate(e, bucket, key) from e
    return body


def _folders(s3: Any, bucket: str, parent: str) -> list[str]:
    found: list[str] = []
    try:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=parent, Delimiter="/"):
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, parent) from e
    return found


@dataclass(frozen=True)
class Discovery:
    summaries: tuple[ExportSummary, ...]  # finished exports, oldest first
    unfinished: tuple[str, ...]  # folders without a manifest-summary.json (in progress)


def discover(s3: Any, bucket: str, prefix: str) -> Discovery:
    """The exports under `prefix`: a prefix holding `AWSDynamoDB/<export-id>/` folders, or
    one export's folder itself."""
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    marker = f"{EXPORT_DIR}/"
    head, sep, tail = prefix.rpartition(marker)
    if sep and tail.count("/") == 1 and tail != "data/":
        folders, root = [prefix], head
    else:
        root = prefix
        folders = [f for f in _folders(s3, bucket, prefix + marker) if not f.endswith("/data/")]
    summaries, unfinished = [], []
    for folder in folders:
        body = get_bytes(s3, bucket, folder + SUMMARY_NAME)
        if body is None:
            unfinished.append(folder)
            continue
        summary = parse_summary(body, bucket, folder, root)
        check_md5_file(s3, bucket, folder + "manifest-summary.md5", body)
        summaries.append(summary)
    if not summaries and not unfinished:
        raise NotFoundError(
            f"no DynamoDB export under s3://{bucket}/{prefix} (expected "
            f"{EXPORT_DIR}/<export-id>/{SUMMARY_NAME})"
        )
    ordered = sorted(summaries, key=lambda s: (s.start_us, s.end_us, s.export_id))
    return Discovery(tuple(ordered), tuple(unfinished))


def check_md5_file(s3: Any, bucket: str, key: str, body: bytes) -> None:
    """A manifest's `.md5` file, when there is one, must match it."""
    expected = get_bytes(s3, bucket, key)
    if expected is not None and not md5_matches(expected.decode("ascii", "replace"), body):
        raise ExportIntegrityError(
            f"s3://{bucket}/{key}: does not match {key.rsplit('/', 1)[-1][:-4]}.json"
        )


def read_files(s3: Any, summary: ExportSummary) -> list[ExportFile]:
    body = get_bytes(s3, summary.bucket, summary.files_key)
    if body is None:
        raise ExportFormatError(f"{summary.uri(summary.files_key)}: missing")
    files = parse_files_manifest(body, summary)
    md5_key = summary.files_key.removesuffix(".json") + ".md5"
    check_md5_file(s3, summary.bucket, md5_key, body)
    return files


class DataFileReader:
    """The lines of one data file, streamed: the gzip is inflated chunk by chunk and the
    MD5 of the stored bytes computed on the way; at the end the MD5 and the line count
    are checked against the manifest. `etag` pins the object read (for a second pass)."""

    def __init__(
        self, s3: Any, bucket: str, data_file: ExportFile, if_match: str | None = None
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._file = data_file
        self._if_match = if_match
        self.etag: str | None = None
        self.where = f"s3://{bucket}/{data_file.key}"

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        md5 = hashlib.md5()  # noqa: S324 - the format's checksum, not security
        inflate = _Inflater(self.where)
        pending = b""
        number = 0
        for chunk in self._chunks():
            md5.update(chunk)
            pending += inflate.feed(chunk)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                number += 1
                yield number, line
        if pending:
            number += 1
            yield number, pending
        if md5.digest() != _b64(self._file.md5, self.where, "md5Checksum"):
            raise ExportIntegrityError(
                f"{self.where}: MD5 {base64.b64encode(md5.digest()).decode()} does not match "
                f"md5Checksum {self._file.md5} in manifest-files.json"
            )
        if not inflate.complete:
            raise ExportIntegrityError(f"{self.where}: the gzip stream is truncated")
        if number != self._file.item_count:
            raise ExportIntegrityError(
                f"{self.where}: {number} lines, manifest-files.json says itemCount "
                f"{self._file.item_count}"
            )

    def _chunks(self) -> Iterator[bytes]:
        """The stored bytes. A connection dropped mid-body is resumed where it stopped, with
        a ranged GET of the same object (If-Match its ETag), up to _ATTEMPTS times."""
        offset = 0
        for attempt in range(1, _ATTEMPTS + 1):
            args: dict[str, Any] = {"Bucket": self._bucket, "Key": self._file.key}
            pinned = self._if_match or self.etag
            if pinned:
                args["IfMatch"] = pinned
            if offset:
                args["Range"] = f"bytes={offset}-"
            try:
                response = self._s3.get_object(**args)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, self._bucket, self._file.key) from e
            if self.etag is None:
                self.etag = response.get("ETag")
            body = response["Body"]
            try:
                while chunk := body.read(_CHUNK):
                    offset += len(chunk)
                    yield chunk
            except (BotoCoreError, OSError) as e:
                if attempt == _ATTEMPTS:
                    raise StorageError(
                        f"{self.where}: reading failed {attempt} times, last at byte {offset} ({e})"
                    ) from e
                continue
            return


class _Inflater:
    """gzip, possibly of several members; an object of zero bytes is an empty file."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._seen = False

    @property
    def complete(self) -> bool:
        return not self._seen or bool(self._inflate.eof)

    def feed(self, chunk: bytes) -> bytes:
        out = []
        data = chunk
        while data:
            self._seen = True
            try:
                out.append(self._inflate.decompress(data))
            except zlib.error as e:
                raise ExportFormatError(f"{self._where}: not a gzip file ({e})") from None
            data = b""
            if self._inflate.eof and self._inflate.unused_data:
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        return b"".join(out)


# ---- lines ----------------------------------------------------------------------------


def _json_line(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportFormatError(f"{where}: not a JSON line ({e})") from None
    if not isinstance(doc, dict):
        raise ExportFormatError(f"{where}: not a JSON object")
    return doc


def _item(value: object, where: str, name: str) -> Item:
    try:
        validate_item(value, name)
    except InvalidValueError as e:
        raise ExportFormatError(f"{where}: {e}") from None
    if not isinstance(value, dict):  # validated above; narrows the type
        raise ExportFormatError(f"{where}: {name} is not a map")
    return value


def parse_item_line(raw: bytes, where: str) -> Item:
    """A full export's line: {"Item": {...}}."""
    doc = _json_line(raw, where)
    if set(doc) != {"Item"}:
        raise ExportFormatError(f'{where}: expected {{"Item": ...}}, got keys {sorted(doc)}')
    return _item(doc["Item"], where, "Item")


@dataclass(frozen=True)
class ExportChange:
    """An incremental export's line: an item's last write in the window."""

    keys: Item
    new_image: Item | None  # None: the item was deleted
    old_image: Item | None
    write_us: int


def parse_change_line(raw: bytes, where: str) -> ExportChange:
    doc = _json_line(raw, where)
    unknown = set(doc) - {"Metadata", "Keys", "NewImage", "OldImage"}
    if unknown:
        raise ExportFormatError(f"{where}: unexpected fields {sorted(unknown)}")
    metadata = doc.get("Metadata")
    stamp = metadata.get("WriteTimestampMicros") if isinstance(metadata, dict) else None
    text = stamp.get("N") if isinstance(stamp, dict) else None
    if not isinstance(text, str) or not text.isascii() or not text.isdigit():
        raise ExportFormatError(f"{where}: Metadata.WriteTimestampMicros is missing or invalid")
    keys = _item(doc.get("Keys"), where, "Keys")
    if not keys:
        raise ExportFormatError(f"{where}: Keys is empty")
    new = _item(doc["NewImage"], where, "NewImage") if "NewImage" in doc else None
    old = _item(doc["OldImage"], where, "OldImage") if "OldImage" in doc else None
    return ExportChange(keys, new, old, int(text))


def format_change_line(change: ExportChange) -> str:
    """An incremental export's line (parse_change_line reads it back): no NewImage for a
    deletion, no OldImage for an item that did not exist before."""
    doc: dict[str, Any] = {
        "Metadata": {"WriteTimestampMicros": {"N": str(change.write_us)}},
        "Keys": change.keys,
    }
    if change.new_image is not None:
        doc["NewImage"] = change.new_image
    if change.old_image is not None:
        doc["OldImage"] = change.old_image
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
