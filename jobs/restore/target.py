"""The restore target table: its key schema, and reading it (parallel scan). Creating it
from the recorded settings: jobs/restore/tablesettings.py."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, StorageError
from compaction.manifest import KeyAttribute
from jobs.restore.ddbitems import from_client_item


class SchemaMismatchError(BackupError):
    """The target table's key schema differs from the backup's."""


def _storage(e: Exception, table: str, what: str) -> StorageError:
    return StorageError(f"{what} on table {table!r} failed: {e}")


def describe_target(dynamodb: Any, table: str) -> tuple[KeyAttribute, ...] | None:
    """The target's key schema, or None if the table does not exist."""
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise _storage(e, table, "DescribeTable") from e
    except BotoCoreError as e:
        raise _storage(e, table, "DescribeTable") from e
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    ordered = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return tuple(
        KeyAttribute(k["AttributeName"], types[k["AttributeName"]], k["KeyType"]) for k in ordered
    )


def check_schema(
    target: str, actual: tuple[KeyAttribute, ...], expected: tuple[KeyAttribute, ...]
) -> None:
    """Fail before any write when the target's keys are not the backup's."""

    def spell(schema: tuple[KeyAttribute, ...], roles: bool) -> str:
        return ", ".join(
            f"{k.name} {k.attribute_type}" + (f" {k.key_type}" if roles and k.key_type else "")
            for k in sorted(schema, key=lambda k: k.name)
        )

    roles_known = all(k.key_type for k in expected)
    same_names = {(k.name, k.attribute_type) for k in actual} == {
        (k.name, k.attribute_type) for k in expected
    }
    same_roles = not roles_known or {(k.name, k.key_type) for k in actual} == {
        (k.name, k.key_type) for k in expected
    }
    if not (same_names and same_roles):
        raise SchemaMismatchError(
            f"key schema mismatch: table {target!r} has ({spell(actual, True)}), "
            f"the backup has ({spell(expected, roles_known)}); nothing was written"
        )


def scan(dynamodb: Any, table: str, segments: int = 8) -> Iterator[Item]:
    """Every item of the table, by a parallel scan; items in our stored form."""
    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="scan") as pool:
        parts = pool.map(lambda s: list(_segment(dynamodb, table, s, segments)), range(segments))
        for part in parts:
            yield from part


def _segment(dynamodb: Any, table: str, segment: int, total: int) -> Iterator[Item]:
    paginator = dynamodb.get_paginator("scan")
    try:
        for page in paginator.paginate(
            TableName=table, Segment=segment, TotalSegments=total, ConsistentRead=True
        ):
            for item in page.get("Items", []):
                yield from_client_item(item)
    except (ClientError, BotoCoreError) as e:
        raise _storage(e, table, "Scan") from e
