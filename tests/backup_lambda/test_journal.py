"""The journal layout: keys that sort by time, StartAfter bounds, gzip JSON lines bodies."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_lambda.errors import CorruptVersionError
from backup_lambda.journal import (
    decode_journal,
    encode_journal,
    journal_key,
    journal_prefix,
    key_time_us,
    parse_stamp,
    stamp,
    start_after,
)
from backup_lambda.layout import Change

SEC = 1_000_000
T0 = 1_795_876_676 * SEC + 123_456  # 2026-11-28T14:37:56.123456Z
TIMES = st.integers(0, 253_402_300_799 * SEC)


def change(seq: int, name: str = "MODIFY") -> Change:
    keys = {"pk": {"S": f"k{seq}"}}
    return Change(
        table="orders",
        keys=keys,
        event_name=name,  # type: ignore[arg-type]
        event_id=f"e{seq}",
        sequence_number=str(seq),
        event_time_us=T0 + seq,
        new_image=None if name == "REMOVE" else {**keys, "n": {"N": "1.50"}},
    )


def test_key_layout() -> None:
    key = journal_key("backups", "orders", T0, "abc")
    assert key == ("backups/orders/v1/journal/2026/11/28/14/20261128T143756.123456Z-abc.jsonl.gz")
    assert key.startswith(journal_prefix("backups", "orders"))
    assert key_time_us(key) == T0
    assert stamp(T0) == "20261128T143756.123456Z"
    assert parse_stamp(stamp(T0)) == T0


@given(TIMES, TIMES)
def test_keys_sort_by_time(a: int, b: int) -> None:
    ka, kb = journal_key("", "t", a, "u"), journal_key("", "t", b, "u")
    assert (ka < kb) == (a < b)
    assert key_time_us(ka) == a


@given(TIMES, TIMES)
def test_start_after_lists_exactly_the_keys_from_its_time(bound: int, written: int) -> None:
    key = journal_key("", "t", written, "0000")
    assert (key > start_after("", "t", bound)) == (written >= bound)


@pytest.mark.parametrize(
    "name", ["manifest.json", "20261128T143756.123456Z-x.json", "2026-11-28.jsonl.gz"]
)
def test_other_names_have_no_key_time(name: str) -> None:
    assert key_time_us(f"orders/v1/journal/2026/11/28/14/{name}") is None


def test_round_trip_keeps_order_and_every_field() -> None:
    changes = [change(3), change(1, "REMOVE"), change(2), change(3)]  # a replay too
    body = encode_journal(changes)
    assert gzip.decompress(body).count(b"\n") == 4
    assert decode_journal(body, "j") == changes


def test_a_body_that_is_not_gzip_is_corrupt() -> None:
    with pytest.raises(CorruptVersionError, match="s3://b/j: not a gzip journal object"):
        decode_journal(b'{"layout": 1}', "s3://b/j")


def test_a_bad_line_names_the_object_and_the_line() -> None:
    good = gzip.decompress(encode_journal([change(1)]))
    body = gzip.compress(good + b"not json\n")
    with pytest.raises(CorruptVersionError, match="s3://b/j line 2"):
        decode_journal(body, "s3://b/j")
