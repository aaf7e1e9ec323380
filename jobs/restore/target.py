"""The restore target table: its key schema, creating it, and reading it (parallel scan)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, NotFoundError, StorageError, UserInputError
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


def create_target(dynamodb: Any, table: str, schema: tuple[KeyAttribute, ...]) -> None:
    """Create the table (on-demand billing) and wait until it is ACTIVE."""
    if not schema or any(k.key_type is None for k in schema):
        raise UserInputError(
            "cannot create the target: the backup records key names but not which is the "
            "partition key; create the table yourself, or compact while the source table "
            "can be described"
        )
    existed = False
    try:
        try:
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": k.name, "KeyType": k.key_type} for k in schema],
                AttributeDefinitions=[
                    {"AttributeName": k.name, "AttributeType": k.attribute_type} for k in schema
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as e:
            # An earlier attempt whose answer was lost created it (botocore sent the request
            # again), or another client did: the key check below decides if it fits.
            if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
            existed = True
        dynamodb.get_waiter("table_exists").wait(
            TableName=table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
        )
    except (ClientError, BotoCoreError) as e:
        raise _storage(e, table, "CreateTable") from e
    if existed:
        check_schema(table, describe_target(dynamodb, table) or (), schema)


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


def require_target(
    dynamodb: Any,
    table: str,
    schema: tuple[KeyAttribute, ...],
    create: bool,
    dry_run: bool,
    announce: Callable[[str], None],
) -> bool:
    """Make sure the target exists with the right keys; True if it exists now."""
    actual = describe_target(dynamodb, table)
    if actual is None:
        if not create:
            raise NotFoundError(
                f"target table {table!r} does not exist (add --create-table to create it)"
            )
        if dry_run:
            announce(f"would create table {table!r} (on-demand)")
            return False
        create_target(dynamodb, table, schema)
        announce(f"created table {table!r} (on-demand)")
        return True
    check_schema(table, actual, schema)
    return True
