"""Property tests of the key encoding: canonical, injective, short enough, sharded by hash."""

from __future__ import annotations

import base64
import decimal
import hashlib
import json
import string
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from backup_lambda.ddbjson import Item
from backup_lambda.errors import InvalidValueError
from backup_lambda.layout import (
    MAX_PREFIX_BYTES,
    all_shards,
    canonical_key_bytes,
    key_hash,
    object_key,
)

S3_KEY_LIMIT = 1024
TABLE = "orders"

# Any Unicode text DynamoDB accepts (no lone surrogates), with path-like pieces mixed in.
UNICODE = st.characters(exclude_categories=("Cs",))
TRICKY = st.sampled_from(["/", "..", "../..", "./", "//", "a/../b", "%2F", "\\", "\x00", " "])
TEXT = st.one_of(
    st.text(UNICODE, min_size=1, max_size=24),
    st.lists(st.one_of(TRICKY, st.text(UNICODE, min_size=1, max_size=4)), min_size=1).map("".join),
)
NAMES = st.one_of(st.sampled_from(["pk", "sk", "id", "PK", "a.b", "a/b"]), TEXT)


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """A DynamoDB number: up to 38 significant digits, magnitude 1E-130 .. 9.9..E+125."""
    if draw(st.integers(0, 20)) == 0:
        return "0"
    # Long numbers on purpose: collisions hide in the digits past a 28-digit context.
    length = draw(st.one_of(st.integers(1, 38), st.integers(28, 38)))
    digits = draw(st.sampled_from("123456789")) + draw(
        st.text("0123456789", min_size=length - 1, max_size=length - 1)
    )
    adjusted = draw(st.integers(-130, 125))
    sign = draw(st.sampled_from(["", "-"]))
    return f"{sign}{digits}E{adjusted - (len(digits) - 1)}"


@st.composite
def respelled(draw: st.DrawFn, text: str) -> str:
    """Another spelling of the same numeric value."""
    value = decimal.Decimal(text)
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    zeros = draw(st.integers(0, 5))
    digits, exponent = digits + "0" * zeros, exponent - zeros
    minus = "-" if sign else draw(st.sampled_from(["", "+"]))
    style = draw(st.sampled_from(["E", "e", "e+", "plain", "leading zeros"]))
    if style == "plain" and abs(exponent) < 200:
        return minus + format(decimal.Decimal(f"{digits}E{exponent}"), "f")
    if style == "leading zeros":
        return f"{minus}00{digits}E{exponent}"
    if style == "e+" and exponent >= 0:
        return f"{minus}{digits}e+{exponent}"
    return f"{minus}{digits}{style[0]}{exponent}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


KEY_VALUES = st.one_of(
    TEXT.map(lambda s: {"S": s}),
    numbers().map(lambda n: {"N": n}),
    st.binary(min_size=1, max_size=40).map(lambda b: {"B": b64(b)}),
    st.sampled_from([b"\x00", b"\xff", b"\x00\xff", b"/", b".."]).map(lambda b: {"B": b64(b)}),
)
KEYS = st.dictionaries(NAMES, KEY_VALUES, min_size=1, max_size=2)


def meaning(keys: Item) -> dict[str, tuple[str, Any]]:
    """What makes two item keys the same item: names, types and values (numbers by value)."""
    out: dict[str, tuple[str, Any]] = {}
    for name, value in keys.items():
        ((tag, inner),) = value.items()
        if tag == "N":
            out[name] = (tag, decimal.Decimal(inner))
        elif tag == "B":
            out[name] = (tag, base64.b64decode(inner))
        else:
            out[name] = (tag, inner)
    return out


@st.composite
def same_key_differently_written(draw: st.DrawFn) -> tuple[Item, Item]:
    """A key and the same key as another stream record could spell it."""
    keys = draw(KEYS)
    order = draw(st.permutations(list(keys)))
    other: Item = {}
    for name in order:
        ((tag, inner),) = keys[name].items()
        other[name] = {tag: draw(respelled(inner)) if tag == "N" else inner}
    text = json.dumps(
        other,
        indent=draw(st.sampled_from([None, 0, 2])),
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([None, (",", ":")])),
    )
    return keys, json.loads(text)


@st.composite
def near_pairs(draw: st.DrawFn) -> tuple[Item, Item]:
    """Two keys that differ in one small way (or, sometimes, not at all)."""
    keys = draw(KEYS)
    name = draw(st.sampled_from(list(keys)))
    ((tag, inner),) = keys[name].items()
    mutation = draw(
        st.sampled_from(
            ["retag", "last digit", "append", "rename", "add attr", "flip byte", "none"]
        )
    )
    other = dict(keys)
    if mutation == "retag":
        other[name] = {"S" if tag != "S" else draw(st.sampled_from(["N", "B"])): inner}
    elif mutation == "last digit" and tag == "N" and inner != "0":
        mantissa, _, exponent = inner.partition("E")
        last = str((int(mantissa[-1]) + draw(st.integers(1, 9))) % 10)
        other[name] = {"N": f"{mantissa[:-1]}{last}E{exponent}"}
    elif mutation == "append" and tag == "S":
        other[name] = {"S": inner + draw(st.sampled_from(["/", ".", "\x00", "é", " "]))}
    elif mutation == "rename":
        other = {(n + "_" if n == name else n): v for n, v in keys.items()}
    elif mutation == "add attr":
        other[name + "~"] = keys[name]
    elif mutation == "flip byte" and tag == "B":
        data = bytearray(base64.b64decode(inner))
        data[-1] ^= draw(st.integers(1, 255))
        other[name] = {"B": b64(bytes(data))}
    return keys, other


def valid_key(keys: Item) -> bool:
    try:
        canonical_key_bytes(keys)
    except InvalidValueError:
        return False
    return True


@given(same_key_differently_written())
def test_same_key_in_any_attribute_order_and_spelling_gives_the_same_object(
    pair: tuple[Item, Item],
) -> None:
    keys, other = pair
    assert canonical_key_bytes(other) == canonical_key_bytes(keys)
    assert object_key("backups", TABLE, other) == object_key("backups", TABLE, keys)


def test_number_spellings_of_one_value_share_an_object() -> None:
    spellings = ["1", "1.0", "10E-1", "0.1e1", "1.00000000000000000000000000000000000000000"]
    assert len({object_key("", TABLE, {"pk": {"N": s}}) for s in spellings}) == 1
    assert object_key("", TABLE, {"pk": {"N": "1"}}) != object_key("", TABLE, {"pk": {"N": "2"}})


def test_38_digit_numbers_differing_in_the_last_digit_do_not_collide() -> None:
    first = {"pk": {"N": "12345678901234567890123456789012345678"}}
    second = {"pk": {"N": "12345678901234567890123456789012345679"}}
    assert object_key("", TABLE, first) != object_key("", TABLE, second)


def test_type_is_part_of_the_key() -> None:
    as_string = object_key("", TABLE, {"pk": {"S": "AA=="}})
    as_binary = object_key("", TABLE, {"pk": {"B": "AA=="}})
    as_number = object_key("", TABLE, {"pk": {"S": "1"}})
    assert len({as_string, as_binary, as_number, object_key("", TABLE, {"pk": {"N": "1"}})}) == 4


def test_unicode_forms_are_distinct_keys() -> None:
    composed = {"pk": {"S": "\u00e9"}}
    decomposed = {"pk": {"S": "e\u0301"}}
    assert object_key("", TABLE, composed) != object_key("", TABLE, decomposed)


@given(st.one_of(st.tuples(KEYS, KEYS), near_pairs()))
def test_distinct_keys_never_collide(pair: tuple[Item, Item]) -> None:
    first, second = pair
    assume(valid_key(first) and valid_key(second))
    same_item = meaning(first) == meaning(second)
    event("same item" if same_item else "distinct items")
    assert (canonical_key_bytes(first) == canonical_key_bytes(second)) is same_item
    assert (object_key("p", TABLE, first) == object_key("p", TABLE, second)) is same_item


@given(numbers(), st.data())
def test_distinct_numbers_never_collide(number: str, data: st.DataObject) -> None:
    mantissa, _, exponent = number.partition("E")
    nudged = str((int(mantissa[-1]) + data.draw(st.integers(1, 9))) % 10)
    other = data.draw(
        st.one_of(
            numbers(),
            respelled(number),
            st.just(f"{mantissa[:-1]}{nudged}E{exponent or 0}"),
        )
    )
    same_value = decimal.Decimal(number) == decimal.Decimal(other)
    first, second = {"pk": {"N": number}}, {"pk": {"N": other}}
    assert (object_key("", TABLE, first) == object_key("", TABLE, second)) is same_value


def exact_utf8(draw: st.DrawFn, alphabet: st.SearchStrategy[str], size: int) -> str:
    """A string of exactly `size` UTF-8 bytes, mostly drawn from `alphabet`."""
    pieces = draw(st.lists(alphabet, max_size=64))
    text = ""
    for piece in pieces:
        if len((text + piece).encode("utf-8")) > size:
            break
        text += piece
    return text + "a" * (size - len(text.encode("utf-8")))


WIDE_CHARS = st.one_of(
    st.sampled_from(["é", "€", "😀", "/", "..", "\x00", "💾" * 8, "/" * 20]),
    st.text(UNICODE, min_size=1, max_size=8),
)


@st.composite
def largest_keys(draw: st.DrawFn) -> Item:
    """A 2,048-byte partition key and a 1,024-byte sort key, string or binary."""

    def value(size: int) -> dict[str, str]:
        if draw(st.booleans()):
            return {"B": b64(draw(st.binary(min_size=size, max_size=size)))}
        return {"S": exact_utf8(draw, WIDE_CHARS, size)}

    return {"pk": value(2048), "sk": value(1024)}


@st.composite
def longest_prefixes(draw: st.DrawFn) -> str:
    """A folder of exactly MAX_PREFIX_BYTES bytes, not starting or ending with '/'."""
    middle = exact_utf8(draw, WIDE_CHARS, MAX_PREFIX_BYTES - 2)
    return f"p{middle}p"


TABLE_NAMES = st.text(string.ascii_letters + string.digits + "_.-", min_size=3, max_size=255)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(largest_keys(), longest_prefixes(), st.text("abcXYZ019_.-", min_size=255, max_size=255))
def test_object_key_fits_s3_limit_for_the_largest_keys(keys: Item, prefix: str, table: str) -> None:
    key = object_key(prefix, table, keys)
    assert len(key.encode("utf-8")) <= S3_KEY_LIMIT
    # The item's part of the key is plain ASCII whatever the key holds.
    assert key.startswith(f"{prefix}/{table}/v1/items/")
    assert key[len(prefix) + len(table) + 2 :].isascii()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(KEYS, st.lists(WIDE_CHARS, max_size=200).map("".join), TABLE_NAMES)
def test_object_key_fits_for_any_prefix_within_the_limit(
    keys: Item, prefix: str, table: str
) -> None:
    assume(len(prefix.strip("/").encode("utf-8")) <= MAX_PREFIX_BYTES)
    assert len(object_key(prefix, table, keys).encode("utf-8")) <= S3_KEY_LIMIT


@given(st.one_of(KEYS, largest_keys()))
def test_shard_component_is_the_first_two_hex_digits_of_the_hash(keys: Item) -> None:
    digest = hashlib.sha256(canonical_key_bytes(keys)).hexdigest()
    key = object_key("", TABLE, keys)
    *_, shard, name = key.split("/")
    assert key_hash(keys) == digest
    assert shard == digest[:2]
    assert shard in all_shards()
    assert name == f"{digest}.json"
