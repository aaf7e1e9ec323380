"""Which items a partial restore covers: --keys FILE and --key-prefix VALUE."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from backup_lambda.ddbjson import AttributeValue, Item, canonical_key_value
from backup_lambda.errors import InvalidValueError, UserInputError
from backup_lambda.layout import key_hash
from compaction.manifest import KeyAttribute
from jobs.cli.args import parse_key


@dataclass(frozen=True)
class KeyFilter:
    """Which items a partial restore covers (both None: the whole table)."""

    key_hashes: frozenset[str] | None = None
    partition: tuple[str, list[str]] | None = None  # (attribute, canonical value)

    def matches(self, digest: str, item: Item) -> bool:
        if self.key_hashes is not None and digest not in self.key_hashes:
            return False
        if self.partition is not None:
            name, value = self.partition
            if name not in item or canonical_key_value(item[name]) != value:
                return False
        return True

    @property
    def partial(self) -> bool:
        return self.key_hashes is not None or self.partition is not None


def partition_filter(schema: tuple[KeyAttribute, ...], value: str) -> tuple[str, list[str]]:
    hash_keys = [k for k in schema if k.key_type == "HASH"]
    if len(hash_keys) != 1:
        raise UserInputError(
            "--key-prefix needs to know the partition key, which the backup does not record"
        )
    attribute = hash_keys[0]
    typed: AttributeValue = {attribute.attribute_type: value}
    try:
        return attribute.name, canonical_key_value(typed, "--key-prefix")
    except InvalidValueError as e:
        raise UserInputError(str(e)) from None


def check_key(keys: Item, schema: tuple[KeyAttribute, ...]) -> None:
    """A key with other attribute names or types than the table's can match no item."""

    def spell(pairs: dict[str, str]) -> str:
        return ", ".join(f"{name} {kind}" for name, kind in sorted(pairs.items()))

    expected = {k.name: k.attribute_type for k in schema}
    actual = {name: next(iter(value)) for name, value in keys.items()}
    if expected and actual != expected:
        raise UserInputError(
            f"key ({spell(actual)}) can match no item: the table's key is ({spell(expected)})"
        )


def _failure_key(line: str) -> str:
    """A line of `restore --failures-out` ({"key": {...}, "action", "reason"}) -> its key;
    any other line as it is. Unambiguous: there "key" holds typed values ({"S": ...}),
    while in a key a value is a string, a number or one typed value."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line
    key = record.get("key") if isinstance(record, dict) else None
    if isinstance(key, dict) and key and all(isinstance(v, dict) for v in key.values()):
        return json.dumps(key)
    return line


def read_key_file(path: str, schema: tuple[KeyAttribute, ...] = ()) -> frozenset[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserInputError(f"--keys {path}: {e.strerror}") from None
    hashes = set()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                keys = parse_key(_failure_key(line))
                check_key(keys, schema)
                hashes.add(key_hash(keys))
            except UserInputError as e:
                raise UserInputError(f"--keys {path} line {number}: {e}") from None
    return frozenset(hashes)
