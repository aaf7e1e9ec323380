"""`ddb-backup tables`: the tables a bucket holds backups of, and their prefixes."""

from __future__ import annotations

import argparse
from typing import Any

from compaction.discovery import find_tables
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json, note, print_table


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "tables",
        parents=[common],
        help="list the tables backed up in the bucket, and their prefixes",
        description="Finds every table with a backup under --prefix (and in folders below "
        "it, so every prefix of the bucket from the root) from the layout alone: one "
        "delimiter LIST per folder, never a listing of the objects. Shows each table's "
        "prefix and what its folder holds (items: the Lambda's item objects, journal, "
        "snapshots, drills, backfills, imports).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    s3 = make_client("s3", settings_from(args))
    tables = find_tables(s3, args.bucket, args.prefix)
    rows = [{"prefix": t.prefix, "table": t.table, "holds": list(t.holds)} for t in tables]
    if args.json:
        emit_json({"bucket": args.bucket, "prefix": args.prefix, "tables": rows})
        return 0
    where = f"s3://{args.bucket}/{args.prefix}"
    if not rows:
        note(args, f"no backed-up tables under {where}")
        return 0
    print_table(
        ["PREFIX", "TABLE", "HOLDS"],
        [[r["prefix"] or "-", r["table"], ",".join(r["holds"])] for r in rows],
    )
    return 0
