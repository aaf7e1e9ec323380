"""Parsing user input: --as-of times and --key item keys."""

from __future__ import annotations

import pytest

from backup_lambda.errors import UserInputError
from backup_lambda.layout import object_key
from jobs.cli.args import parse_key, parse_time

T_14H = 1_795_874_400_000_000  # 2026-11-28T14:00:00Z in epoch microseconds


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2026-11-28T14:00:00Z", T_14H),
        ("2026-11-28T14:00:00+00:00", T_14H),
        ("2026-11-28T16:00:00+02:00", T_14H),
        ("2026-11-28T09:30:00-04:30", T_14H),
        ("2026-11-28T14:00:00.250Z", T_14H + 250_000),
        ("2026-11-28T14:00:00.000001Z", T_14H + 1),
        ("1795874400", T_14H),
        ("1795874400.5", T_14H + 500_000),
        ("1795874400.000001", T_14H + 1),
        (" 1795874400 ", T_14H),
        ("0", 0),
        ("1969-12-31T23:59:59Z", -1_000_000),
    ],
)
def test_parse_time(text: str, micros: int) -> None:
    assert parse_time(text) == micros


@pytest.mark.parametrize("text", ["2026-11-28T14:00:00", "2026-11-28", "2026-11-28 14:00"])
def test_naive_times_are_rejected_with_a_hint(text: str) -> None:
    with pytest.raises(UserInputError, match="offset or Z"):
        parse_time(text)


@pytest.mark.parametrize(
    "text",
    ["", "now", "yesterday", "14:00", "2026-13-01T00:00:00Z", "1795874400.1234567", "-5", "1e9"],
)
def test_garbage_times_are_rejected(text: str) -> None:
    with pytest.raises(UserInputError, match="bad time"):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ('{"pk": "a"}', {"pk": {"S": "a"}}),
        ('{"pk": "a", "sk": 5}', {"pk": {"S": "a"}, "sk": {"N": "5"}}),
        ('{"sk": -1.5e-3}', {"sk": {"N": "-0.0015"}}),
        (
            '{"sk": 12345678901234567890123456789012345678}',
            {"sk": {"N": "12345678901234567890123456789012345678"}},
        ),
        ('{"pk": {"S": "a"}, "sk": {"N": "5"}}', {"pk": {"S": "a"}, "sk": {"N": "5"}}),
        ('{"sk": {"N": 5}}', {"sk": {"N": "5"}}),
        ('{"pk": {"B": "AP8="}}', {"pk": {"B": "AP8="}}),
        ('{"pk": "../ünï/😀"}', {"pk": {"S": "../ünï/😀"}}),
        ('{"pk": "\\u00e9"}', {"pk": {"S": "é"}}),
    ],
)
def test_parse_key(text: str, keys: dict[str, object]) -> None:
    assert parse_key(text) == keys


def test_plain_and_dynamodb_json_keys_name_the_same_object() -> None:
    plain = parse_key('{"customer": "alice", "order_id": 1.0}')
    typed = parse_key('{"order_id": {"N": "1"}, "customer": {"S": "alice"}}')
    assert object_key("", "orders", plain) == object_key("", "orders", typed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{pk: a}", "not valid JSON"),
        ('{"pk": "a"', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"a"', "JSON object"),
        ("{}", "JSON object"),
        ('{"pk": true}', "pk"),
        ('{"pk": null}', "pk"),
        ('{"pk": ["a"]}', "pk"),
        ('{"pk": {"BOOL": true}}', "S, N or B"),
        ('{"pk": {"SS": ["a"]}}', "S, N or B"),
        ('{"pk": {"B": "not base64!"}}', "base64"),
        ('{"pk": {"N": "abc"}}', "not a number"),
        ('{"pk": 1e400}', "range"),
        ('{"pk": "\\ud800"}', "surrogate"),
    ],
)
def test_bad_keys_are_user_errors(text: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        parse_key(text)


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("1796404591000", "milliseconds", "1796404591"),
        ("1796404591123", "milliseconds", "1796404591.123"),
        ("100000000000", "milliseconds", "100000000"),
        ("1796404591000123", "microseconds", "1796404591.000123"),
        ("1796404591000123456", "nanoseconds", "1796404591.000123"),
    ],
)
def test_epoch_in_a_finer_unit_is_refused_naming_it(text: str, unit: str, seconds: str) -> None:
    with pytest.raises(UserInputError, match=f"looks like epoch {unit}") as refused:
        parse_time(text, "--as-of")
    assert f"pass epoch seconds ({seconds})" in str(refused.value)
    assert str(refused.value).startswith("--as-of bad time")


def test_the_largest_epoch_seconds_accepted_have_eleven_digits() -> None:
    assert parse_time("99999999999") == 99_999_999_999_000_000  # year 5138


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999999", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"],
)
def test_out_of_range_times_are_refused(text: str) -> None:
    with pytest.raises(UserInputError, match="out of range"):
        parse_time(text)
