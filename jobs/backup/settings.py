"""`ddb-backup settings`: a table's recorded settings at a time, and what changed between two."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from backup_lambda.errors import NotFoundError, UserInputError
from backup_lambda.layout import format_time_us
from compaction.settingsdiff import diff_settings
from compaction.settingsstore import settings_at
from compaction.tablesettings import PARTS, TableSettings
from jobs.cli.args import parse_time
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "settings",
        parents=[common],
        help="the table's recorded settings at a time, or what changed between two times",
        description="Every compaction records the source table's settings (keys, billing "
        "and capacity, indexes, stream, encryption, table class, deletion protection, TTL, "
        "PITR, tags, resource policy, Kinesis destinations, auto scaling). This prints them "
        "as of TIME (default: the newest), part by part with when each was captured; with "
        "--diff TIME2, only what changed between the two times. --json prints the settings "
        "document (edit it and pass it to `restore --settings-from`).",
    )
    parser.add_argument("--as-of", help="point in time (default: now, the newest settings)")
    parser.add_argument(
        "--diff",
        metavar="TIME2",
        help="show what changed between --as-of and TIME2 (default: no comparison)",
    )
    parser.set_defaults(run=run)


def _at(args: argparse.Namespace, s3: Any, at_us: int) -> TableSettings:
    found = settings_at(s3, args.bucket, args.prefix, args.table, at_us)
    if found is None:
        raise NotFoundError(
            f"no table settings recorded for {args.table!r} in s3://{args.bucket}/{args.prefix} "
            "(snapshots made by this release record them: run `ddb-backup compact`)"
        )
    return found


def run(args: argparse.Namespace) -> int:
    now_us = int(time.time() * 1_000_000)
    first = parse_time(args.as_of, "--as-of") if args.as_of else now_us
    second = parse_time(args.diff, "--diff") if args.diff is not None else None
    if first > now_us:
        raise UserInputError(f"--as-of {format_time_us(first)} is in the future")
    s3 = make_client("s3", settings_from(args))
    if second is None:
        settings = _at(args, s3, first)
        if args.json:
            emit_json(json.loads(settings.to_json()))
        else:
            _print(settings, first)
        return 0
    older_us, newer_us = sorted((first, second))
    older, newer = _at(args, s3, older_us), _at(args, s3, newer_us)
    differences = diff_settings(older, newer)
    if args.json:
        emit_json(
            {
                "table": args.table,
                "from": format_time_us(older_us),
                "to": format_time_us(newer_us),
                "differences": differences,
            }
        )
        return 0
    print(f"settings of {args.table}: {format_time_us(older_us)} -> {format_time_us(newer_us)}")
    for line in differences or ["(no differences)"]:
        print(line)
    return 0


def _print(settings: TableSettings, at_us: int) -> None:
    print(f"settings of {settings.table} as of {format_time_us(at_us)}")
    for name in PARTS:
        part = settings.part(name)
        where = []
        if part.captured_at_us is not None:
            where.append(f"captured {format_time_us(part.captured_at_us)}")
        if part.source:
            where.append(f"by {part.source}")
        suffix = f" ({', '.join(where)})" if where else ""
        if not part.captured:
            print(f"{name}: not captured: {part.not_captured}{suffix}")
            continue
        print(f"{name}{suffix}:")
        for line in json.dumps(part.value, indent=2, sort_keys=True).splitlines():
            print(f"  {line}")
