"""Export folders laid out exactly as DynamoDB's Export to S3 writes them.

Full export:   <prefix>/AWSDynamoDB/<id>/{_started, manifest-summary.json, manifest-summary.md5,
               manifest-files.json, manifest-files.md5, data/<26 chars>.json.gz}
Incremental:   the same manifests in <prefix>/AWSDynamoDB/<id>/, data files in the shared
               <prefix>/AWSDynamoDB/data/.
manifest-files.json lists each data file (itemCount, md5Checksum = base64 MD5 of the file,
etag, dataFileS3Key = the full key); empty data files are gzip files of nothing.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any

from backup_lambda.ddbjson import Item
from backup_lambda.layout import format_time_us

SOURCE_BUCKET = "exports-source"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
SEC = 1_000_000


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode("ascii")  # noqa: S324


def item_line(item: Item) -> bytes:
    return json.dumps({"Item": item}, separators=(",", ":")).encode("utf-8")


def change_line(
    keys: Item, write_us: int, new: Item | None = None, old: Item | None = None
) -> bytes:
    doc: dict[str, Any] = {"Metadata": {"WriteTimestampMicros": {"N": str(write_us)}}}
    doc["Keys"] = keys
    if new is not None:
        doc["NewImage"] = new
    if old is not None:
        doc["OldImage"] = old
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def gz(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)


@dataclass
class Written:
    export_id: str
    folder: str
    data_keys: list[str]
    summary: dict[str, Any]


@dataclass
class ExportFolder:
    """Writes exports under s3://<bucket>/<prefix>/ the way DynamoDB does."""

    s3: Any
    bucket: str = SOURCE_BUCKET
    prefix: str = "exports"
    table_arn: str = TABLE_ARN
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311

    def _name(self, length: int) -> str:
        return "".join(self.rng.choice(string.ascii_lowercase + "234567") for _ in range(length))

    def export_id(self, at_us: int) -> str:
        return f"{at_us // 1000:014d}-{self.rng.getrandbits(32):08x}"

    def full(
        self,
        items: list[Item],
        export_time_us: int,
        *,
        files: int = 2,
        empty_files: int = 1,
        summary: dict[str, Any] | None = None,
    ) -> Written:
        chunks = [items[i::files] for i in range(files)] + [[] for _ in range(empty_files)]
        lines = [[item_line(item) for item in chunk] for chunk in chunks]
        export_id = self.export_id(export_time_us)
        data = [
            f"{self.prefix}/AWSDynamoDB/{export_id}/data/{self._name(26)}.json.gz" for _ in lines
        ]
        fields = {"exportTime": _iso(export_time_us), "exportType": "FULL_EXPORT"}
        return self._write(export_id, data, lines, {**fields, **(summary or {})}, "2020-06-30")

    def incremental(
        self,
        lines: list[bytes],
        from_us: int,
        to_us: int,
        *,
        view: str = "NEW_AND_OLD_IMAGES",
        files: int = 2,
        empty_files: int = 1,
        summary: dict[str, Any] | None = None,
    ) -> Written:
        chunks = [lines[i::files] for i in range(files)] + [[] for _ in range(empty_files)]
        export_id = self.export_id(to_us)
        data = [f"{self.prefix}/AWSDynamoDB/data/{self._name(26)}.json.gz" for _ in chunks]
        fields = {
            "exportFromTime": _iso(from_us),
            "exportToTime": _iso(to_us),
            "exportType": "INCREMENTAL_EXPORT",
            "outputView": view,
        }
        return self._write(export_id, data, chunks, {**fields, **(summary or {})}, "2023-08-01")

    def _write(
        self,
        export_id: str,
        data_keys: list[str],
        lines: list[list[bytes]],
        fields: dict[str, Any],
        version: str,
    ) -> Written:
        folder = f"{self.prefix}/AWSDynamoDB/{export_id}/"
        self.s3.put_object(Bucket=self.bucket, Key=folder + "_started", Body=b"")
        manifest_lines = []
        for key, chunk in zip(data_keys, lines, strict=True):
            body = gz(chunk)
            response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            manifest_lines.append(
                json.dumps(
                    {
                        "itemCount": len(chunk),
                        "md5Checksum": md5_b64(body),
                        "etag": response["ETag"].strip('"'),
                        "dataFileS3Key": key,
                    }
                )
            )
        files_body = "".join(line + "\n" for line in manifest_lines).encode()
        self.s3.put_object(Bucket=self.bucket, Key=folder + "manifest-files.json", Body=files_body)
        self.s3.put_object(
            Bucket=self.bucket, Key=folder + "manifest-files.md5", Body=md5_b64(files_body).encode()
        )
        summary: dict[str, Any] = {
            "version": version,
            "exportArn": f"{self.table_arn}/export/{export_id}",
            "startTime": "2026-01-01T00:00:00.000Z",
            "endTime": "2026-01-01T00:05:00.000Z",
            "tableArn": self.table_arn,
            "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
            "s3Bucket": self.bucket,
            "s3Prefix": self.prefix,
            "s3SseAlgorithm": "AES256",
            "s3SseKmsKeyId": None,
            "manifestFilesS3Key": folder + "manifest-files.json",
            "billedSizeBytes": 1234,
            "itemCount": sum(len(chunk) for chunk in lines),
            "outputFormat": "DYNAMODB_JSON",
            **fields,
        }
        summary = {k: v for k, v in summary.items() if v is not _DROP}
        self.put_summary(folder, summary)
        return Written(export_id, folder, data_keys, summary)

    def put_summary(self, folder: str, summary: dict[str, Any]) -> None:
        body = json.dumps(summary, indent=3).encode()
        self.s3.put_object(Bucket=self.bucket, Key=folder + "manifest-summary.json", Body=body)
        self.s3.put_object(
            Bucket=self.bucket, Key=folder + "manifest-summary.md5", Body=md5_b64(body).encode()
        )

    def replace_data(self, written: Written, index: int, lines: list[bytes]) -> None:
        """Overwrite one data file (its manifest entry is not updated: MD5 mismatch)."""
        self.s3.put_object(Bucket=self.bucket, Key=written.data_keys[index], Body=gz(lines))

    def rewrite_files_manifest(self, written: Written, entries: list[dict[str, Any]]) -> None:
        folder = written.folder
        body = "".join(json.dumps(e) + "\n" for e in entries).encode()
        self.s3.put_object(Bucket=self.bucket, Key=folder + "manifest-files.json", Body=body)
        self.s3.put_object(
            Bucket=self.bucket, Key=folder + "manifest-files.md5", Body=md5_b64(body).encode()
        )

    def files_manifest(self, written: Written) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=written.folder + "manifest-files.json")
        return [json.loads(line) for line in body["Body"].read().splitlines() if line.strip()]


_DROP = object()
DROP: Any = _DROP  # a summary field value that removes the field


def _iso(micros: int) -> str:
    """DynamoDB writes milliseconds: 2020-11-04T07:28:34.028Z."""
    text = format_time_us(micros - micros % 1000)
    if "." in text:
        whole, fraction = text[:-1].split(".")
        return f"{whole}.{fraction[:3].ljust(3, '0')}Z"
    return text[:-1] + ".000Z"
