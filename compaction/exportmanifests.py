"""DynamoDB-style export manifests beside a snapshot's export files.

Every snapshot's JSON lines files (`run-<run>/export/data/*.json.gz`) also get the
manifests tools that read DynamoDB's exports expect, in DynamoDB's format:

    run-<run>/export/AWSDynamoDB/<export-id>/_started
    run-<run>/export/AWSDynamoDB/<export-id>/manifest-files.json   (+ manifest-files.md5)
    run-<run>/export/AWSDynamoDB/<export-id>/manifest-summary.json (+ manifest-summary.md5)

A full snapshot is a FULL_EXPORT as of its as-of time; a delta snapshot is an
INCREMENTAL_EXPORT from its parent's as-of to its own. `ddb-backup import-export --from
s3://B/.../run-<run>/export/` reads them back. They are written before the snapshot's
manifest is committed and listed (format `aws-export`) in it, pinned like its other files.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import format_time_us
from compaction import catalog
from compaction.awsexport import (
    DYNAMODB_JSON,
    EXPORT_DIR,
    FILES_NAME,
    FULL_EXPORT,
    INCREMENTAL_EXPORT,
    NEW_IMAGE,
    SUMMARY_NAME,
)
from compaction.manifest import DataFile, Manifest
from compaction.s3errors import translate
from compaction.snapshot_io import SINGLE_PUT_BYTES

FULL_VERSION = "2020-06-30"
INCREMENTAL_VERSION = "2023-08-01"
EXPORT_FORMAT = "json.gz"  # the DataFile format of a snapshot's export files
MANIFEST_FORMAT = "aws-export"  # the DataFile format of these manifests


def table_arn_for(table: str) -> str:
    """The table's ARN when ddb-backup does not know its region and account."""
    return f"arn:aws:dynamodb:::table/{table}"


def export_id_for(manifest: Manifest) -> str:
    """DynamoDB's shape: 14 digits of milliseconds, a dash, 8 characters."""
    return f"{manifest.as_of_us // 1000:014d}-{manifest.run_id[:8]}"


def export_root(prefix: str, manifest: Manifest) -> str:
    """The folder that holds the snapshot's `data/` and `AWSDynamoDB/` (ends with "/")."""
    return catalog.run_prefix(prefix, manifest.table, manifest.id, manifest.run_id) + "export/"


def _md5(body: bytes) -> str:
    digest = hashlib.md5(body).digest()  # noqa: S324 - the format's checksum, not security
    return base64.b64encode(digest).decode("ascii")


def _etag(data_file: DataFile) -> str:
    """S3's ETag of a file put in one request is its MD5 in hex (the upload sends the MD5
    and S3 checks it); larger files went up in parts and their ETag is read back."""
    md5 = base64.b64decode(data_file.md5 or "")
    return md5.hex()


@dataclass(frozen=True)
class ExportDocuments:
    folder: str  # .../AWSDynamoDB/<export-id>/
    bodies: dict[str, bytes]  # key -> body, in the order to write them (summary last)


def export_documents(
    bucket: str,
    prefix: str,
    manifest: Manifest,
    *,
    parent_as_of_us: int | None = None,
    output_view: str = NEW_IMAGE,
    table_arn: str | None = None,
    etags: dict[str, str] | None = None,
) -> ExportDocuments:
    """The manifests for one snapshot (pure: no I/O). `parent_as_of_us` makes it an
    incremental export (a delta snapshot's window); `etags` overrides derived ETags."""
    root = export_root(prefix, manifest)
    files = []
    for data_file in sorted(manifest.files_of(EXPORT_FORMAT), key=lambda f: f.key):
        if data_file.md5 is None:
            raise ValueError(f"{data_file.key}: no MD5 recorded")
        etag = (etags or {}).get(data_file.key) or _etag(data_file)
        files.append(ExportedFile(data_file.key, data_file.rows, data_file.md5, etag))
    times = {
        "startTime": format_time_us(manifest.listing_watermark_us),
        "endTime": format_time_us(manifest.built_at_us),
    }
    if parent_as_of_us is None:
        times["exportTime"] = format_time_us(manifest.as_of_us)
    else:
        times["exportFromTime"] = format_time_us(parent_as_of_us)
        times["exportToTime"] = format_time_us(manifest.as_of_us)
    return documents_for(
        bucket,
        root,
        export_id_for(manifest),
        table_arn or table_arn_for(manifest.table),
        files,
        times,
        output_view=output_view if parent_as_of_us is not None else None,
    )


@dataclass(frozen=True)
class ExportedFile:
    """A data file as manifest-files.json lists it."""

    key: str
    rows: int
    md5: str  # base64
    etag: str


def documents_for(
    bucket: str,
    root: str,
    export_id: str,
    table_arn: str,
    files: list[ExportedFile],
    times: dict[str, str],
    *,
    output_view: str | None = None,
) -> ExportDocuments:
    """An export's manifests (pure): a full export, or with `output_view` an incremental
    one; `times` holds startTime, endTime and exportTime or exportFromTime/ToTime."""
    folder = f"{root}{EXPORT_DIR}/{export_id}/"
    lines = [
        json.dumps(
            {
                "itemCount": f.rows,
                "md5Checksum": f.md5,
                "etag": f.etag,
                "dataFileS3Key": f.key,
            },
            separators=(",", ":"),
        )
        for f in files
    ]
    files_body = "".join(line + "\n" for line in lines).encode("utf-8")
    summary: dict[str, Any] = {
        "version": FULL_VERSION if output_view is None else INCREMENTAL_VERSION,
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": times["startTime"],
        "endTime": times["endTime"],
        "tableArn": table_arn,
        "tableId": None,
        "s3Bucket": bucket,
        "s3Prefix": root.rstrip("/"),
        "s3SseAlgorithm": None,
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": folder + FILES_NAME,
        "billedSizeBytes": 0,
        "itemCount": sum(f.rows for f in files),
        "outputFormat": DYNAMODB_JSON,
        "exportType": FULL_EXPORT,
    }
    if output_view is None:
        summary["exportTime"] = times["exportTime"]
    else:
        summary.update(
            exportFromTime=times["exportFromTime"],
            exportToTime=times["exportToTime"],
            outputView=output_view,
            exportType=INCREMENTAL_EXPORT,
        )
    summary_body = json.dumps(summary, indent=1).encode("utf-8")
    bodies = {
        folder + "_started": b"",
        folder + FILES_NAME: files_body,
        folder + "manifest-files.md5": _md5(files_body).encode("ascii"),
        folder + SUMMARY_NAME: summary_body,
        folder + "manifest-summary.md5": _md5(summary_body).encode("ascii"),
    }
    return ExportDocuments(folder, bodies)


def add_export_manifests(
    s3: Any,
    bucket: str,
    prefix: str,
    manifest: Manifest,
    *,
    parent_as_of_us: int | None = None,
    output_view: str = NEW_IMAGE,
    table_arn: str | None = None,
) -> Manifest:
    """Write the manifests (before the snapshot commits); the snapshot's manifest, returned,
    lists and pins them like its other files (format `aws-export`)."""
    etags = {
        f.key: _head_etag(s3, bucket, f)
        for f in manifest.files_of(EXPORT_FORMAT)
        if f.bytes > SINGLE_PUT_BYTES
    }
    documents = export_documents(
        bucket,
        prefix,
        manifest,
        parent_as_of_us=parent_as_of_us,
        output_view=output_view,
        table_arn=table_arn,
        etags=etags,
    )
    written = []
    for key, body in documents.bodies.items():
        content_type = "application/json" if key.endswith(".json") else "text/plain"
        md5 = _md5(body)
        try:
            response = s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type, ContentMD5=md5
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, bucket, key) from e
        version = response.get("VersionId")
        written.append(
            DataFile(
                key=key,
                format=MANIFEST_FORMAT,
                unit="",
                rows=body.count(b"\n") if key.endswith(FILES_NAME) else 0,
                bytes=len(body),
                sha256=hashlib.sha256(body).hexdigest(),
                version_id=version if version and version != "null" else None,
                md5=md5,
            )
        )
    return dataclasses.replace(manifest, files=(*manifest.files, *written))


def _head_etag(s3: Any, bucket: str, data_file: DataFile) -> str:
    args: dict[str, Any] = {"Bucket": bucket, "Key": data_file.key}
    if data_file.version_id:
        args["VersionId"] = data_file.version_id
    try:
        etag: str = s3.head_object(**args)["ETag"]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, data_file.key) from e
    return etag.strip('"')
