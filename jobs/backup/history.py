"""`ddb-backup history`: every version of one item."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from backup_lambda.errors import UserInputError
from backup_lambda.layout import format_time_us, object_key
from compaction.history import HistoryEntry, item_history, item_history_window
from compaction.journal import JOURNAL, LISTING, journal_only_since
from compaction.storedschema import stored_key_schema
from jobs.cli.args import parse_key, parse_time
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json, note
from jobs.restore.keys import check_key


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "history",
        parents=[common],
        help="every version of one item",
        description="Every stored change of one item, oldest first, by event time: its "
        "object versions, or with --from/--to the changes in that event-time window, read "
        "from the change journal where it covers the window (journal-only tables have no "
        "item objects), else from the object versions.",
    )
    parser.add_argument(
        "--key",
        required=True,
        help='the item key: {"pk": "a", "sk": 5} or DynamoDB JSON {"pk": {"S": "a"}}',
    )
    parser.add_argument(
        "--as-of", help="only changes with event time at or before TIME (default: every change)"
    )
    parser.add_argument(
        # dest as changes' --from (and import-export's)
        "--from",
        dest="source",
        metavar="TIME",
        help="only changes with event time after TIME, read from the journal where it covers "
        "them (default: without --to, every object version)",
    )
    parser.add_argument(
        "--to",
        metavar="TIME",
        help="with --from: only changes with event time at or before TIME (default: now)",
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
    window = args.source is not None or args.to is not None
    if window and args.as_of:
        raise UserInputError("--as-of lists object versions; with --from, bound the window by --to")
    as_of = parse_time(args.as_of, "--as-of") if args.as_of else None
    start = parse_time(args.source, "--from") if args.source else 0
    end = parse_time(args.to, "--to") if args.to else int(time.time() * 1_000_000)
    if window and end <= start:
        raise UserInputError(
            f"--to {format_time_us(end)} is not after --from {format_time_us(start)}"
        )
    s3 = make_client("s3", settings_from(args))
    # A key with other attribute names or types than the table's matches nothing: say so
    # (as restore --keys does) rather than "no stored changes".
    check_key(keys, stored_key_schema(s3, args.bucket, args.prefix, args.table))
    extra: dict[str, Any] = {}
    if window:
        found = item_history_window(s3, args.bucket, args.prefix, args.table, keys, start, end)
        entries = found.entries
        how = "the journal" if found.source.kind == JOURNAL else "the object versions"
        if found.source.kind not in (JOURNAL, LISTING):
            how = "the object versions and the journal"
        note(args, f"changes from {how}: {found.source.reason}")
        extra = {
            "from": format_time_us(start),
            "to": format_time_us(end),
            "change_source": found.source.kind,
            "why": found.source.reason,
            "journal_objects": found.journal_objects,
        }
    else:
        entries = item_history(s3, args.bucket, args.prefix, args.table, keys, as_of)
        only = journal_only_since(s3, args.bucket, args.prefix, args.table)
        if only is not None:
            note(
                args,
                f"the table is journal-only since {format_time_us(only)}: its changes since "
                "then are in the journal alone; pass --from/--to to read them",
            )
            extra = {"journal_only_since": format_time_us(only)}
    rows = [entry_json(e) for e in entries]
    if args.json:
        emit_json(
            {
                "table": args.table,
                "key": keys,
                "object": object_key(args.prefix, args.table, keys),
                **extra,
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
