"""The object layout (docs/FORMAT.md): where a change is stored and what its body holds.

Layout version 1:
    <prefix>/<table>/v1/items/<shard>/<hash>.json
where <hash> is the SHA-256 (hex) of the item key's canonical form and <shard> its first
two hex digits. Every change of the item is a new S3 version of that object; the body is
a self-describing JSON change document (also for removals).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from backup_lambda.ddbjson import Item, canonical_key_value, validate_item
from backup_lambda.errors import CorruptVersionError, InvalidValueError

LAYOUT_VERSION = 1
LAYOUT_DIR = f"v{LAYOUT_VERSION}"
SHARD_HEX_DIGITS = 2
SHARD_COUNT = 16**SHARD_HEX_DIGITS
EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
# Beyond this a user prefix could push the longest object key past S3's 1,024 bytes:
# table names are at most 255 bytes and the rest of the key has a fixed length.
MAX_PREFIX_BYTES = 1024 - 255 - len("/v1/items/00/") - 64 - len(".json") - 2

# format_time_us needs a datetime, which ends with the year 9999.
MAX_EVENT_SECONDS = 253_402_300_799

EventName = Literal["INSERT", "MODIFY", "REMOVE"]


@dataclass(frozen=True)
class Change:
    """One item change as captured from the stream; the unit of the backup."""

    table: str
    keys: Item
    event_name: EventName
    event_id: str
    sequence_number: str
    event_time_us: int
    new_image: Item | None
    ttl_expiry: bool = False

    @property
    def order(self) -> tuple[int, int]:
        """Total order of changes of one item: (event time, sequence number as integer)."""
        return (self.event_time_us, int(self.sequence_number))

    @property
    def is_removal(self) -> bool:
        return self.event_name == "REMOVE"


def normalize_prefix(prefix: str) -> str:
    """'a/b/', '/a/b' and 'a/b' all name the folder 'a/b'; '' is the bucket root."""
    cleaned = prefix.strip("/")
    if len(cleaned.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise InvalidValueError(f"prefix is longer than {MAX_PREFIX_BYTES} bytes")
    return cleaned


def table_root(prefix: str, table: str) -> str:
    """The folder holding everything of one table: '<prefix>/<table>/'."""
    folder = normalize_prefix(prefix)
    return f"{folder}/{table}/" if folder else f"{table}/"


def items_prefix(prefix: str, table: str) -> str:
    return f"{table_root(prefix, table)}{LAYOUT_DIR}/items/"


def shard_prefix(prefix: str, table: str, shard: str) -> str:
    return f"{items_prefix(prefix, table)}{shard}/"


def all_shards() -> list[str]:
    return [f"{i:0{SHARD_HEX_DIGITS}x}" for i in range(SHARD_COUNT)]


def canonical_key_bytes(keys: Item) -> bytes:
    """The canonical form of an item key: independent of attribute order, JSON spelling,
    number spelling ('1.0' == '1') and base64 line-wrapping; injective otherwise."""
    if not keys:
        raise InvalidValueError("item key has no attributes")
    canon = {name: canonical_key_value(value, f"key.{name}") for name, value in keys.items()}
    return json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def key_hash(keys: Item) -> str:
    return hashlib.sha256(canonical_key_bytes(keys)).hexdigest()


def object_key(prefix: str, table: str, keys: Item) -> str:
    digest = key_hash(keys)
    return f"{shard_prefix(prefix, table, digest[:SHARD_HEX_DIGITS])}{digest}.json"


def event_time_us(approximate_creation: object) -> int:
    """Stream `ApproximateCreationDateTime` (epoch seconds, int or float) in microseconds."""
    if isinstance(approximate_creation, bool) or not isinstance(
        approximate_creation, int | float | str | decimal.Decimal
    ):
        raise InvalidValueError(
            f"ApproximateCreationDateTime {approximate_creation!r} is not a number"
        )
    try:
        seconds = decimal.Decimal(str(approximate_creation))
    except decimal.InvalidOperation:
        raise InvalidValueError(
            f"ApproximateCreationDateTime {approximate_creation!r} is not a number"
        ) from None
    if not seconds.is_finite() or not 0 <= seconds <= MAX_EVENT_SECONDS:
        raise InvalidValueError(
            f"ApproximateCreationDateTime {approximate_creation!r} is out of range"
        )
    return int((seconds * 1_000_000).to_integral_value(decimal.ROUND_HALF_EVEN))


def format_time_us(micros: int) -> str:
    """ISO-8601 UTC with 'Z'; microseconds only when present."""
    moment = dt.datetime.fromtimestamp(micros // 1_000_000, dt.UTC).replace(
        microsecond=micros % 1_000_000
    )
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def encode_change(change: Change) -> bytes:
    document: dict[str, Any] = {
        "layout": LAYOUT_VERSION,
        "table": change.table,
        "eventName": change.event_name,
        "eventID": change.event_id,
        "sequenceNumber": change.sequence_number,
        "eventTime": format_time_us(change.event_time_us),
        "eventTimeMicros": change.event_time_us,
        "ttlExpiry": change.ttl_expiry,
        "keys": change.keys,
        "newImage": change.new_image,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_change(body: bytes, where: str) -> Change:
    """Parse a stored change document; `where` (S3 key and version) names it in errors."""
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise CorruptVersionError(f"{where}: not a JSON object")
        if doc.get("layout") != LAYOUT_VERSION:
            raise CorruptVersionError(f"{where}: unknown layout version {doc.get('layout')!r}")
        event_name = doc["eventName"]
        if event_name not in EVENT_NAMES:
            raise CorruptVersionError(f"{where}: unknown event name {event_name!r}")
        sequence = str(doc["sequenceNumber"])
        if not (sequence.isascii() and sequence.isdigit()):
            raise CorruptVersionError(f"{where}: sequence number {sequence!r} is not an integer")
        micros = doc["eventTimeMicros"]
        if not isinstance(micros, int) or isinstance(micros, bool):
            raise CorruptVersionError(f"{where}: eventTimeMicros is not an integer")
        keys = doc["keys"]
        validate_item(keys, "keys")
        new_image = doc["newImage"]
        if event_name == "REMOVE":
            new_image = None
        else:
            validate_item(new_image, "newImage")
        return Change(
            table=str(doc["table"]),
            keys=keys,
            event_name=event_name,
            event_id=str(doc.get("eventID", "")),
            sequence_number=sequence,
            event_time_us=micros,
            new_image=new_image,
            ttl_expiry=bool(doc.get("ttlExpiry", False)),
        )
    except CorruptVersionError:
        raise
    except (ValueError, KeyError, TypeError, InvalidValueError) as e:
        raise CorruptVersionError(f"{where}: not a valid change document ({e})") from e
