"""Issue 17: a time in milliseconds (or micro-, nanoseconds) is refused saying so, and an
out-of-range time is one line with exit 2, in every command that takes a time."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.main import main
from tests.support import BUCKET

KEY = '{"pk": "a"}'
# (command, the flag that takes the time, arguments before it)
COMMANDS = [
    ("query", "--as-of", ["SELECT 1"]),
    ("compact", "--as-of", []),
    ("restore", "--as-of", ["--to", "orders-copy"]),
    ("history", "--as-of", ["--key", KEY]),
    ("history", "--from", ["--key", KEY]),
    ("history", "--to", ["--key", KEY, "--from", "0"]),
    ("settings", "--as-of", []),
    ("settings", "--diff", []),
    ("changes", "--from", []),
    ("changes", "--to", ["--from", "0"]),
]
TIMES = [
    ("1796404591000", "looks like epoch milliseconds (2026-12-04T17:16:31Z)"),
    ("1796404591000000", "looks like epoch microseconds"),
    ("1796404591000000000", "looks like epoch nanoseconds"),
    ("99999999999999999999999", "out of range"),
    ("9999-12-31T23:59:59-05:00", "out of range"),
]


@pytest.mark.parametrize(("command", "flag", "before"), COMMANDS)
@pytest.mark.parametrize(("time", "text"), TIMES)
def test_a_bad_time_is_one_line_and_exit_2(
    s3: Any,
    capsys: pytest.CaptureFixture[str],
    command: str,
    flag: str,
    before: list[str],
    time: str,
    text: str,
) -> None:
    # GIVEN a time in the wrong unit or out of range WHEN any command takes it
    capsys.readouterr()
    code = main([command, "--bucket", BUCKET, "--table", "orders", *before, flag, time])
    out, err = capsys.readouterr()
    # THEN one line names the option and says what is wrong, exit 2, no traceback
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"ddb-backup: error: {flag} bad time")
    assert text in err
    assert "Traceback" not in out + err
