"""Parsing user-supplied values: times, item keys, and where unit tasks run."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import re
from typing import Any

from backup_lambda.ddbjson import ALL_TAGS, Item, canonical_key_value
from backup_lambda.errors import InvalidValueError, UserInputError
from backup_lambda.layout import format_time_us
from compaction.executor import DaskUnitExecutor
from jobs.cli import config
from jobs.cli.options import add_setting

_EPOCH = re.compile(r"^\d+(\.\d{1,6})?$")
_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The times Python's datetime can show (years 1 to 9999), with a day's margin for offsets.
MIN_TIME_US = -62_135_510_400_000_000  # 0001-01-02T00:00:00Z
MAX_TIME_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
# Epoch seconds with 12 digits or more (year 5138 and later) are refused as seconds: such
# a number is a time in a finer unit (the usual slip: JavaScript's Date.now() milliseconds).
_FINER_UNITS = (
    (10**17, "nanoseconds", 10**9),
    (10**14, "microseconds", 10**6),
    (10**11, "milliseconds", 10**3),
)
_FORMATS = "use ISO-8601 with an offset or Z (2026-11-28T14:00:00Z) or epoch seconds"


def parse_time(text: str, flag: str = "") -> int:
    """ISO-8601 with an offset or 'Z', or epoch seconds -> epoch microseconds. Epoch
    milliseconds (micro-, nanoseconds) are refused, saying so; a time outside years 1 to
    9999 is refused. `flag` names the option in the message."""
    where = f"{flag} " if flag else ""
    value = text.strip()
    if _EPOCH.match(value):
        number = decimal.Decimal(value)
        for bound, unit, per_second in _FINER_UNITS:
            if number >= bound:
                raise UserInputError(_finer_unit(where, text, number, unit, per_second))
        return int(number * 1_000_000)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserInputError(f"{where}bad time {text!r}: {_FORMATS}") from None
    if moment.tzinfo is None:
        raise UserInputError(f"{where}bad time {text!r}: add an offset or Z, e.g. {value}Z")
    delta = moment - _UNIX_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not MIN_TIME_US <= micros <= MAX_TIME_US:
        raise UserInputError(f"{where}bad time {text!r}: out of range (years 1 to 9999)")
    return micros


def _finer_unit(where: str, text: str, number: decimal.Decimal, unit: str, per_second: int) -> str:
    seconds = (number / per_second).quantize(decimal.Decimal("0.000001"), decimal.ROUND_FLOOR)
    micros = int(seconds * 1_000_000)
    if micros > MAX_TIME_US:
        return f"{where}bad time {text!r}: out of range; {_FORMATS}"
    shown = format(seconds.normalize(), "f")
    return (
        f"{where}bad time {text!r}: looks like epoch {unit} ({format_time_us(micros)}); pass "
        f"epoch seconds ({shown}) or ISO-8601"
    )


def parse_key(text: str) -> Item:
    """An item key as DynamoDB JSON ({"pk": {"S": "a"}}) or plain JSON ({"pk": "a", "sk": 5})."""
    try:
        raw = json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)
    except json.JSONDecodeError as e:
        raise UserInputError(f"--key is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(raw, dict) or not raw:
        raise UserInputError('--key must be a JSON object such as {"pk": "a"}')
    keys: Item = {}
    for name, value in raw.items():
        keys[name] = _key_value(name, value)
        try:
            canonical_key_value(keys[name], f"--key {name}")
        except InvalidValueError as e:
            raise UserInputError(str(e)) from None
    return keys


def _key_value(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ALL_TAGS:
        ((tag, inner),) = value.items()
        return {tag: str(inner) if isinstance(inner, decimal.Decimal) else inner}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, decimal.Decimal):
        return {"N": str(value)}
    raise UserInputError(
        f'--key {name}: key values are strings, numbers or typed like {{"B": "<base64>"}}'
    )


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """argparse type: a number > 0 (fractions allowed: 0.5 hours)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def share(text: str) -> float:
    """argparse type: a share between 0 and 1 (0.1 = 10%)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1 (0.1 = 10%), got {text!r}")
    return value


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--shard-digits, --executor, --scheduler, --dask-workers (compact and restore)."""
    add_setting(
        parser,
        config.SHARD_DIGITS,
        "--shard-digits",
        type=int,
        choices=[0, 1, 2, 3],
        help="hex digits per unit: 0 -> 1 unit, 1 -> 16, 2 -> 256, 3 -> 4096",
        none_means="by the table's size",
    )
    parser.add_argument(
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="where shard tasks run: local threads, or dask.distributed (a local cluster, "
        "or the one at --scheduler)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running dask scheduler (default: none; implies --executor dask)",
    )
    parser.add_argument(
        "--dask-workers", type=positive_int, default=2, help="processes of a local dask cluster"
    )


def executor_from(args: argparse.Namespace) -> DaskUnitExecutor | None:
    """The distributed executor the arguments ask for (None: local threads)."""
    if args.executor == "dask" or args.scheduler:
        return DaskUnitExecutor(address=args.scheduler, workers=args.dask_workers)
    return None
