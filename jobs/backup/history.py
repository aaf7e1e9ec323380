"""`ddb-backup history`: every version of one item."""

from __future__ import annotations

import argparse
import json
from typing import Any

from backup_lambda.layout import format_time_us, object_key
from compaction.history import HistoryEntry, item_history
from jobs.cli.args import parse_key, parse_time
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "history",
        parents=[common],
        help="every version of one item",
        description="Every stored change of one item, oldest first, by event time.",
    )
    parser.add_argument(
        "--key",
        required=True,
        help='the item key: {"pk": "a", "sk": 5} or DynamoDB JSON {"pk": {"S": "a"}}',
    )
    parser.add_argument(
        "--as-of", help="only changes with event time at or before TIME (default: every change)"
    )
    parser.set_defaults(run=run)


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    change = entry.change
    return {
        "eventTime": format_time_us(change.event_time_us),
        "eventName": change.event_name,
        "ttlExpiry": change.ttl_expiry,
        "sequenceNumber": change.sequence_number,
        "eventID": change.event_id,
        "versionId": entry.version_id,
        "writtenAt": entry.written_at.isoformat(),
        "copies": entry.copies,
        "image": change.new_image,
    }


def run(args: argparse.Namespace) -> int:
    keys = parse_key(args.key)
    as_of = parse_time(args.as_of) if args.as_of else None
    s3 = make_client("s3", settings_from(args))
    entries = item_history(s3, args.bucket, args.prefix, args.table, keys, as_of)
    rows = [entry_json(e) for e in entries]
    if args.json:
        emit_json(
            {
                "table": args.table,
                "key": keys,
                "object": object_key(args.prefix, args.table, keys),
                "versions": rows,
            }
        )
        return 0
    if not rows:
        print("no stored changes for this key")
        return 0
    print(f"{'EVENT TIME':<27} {'EVENT':<12} {'SEQUENCE':<24} IMAGE")
    for row in rows:
        event = "REMOVE(TTL)" if row["ttlExpiry"] else row["eventName"]
        image = json.dumps(row["image"], ensure_ascii=False) if row["image"] is not None else "-"
        print(f"{row['eventTime']:<27} {event:<12} {row['sequenceNumber']:<24} {image}")
    return 0
