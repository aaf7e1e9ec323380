"""Items between our raw DynamoDB JSON (binary as base64) and boto3's low-level client
(binary as bytes), and a checksum of an item that ignores set order and number spelling."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from backup_lambda.ddbjson import AttributeValue, Item, canonical_number


def to_client_value(value: AttributeValue) -> dict[str, Any]:
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(inner)}
    if tag == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    if tag == "M":
        return {"M": to_client_item(inner)}
    if tag == "L":
        return {"L": [to_client_value(v) for v in inner]}
    return {tag: inner}


def to_client_item(item: Item) -> dict[str, Any]:
    """Our stored form -> what boto3's low-level client sends (bytes for B and BS)."""
    return {name: to_client_value(value) for name, value in item.items()}


def from_client_value(value: dict[str, Any]) -> AttributeValue:
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(inner)).decode("ascii")}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(v)).decode("ascii") for v in inner]}
    if tag == "M":
        return {"M": from_client_item(inner)}
    if tag == "L":
        return {"L": [from_client_value(v) for v in inner]}
    if tag in {"SS", "NS"}:
        return {tag: list(inner)}
    return {tag: inner}


def from_client_item(item: dict[str, Any]) -> Item:
    """What boto3's low-level client returns -> our stored form."""
    return {name: from_client_value(value) for name, value in item.items()}


def _canonical(value: AttributeValue) -> Any:
    ((tag, inner),) = value.items()
    if tag == "N":
        return ["N", canonical_number(inner)]
    if tag == "NS":
        return ["NS", sorted(canonical_number(v) for v in inner)]
    if tag == "B":
        return ["B", base64.b64encode(base64.b64decode(inner)).decode("ascii")]
    if tag == "BS":
        return ["BS", sorted(base64.b64encode(base64.b64decode(v)).decode("ascii") for v in inner)]
    if tag == "SS":
        return ["SS", sorted(inner)]
    if tag == "M":
        return ["M", {k: _canonical(v) for k, v in inner.items()}]
    if tag == "L":
        return ["L", [_canonical(v) for v in inner]]
    return [tag, inner]


def item_digest(item: Item) -> str:
    """Equal for items DynamoDB considers equal (set order and number spelling aside)."""
    canon = {name: _canonical(value) for name, value in item.items()}
    text = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_size(item: Item) -> int:
    """An upper-bound estimate of DynamoDB's item size in bytes (for WCU and request caps)."""
    return len(json.dumps(item, ensure_ascii=False).encode("utf-8"))
