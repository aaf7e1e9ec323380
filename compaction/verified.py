"""Verified reads of snapshot files: exactly the S3 version a manifest pins, checked
against what the manifest records (size, SHA-256, rows) before anyone uses a byte of it.

Every reader of snapshot files goes through here (restore, query, compaction's base, the
drill, `snapshots --verify`). A mismatch is a `CorruptSnapshotError` (exit status 6) whose
one line names the file, the version and what did not match. Version-1 manifests pin no
version id: their files are read at the current version and checked by size and SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptSnapshotError
from compaction.manifest import DataFile
from compaction.s3errors import translate

_CHUNK = 1 << 20
_PARQUET_MAGIC = b"PAR1"
_GZIP_MAGIC = b"\x1f\x8b"
_MISSING = {"NoSuchKey", "NoSuchVersion", "404"}
# A dropped connection mid-body is retried: it says nothing about the stored file.
_ATTEMPTS = 3


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def where(bucket: str, data_file: DataFile) -> str:
    """How errors name a file: its URL and the version the manifest pins."""
    version = data_file.version_id or "current version (version-1 manifest)"
    return f"snapshot file s3://{bucket}/{data_file.key} (version {version})"


def fetch(s3: Any, bucket: str, data_file: DataFile) -> bytes:
    """The file's bytes, read at its pinned version and verified (size, SHA-256, rows)."""
    buffer = io.BytesIO()
    _get_verified(s3, bucket, data_file, lambda: _reset(buffer))
    body = buffer.getvalue()
    check_rows(body, data_file, where(bucket, data_file))
    return body


def download(s3: Any, bucket: str, data_file: DataFile, path: Path) -> Path:
    """The file at its pinned version, verified, at `path` (written whole or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    handle: list[IO[bytes]] = []

    def restart() -> IO[bytes]:
        for old in handle:
            old.close()
        handle[:] = [partial.open("wb")]
        return handle[0]

    try:
        _get_verified(s3, bucket, data_file, restart)
        handle[0].close()
        check_rows(partial, data_file, where(bucket, data_file))
        os.replace(partial, path)
    finally:
        for old in handle:
            old.close()
        partial.unlink(missing_ok=True)
    return path


def verify(s3: Any, bucket: str, data_file: DataFile) -> None:
    """Read the pinned version through and check it, keeping nothing but what the row
    check needs (Parquet: the bytes, for the footer; JSON lines: a running line count)."""
    if data_file.format == "json.gz":
        counter = _LineCounter(where(bucket, data_file))
        _get_verified(s3, bucket, data_file, counter.reset)
        counter.finish(data_file)
        return
    fetch(s3, bucket, data_file)


def check_present(s3: Any, bucket: str, data_file: DataFile) -> None:
    """One HEAD: the pinned version exists and has the recorded size (cheap; no checksum)."""
    request: dict[str, Any] = {"Bucket": bucket, "Key": data_file.key}
    if data_file.version_id:
        request["VersionId"] = data_file.version_id
    try:
        response = s3.head_object(**request)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in _MISSING or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise CorruptSnapshotError(_missing(s3, bucket, data_file, code or "404")) from e
        raise translate(e, bucket, data_file.key) from e
    except BotoCoreError as e:
        raise translate(e, bucket, data_file.key) from e
    size = int(response.get("ContentLength", -1))
    if size != data_file.bytes:
        state = "truncated" if size < data_file.bytes else "replaced"
        raise CorruptSnapshotError(
            f"{where(bucket, data_file)}: {state}: {size} bytes, the manifest pins "
            f"{data_file.bytes}"
        )


def check_local(path: Path, data_file: DataFile, name: str) -> None:
    """A local copy (a cache entry) still holds exactly the pinned file."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CorruptSnapshotError(f"{name}: local copy {path} unreadable ({e.strerror})") from e
    if size != data_file.bytes:
        raise CorruptSnapshotError(
            f"{name}: local copy {path} has {size} bytes, the manifest pins {data_file.bytes}"
        )
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != data_file.sha256:
        raise CorruptSnapshotError(f"{name}: local copy {path} does not match its sha256")


def check_rows(source: bytes | Path, data_file: DataFile, name: str) -> None:
    """Parquet (and tombstones): the footer's row count; JSON lines: the line count; a
    table settings document: one JSON object."""
    if data_file.format == "table-settings":
        _check_document(source, data_file, name)
        return
    if data_file.format == "json.gz":
        counter = _LineCounter(name)
        sink = counter.reset()
        if isinstance(source, Path):
            with source.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_CHUNK), b""):
                    sink.write(chunk)
        else:
            sink.write(source)
        counter.finish(data_file)
        return
    if data_file.format not in {"parquet", "tombstones"}:
        return  # no rows to count (DynamoDB-style export manifests): size and SHA-256 only
    rows = parquet_rows(source, name)
    if rows != data_file.rows:
        raise CorruptSnapshotError(f"{name}: holds {rows} rows, the manifest says {data_file.rows}")


def _check_document(source: bytes | Path, data_file: DataFile, name: str) -> None:
    body = source.read_bytes() if isinstance(source, Path) else source
    try:
        document = json.loads(body)
    except ValueError as e:
        raise CorruptSnapshotError(f"{name}: not a JSON document ({_first_line(e)})") from e
    if not isinstance(document, dict) or data_file.rows != 1:
        raise CorruptSnapshotError(f"{name}: holds 1 document, the manifest says {data_file.rows}")


def parquet_rows(source: bytes | Path, name: str) -> int:
    try:
        reader = source if isinstance(source, Path) else pa.BufferReader(source)
        return int(pq.ParquetFile(reader).metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise CorruptSnapshotError(f"{name}: not a readable Parquet file ({_first_line(e)})") from e


def _get_verified(s3: Any, bucket: str, data_file: DataFile, restart: Callable[[], _Sink]) -> None:
    """GET the pinned version into the sink `restart()` gives (a fresh one per attempt),
    checking size and SHA-256 on the way."""
    name = where(bucket, data_file)
    request: dict[str, Any] = {"Bucket": bucket, "Key": data_file.key}
    if data_file.version_id:
        request["VersionId"] = data_file.version_id
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            response = s3.get_object(**request)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                raise CorruptSnapshotError(_missing(s3, bucket, data_file, code)) from e
            raise translate(e, bucket, data_file.key) from e
        except BotoCoreError as e:
            raise translate(e, bucket, data_file.key) from e
        sink = restart()
        size, digest, head = 0, hashlib.sha256(), b""
        try:
            for chunk in response["Body"].iter_chunks(_CHUNK):
                size += len(chunk)
                digest.update(chunk)
                head = head or chunk[:4]
                sink.write(chunk)
        except BotoCoreError as e:  # the connection broke mid-body: read it again
            if attempt == _ATTEMPTS:
                raise translate(e, bucket, data_file.key) from e
            continue
        _compare(name, data_file, size, digest.hexdigest(), head)
        return


def _compare(name: str, data_file: DataFile, size: int, sha256: str, head: bytes) -> None:
    if size == data_file.bytes and sha256 == data_file.sha256:
        return
    if size < data_file.bytes:
        what = f"truncated: {size} bytes, the manifest pins {data_file.bytes}"
    elif size != data_file.bytes:
        what = f"replaced: {size} bytes, the manifest pins {data_file.bytes}"
    else:
        what = f"replaced: sha256 {sha256[:12]}..., the manifest pins {data_file.sha256[:12]}..."
    magic = _GZIP_MAGIC if data_file.format == "json.gz" else _PARQUET_MAGIC
    if data_file.format in {"json.gz", "parquet", "tombstones"} and not head.startswith(magic):
        kind = "gzip JSON lines" if data_file.format == "json.gz" else "Parquet"
        what += f"; not a {kind} file"
    raise CorruptSnapshotError(f"{name}: {what}")


def _missing(s3: Any, bucket: str, data_file: DataFile, code: str) -> str:
    """Missing: the key is gone, or (a pinned version) that version is gone."""
    name = where(bucket, data_file)
    if not data_file.version_id:
        return f"{name}: missing (no object at that key)"
    try:
        current = s3.head_object(Bucket=bucket, Key=data_file.key)
    except (ClientError, BotoCoreError):
        return f"{name}: missing (neither the pinned version nor any other is stored)"
    return (
        f"{name}: missing: the pinned version was deleted; the key now holds version "
        f"{current.get('VersionId') or 'null'}, which the manifest does not list ({code})"
    )


def _reset(buffer: io.BytesIO) -> io.BytesIO:
    buffer.seek(0)
    buffer.truncate()
    return buffer


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


class _LineCounter:
    """A write-only sink that gunzips what it is given and counts the lines."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self.lines = 0
        self._ended_with_newline = True

    def reset(self) -> _LineCounter:
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self.lines = 0
        self._ended_with_newline = True
        return self

    def write(self, data: bytes, /) -> int:
        chunk = data
        try:
            while chunk:
                text = self._inflate.decompress(chunk)
                self._count(text)
                # gzip files may hold several members: start the next one
                chunk = self._inflate.unused_data
                if chunk:
                    self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        except zlib.error as e:
            raise CorruptSnapshotError(f"{self._name}: not gzip JSON lines ({e})") from e
        return len(data)

    def _count(self, text: bytes) -> None:
        if text:
            self.lines += text.count(b"\n")
            self._ended_with_newline = text.endswith(b"\n")

    def finish(self, data_file: DataFile) -> None:
        if not self._inflate.eof:
            raise CorruptSnapshotError(f"{self._name}: not gzip JSON lines (stream cut short)")
        lines = self.lines + (0 if self._ended_with_newline else 1)
        if lines != data_file.rows:
            raise CorruptSnapshotError(
                f"{self._name}: holds {lines} lines, the manifest says {data_file.rows} rows"
            )
