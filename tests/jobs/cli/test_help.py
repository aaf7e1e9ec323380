"""Help shows every default; --version; one meaning per flag name."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from jobs.cli.options import HelpFormatter
from jobs.cli.version import package_version
from jobs.main import build_parser, main

SWITCHES = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._CountAction,
)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_has_help_that_shows_its_default() -> None:
    # GIVEN every command's options WHEN their help is rendered THEN each has text, and each
    # that takes a value says its default (or that it is required)
    missing = []
    for name, parser in subcommands().items():
        formatter = HelpFormatter(prog=name)
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action)
            if not text:
                missing.append(f"{name} {action.option_strings[0]}: no help text")
            elif (
                not isinstance(action, SWITCHES)
                and not action.required
                and "default" not in text.lower()
                and "required" not in text.lower()
            ):
                missing.append(
                    f"{name} {action.option_strings[0]}: no default in {text!r} (say what "
                    "its absence means, e.g. '(default: now)'; see jobs/cli/options.py)"
                )
    assert missing == []


def test_the_formatter_appends_a_known_default() -> None:
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="units at once")
    parser.add_argument("--as-of", help="a time (default: now)")
    text = parser.format_help()
    assert "units at once (default: 4)" in text
    assert "(default: now)" in text
    assert "default: None" not in text


def test_one_meaning_per_flag_name() -> None:
    # GIVEN every command's options WHEN flags of the same name are compared THEN they
    # store into the same place and have the same type (help may say it per command)
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for parser in subcommands().values():
        for action in parser._actions:
            for flag in action.option_strings:
                kind = getattr(action.type, "__name__", str(action.type))
                seen[flag].add((action.dest, kind))
    assert {flag: kinds for flag, kinds in seen.items() if len(kinds) > 1} == {}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"ddb-backup {package_version()}"
    assert package_version()[0].isdigit()
