"""The table's key schema for a manifest: from DescribeTable when reachable, else recorded."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from compaction.manifest import KeyAttribute, Manifest


def describe_key_schema(dynamodb: Any, table: str) -> tuple[KeyAttribute, ...] | None:
    """The live table's key schema, or None when it cannot be described."""
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError):
        return None
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    ordered = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    if any(k["AttributeName"] not in types for k in ordered):
        return None  # a description without the keys' types: not one to trust
    return tuple(
        KeyAttribute(k["AttributeName"], types[k["AttributeName"]], k["KeyType"]) for k in ordered
    )


def recorded_key_schema(keys: dict[str, Any]) -> tuple[KeyAttribute, ...]:
    """From one stored item key: names and types are known, roles only for a single key."""
    role = "HASH" if len(keys) == 1 else None
    return tuple(KeyAttribute(name, next(iter(keys[name])), role) for name in sorted(keys))


def resolve_key_schema(
    dynamodb: Any | None, table: str, base: Manifest | None, sample_keys: dict[str, Any] | None
) -> tuple[tuple[KeyAttribute, ...], str]:
    if dynamodb is not None:
        described = describe_key_schema(dynamodb, table)
        if described is not None and (
            sample_keys is None or {k.name for k in described} == set(sample_keys)
        ):
            return described, "describe_table"
    if (
        base is not None
        and base.key_schema
        and (sample_keys is None or {k.name for k in base.key_schema} == set(sample_keys))
    ):
        return base.key_schema, base.key_schema_source
    if sample_keys is not None:
        return recorded_key_schema(sample_keys), "recorded"
    return (), "recorded"
