"""Where captured table settings are kept, and the settings in force at a time.

A compaction writes the document into its run's folder and lists it in the manifest
(format "table-settings", pinned by version id, size and SHA-256 like every snapshot file);
a backfill writes it beside its record, which pins it the same way. The settings at a time
T are, part by part, the newest capture at or before T that captured that part: a run that
could not read the tags (or ran after the table was deleted) does not erase what an
earlier run recorded.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import CorruptSnapshotError
from backup_lambda.layout import LAYOUT_DIR, table_root
from compaction import catalog
from compaction.manifest import DataFile, Manifest, snapshot_id
from compaction.s3errors import translate
from compaction.snapshot_io import upload
from compaction.tablesettings import FILE_FORMAT, PARTS, TABLE, Part, TableSettings
from compaction.verified import fetch, where

SETTINGS_NAME = "table-settings.json"


def upload_settings(s3: Any, bucket: str, folder: str, settings: TableSettings) -> DataFile:
    """Put the document under `folder` (a run's folder); the DataFile pins what S3 wrote."""
    with tempfile.TemporaryDirectory(prefix="ddb-backup-settings-") as tmp:
        path = Path(tmp) / SETTINGS_NAME
        path.write_bytes(settings.to_json())
        key = f"{folder}settings/{SETTINGS_NAME}"
        return upload(s3, bucket, path, key, FILE_FORMAT, "", rows=1)  # one document


def settings_file(manifest: Manifest) -> DataFile | None:
    files = manifest.files_of(FILE_FORMAT)
    return files[0] if files else None


def read_settings(s3: Any, bucket: str, data_file: DataFile) -> TableSettings:
    """The pinned version of the document, verified against its record (size, SHA-256)."""
    body = fetch(s3, bucket, data_file)
    return TableSettings.from_json(body, where(bucket, data_file))


@dataclass(frozen=True)
class Capture:
    """One recorded capture: where it came from, and its document."""

    source: str  # "snapshot <id>" | "backfill <run>"
    settings: TableSettings


def _backfill_captures(s3: Any, bucket: str, prefix: str, table: str) -> Iterator[Capture]:
    root = f"{table_root(prefix, table)}{LAYOUT_DIR}/backfills/"
    paginator = s3.get_paginator("list_objects_v2")
    try:
        keys = [
            o["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/")
            for o in page.get("Contents", [])
            if o["Key"].endswith(".json")
        ]
        for key in sorted(keys):
            record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            raw = record.get("settings") if isinstance(record, dict) else None
            if isinstance(raw, dict):
                settings = read_settings(s3, bucket, DataFile(**raw))
                yield Capture(f"backfill {record.get('run_id')}", settings)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, root) from e
    except (ValueError, TypeError) as e:
        raise CorruptSnapshotError(f"s3://{bucket}/{root}: unreadable backfill record ({e})") from e


def _snapshot_captures(
    s3: Any, bucket: str, prefix: str, table: str, ids: list[str]
) -> Iterator[Capture]:
    """Captures of the snapshots `ids`, in that order; stops at a version-1 manifest (written
    before settings were captured: the older ones are too)."""
    for snapshot in ids:
        manifest = catalog.load_manifest(s3, bucket, prefix, table, snapshot)
        if manifest is None:
            continue
        data_file = settings_file(manifest)
        if data_file is not None:
            yield Capture(f"snapshot {manifest.id}", read_settings(s3, bucket, data_file))
        elif manifest.manifest_version < 2:
            return


def effective(captures: list[Capture]) -> TableSettings | None:
    """Part by part, the newest capture that captured it (None: no capture at all)."""
    if not captures:
        return None
    ordered = sorted(captures, key=lambda c: c.settings.captured_at_us, reverse=True)
    newest = ordered[0].settings
    parts: dict[str, Part] = {}
    for name in PARTS:
        for capture in ordered:
            part = capture.settings.part(name)
            if part.captured:
                parts[name] = replace(
                    part, captured_at_us=capture.settings.captured_at_us, source=capture.source
                )
                break
        else:
            parts[name] = replace(newest.part(name), source=ordered[0].source)
    described = next((c.settings for c in ordered if c.settings.captured(TABLE)), newest)
    return TableSettings(
        newest.table,
        newest.captured_at_us,
        parts,
        region=described.region,
        table_arn=described.table_arn,
    )


def settings_at(
    s3: Any, bucket: str, prefix: str, table: str, at_us: int | None
) -> TableSettings | None:
    """The recorded settings in force at `at_us` (None: the newest), merged part by part.
    When nothing was captured at or before that time, the oldest capture after it (a restore
    to a time before the first snapshot still gets the table's indexes). None: the backup
    holds no settings at all (it was made by a release that did not capture them)."""
    ids = catalog.list_snapshot_ids(s3, bucket, prefix, table)
    backfills = list(_backfill_captures(s3, bucket, prefix, table))
    limit = snapshot_id(at_us) if at_us is not None else None
    found = [c for c in backfills if at_us is None or c.settings.captured_at_us <= at_us]
    after = [c for c in backfills if c not in found]
    missing = set(PARTS)
    earlier = [i for i in reversed(ids) if limit is None or i <= limit]
    for capture in _snapshot_captures(s3, bucket, prefix, table, earlier):
        if at_us is not None and capture.settings.captured_at_us > at_us:
            after.append(capture)  # built after the time asked for (the settle window)
            continue
        found.append(capture)
        missing -= {name for name in PARTS if capture.settings.captured(name)}
        if not missing:
            break
    if any(_useful(c) for c in found):
        return effective(found)
    # Nothing at or before T captured anything (e.g. a snapshot imported from a DynamoDB
    # export while its table was out of reach): a later capture is better than none.
    if not any(c.settings.captured(TABLE) for c in after):
        later = [i for i in ids if limit is not None and i > limit]
        for capture in _snapshot_captures(s3, bucket, prefix, table, later):
            after.append(capture)
            if capture.settings.captured(TABLE):
                break
    after.sort(key=lambda c: c.settings.captured_at_us)
    described = [c for c in after if c.settings.captured(TABLE)]
    useful = [c for c in after if _useful(c)]
    # No capture at all says why (found, else after, holds only documents of reasons).
    return effective(described[:1] or useful[:1] or found or after[:1])


def _useful(capture: Capture) -> bool:
    """Whether a capture captured any part (one that captured none only says why)."""
    return any(capture.settings.captured(name) for name in PARTS)
