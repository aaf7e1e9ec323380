"""`ddb-backup snapshots`: the committed snapshots of a table."""

from __future__ import annotations

import argparse
from typing import Any

from backup_lambda.errors import NotFoundError
from backup_lambda.layout import format_time_us
from compaction.catalog import committed_snapshots
from compaction.versions import table_has_backup
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "snapshots",
        parents=[common],
        help="list committed snapshots",
        description="Committed snapshots of the table, oldest first: id, as-of, kind "
        "(full, or a delta and its depth in the chain), items (of the state it stands for), "
        "bytes (of its own files), parent (a delta's).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    s3 = make_client("s3", settings_from(args))
    manifests = committed_snapshots(s3, args.bucket, args.prefix, args.table)
    if not manifests and not table_has_backup(s3, args.bucket, args.prefix, args.table):
        raise NotFoundError(
            f"no backup of table {args.table!r} in s3://{args.bucket}/{args.prefix}"
        )
    rows = [
        {
            "id": m.id,
            "as_of": format_time_us(m.as_of_us),
            "items": m.counts.items,
            "bytes": m.total_bytes,
            "base": m.base,
            "kind": m.kind,
            "parent": m.parent,
            "depth": m.depth,
            "built_at": format_time_us(m.built_at_us),
        }
        for m in manifests
    ]
    if args.json:
        emit_json({"table": args.table, "snapshots": rows})
        return 0
    if not rows:
        print("no committed snapshots yet (run `ddb-backup compact`)")
        return 0
    print(f"{'ID':<25} {'AS OF':<28} {'KIND':<9} {'ITEMS':>10} {'BYTES':>12}  PARENT")
    for row in rows:
        kind = f"delta:{row['depth']}" if row["kind"] == "delta" else row["kind"]
        print(
            f"{row['id']:<25} {row['as_of']:<28} {kind:<9} {row['items']:>10} "
            f"{row['bytes']:>12}  {row['parent'] or '-'}"
        )
    return 0
