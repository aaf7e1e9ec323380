"""Stream records -> Changes. A read-only view over the raw Lambda event dict."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backup_lambda.ddbjson import validate_item
from backup_lambda.errors import InvalidValueError, MalformedRecordError
from backup_lambda.layout import (
    EVENT_NAMES,
    Change,
    EventName,
    canonical_key_bytes,
    event_time_us,
)

# arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
_ARN = re.compile(
    r"^arn:[\w-]+:dynamodb:[^:]*:[^:]*:table/(?P<table>[A-Za-z0-9_.-]{3,255})/stream/"
)
_TTL_PRINCIPAL = "dynamodb.amazonaws.com"


class MissingSequenceNumberError(MalformedRecordError):
    """A record has no sequence number, so it cannot be reported as a partial failure."""


@dataclass(frozen=True)
class ParsedRecord:
    """A record that parsed: its change, or the reason it is malformed."""

    sequence_number: str
    change: Change | None
    error: str | None = None


def table_from_arn(arn: object) -> str:
    if not isinstance(arn, str) or not (match := _ARN.match(arn)):
        raise MalformedRecordError(f"eventSourceARN {arn!r} is not a DynamoDB stream ARN")
    return match.group("table")


def sequence_number_of(record: object) -> str:
    ddb = record.get("dynamodb") if isinstance(record, Mapping) else None
    sequence = ddb.get("SequenceNumber") if isinstance(ddb, Mapping) else None
    if not isinstance(sequence, str) or not (sequence.isascii() and sequence.isdigit()):
        raise MissingSequenceNumberError(
            f"stream record has no valid dynamodb.SequenceNumber ({sequence!r})"
        )
    return sequence


def parse_record(record: Mapping[str, Any]) -> ParsedRecord:
    """Parse one record; raise MissingSequenceNumberError only when it has no sequence number."""
    sequence = sequence_number_of(record)
    try:
        return ParsedRecord(sequence, _to_change(record, sequence))
    except (MalformedRecordError, InvalidValueError) as e:
        return ParsedRecord(sequence, None, str(e))


def _to_change(record: Mapping[str, Any], sequence: str) -> Change:
    ddb = record["dynamodb"]
    event_name = record.get("eventName")
    if event_name not in EVENT_NAMES:
        raise MalformedRecordError(f"unknown eventName {event_name!r}")
    name: EventName = event_name
    table = table_from_arn(record.get("eventSourceARN"))
    keys = ddb.get("Keys")
    if not keys:
        raise MalformedRecordError("record has no dynamodb.Keys")
    validate_item(keys, "Keys")
    canonical_key_bytes(keys)  # key attributes must be S, N or B to name the item's object
    new_image = ddb.get("NewImage")
    if name == "REMOVE":
        new_image = None
    elif new_image is None:
        raise MalformedRecordError(
            f"{name} record has no NewImage (is the stream view type KEYS_ONLY or OLD_IMAGE?)"
        )
    else:
        validate_item(new_image, "NewImage")
        for key_name, key_value in keys.items():
            if new_image.get(key_name) != key_value:
                raise MalformedRecordError(f"NewImage does not hold key attribute {key_name!r}")
    if "ApproximateCreationDateTime" not in ddb:
        raise MalformedRecordError("record has no dynamodb.ApproximateCreationDateTime")
    identity = record.get("userIdentity")
    ttl_expiry = (
        name == "REMOVE"
        and isinstance(identity, Mapping)
        and identity.get("principalId") == _TTL_PRINCIPAL
        and identity.get("type") == "Service"
    )
    return Change(
        table=table,
        keys=dict(keys),
        event_name=name,
        event_id=str(record.get("eventID", "")),
        sequence_number=sequence,
        event_time_us=event_time_us(ddb["ApproximateCreationDateTime"]),
        new_image=dict(new_image) if new_image is not None else None,
        ttl_expiry=ttl_expiry,
    )
