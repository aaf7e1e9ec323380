"""The docs and `--help` agree: every command is in the README, and every flag the docs
show on a `ddb-backup <command>` line exists for that command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from jobs.main import build_parser

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `ddb-backup <command>` and what follows on its line, and on continuation lines indented
# under it (README's long examples wrap that way).
COMMAND_LINE = re.compile(r"ddb-backup\s+([a-z][a-z-]*)((?:[^\n`]|\n {10,})*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def commands() -> dict[str, set[str]]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: {flag for action in command._actions for flag in action.option_strings}
        for name, command in sub.choices.items()
    }


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [
        name for name in commands() if not re.search(rf"ddb-backup\s+{re.escape(name)}\b", readme)
    ]
    assert missing == []


def test_every_flag_the_docs_show_exists() -> None:
    known = commands()
    unknown = []
    shown = 0
    for doc in DOCS:
        for match in COMMAND_LINE.finditer(doc.read_text(encoding="utf-8")):
            command, rest = match.groups()
            if command not in known:
                continue
            for flag in FLAG.findall(rest):
                shown += 1
                if flag not in known[command]:
                    unknown.append(f"{doc.name}: ddb-backup {command} {flag}")
    assert unknown == []
    assert shown > 50  # the pattern does find the docs' examples


def test_a_made_up_flag_would_be_caught() -> None:
    match = COMMAND_LINE.search(
        "ddb-backup status --bucket B\n                     [--made-up]\nprose --other"
    )
    assert match is not None
    assert FLAG.findall(match.group(2)) == ["--bucket", "--made-up"]
