"""The key attributes the backup itself records for a table (names and types): the newest
snapshot's key schema, else the keys of one stored change (an item object, else the
journal's first change). Used to check a key a user typed before looking for it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import decode_change, items_prefix
from compaction import catalog
from compaction.journal import iter_journal, read_changes
from compaction.keyschema import recorded_key_schema
from compaction.manifest import KeyAttribute
from compaction.s3errors import translate
from compaction.s3read import get_bytes


def recorded_schema(s3: Any, bucket: str, prefix: str, table: str) -> tuple[KeyAttribute, ...]:
    """The key attributes of one stored change: an item object, else (journal-only) the
    first change of the journal; () when nothing is stored."""
    root = items_prefix(prefix, table)
    try:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix=root, MaxKeys=1)
        contents = listing.get("Contents", [])
        if contents:
            key = contents[0]["Key"]
            body = get_bytes(s3, bucket, key)
            return recorded_key_schema(decode_change(body, f"s3://{bucket}/{key}").keys)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, bucket, root) from e
    for obj in iter_journal(s3, bucket, prefix, table, None):
        changes = read_changes(s3, bucket, obj)
        if changes:
            return recorded_key_schema(changes[0].keys)
    return ()


def stored_key_schema(s3: Any, bucket: str, prefix: str, table: str) -> tuple[KeyAttribute, ...]:
    """The newest committed snapshot's key schema, else `recorded_schema` (() when the
    backup holds nothing to tell)."""
    newest = catalog.newest_at_or_before(s3, bucket, prefix, table, None)
    if newest is not None and newest.key_schema:
        return newest.key_schema
    return recorded_schema(s3, bucket, prefix, table)
