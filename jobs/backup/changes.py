"""`ddb-backup changes`: the change feed of a table over an event-time window."""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from backup_lambda.errors import UserInputError
from backup_lambda.layout import format_time_us
from compaction.changefeed import Feed, read_feed
from compaction.feedoutput import AWS_INCREMENTAL, FORMATS, JSONL, write_lines, write_s3
from jobs.cli.args import parse_time, positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json, note


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "changes",
        parents=[common],
        help="every change in an event-time window, as JSON lines (a change feed)",
        description="Every change of the table with event time after --from and at or "
        "before --to, each once (replays removed), in event-time order, with the item's "
        "image before and after it: the state as of --from with these changes applied is "
        "the state as of --to. Read from the change journal where it covers the window, "
        "else by listing the item versions (stderr and --json say which).",
    )
    parser.add_argument(
        # dest as import-export's --from and restore's --to (one dest per flag name)
        "--from",
        dest="source",
        required=True,
        metavar="TIME",
        help="window start (exclusive)",
    )
    parser.add_argument("--to", metavar="TIME", help="window end (inclusive; default: now)")
    parser.add_argument(
        "--last-per-item",
        action="store_true",
        help="only each item's last change in the window (its image before: as of --from), "
        "as DynamoDB's incremental export holds",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=JSONL,
        help="jsonl: one change document a line (eventTime, eventName, sequenceNumber, keys, "
        "newImage, oldImage); aws-incremental: DynamoDB incremental-export lines",
    )
    parser.add_argument(
        "--out",
        metavar="FILE|S3URI",
        help="write to FILE (gzip if it ends in .gz), or under s3://BUCKET/FOLDER/ (jsonl: "
        "one .jsonl.gz object; aws-incremental: a DynamoDB incremental export, which needs "
        "--last-per-item) (default: stdout)",
    )
    parser.add_argument(
        "--listing",
        action="store_true",
        help="find the changes by listing the item versions, even where the journal covers "
        "the window",
    )
    parser.add_argument(
        "--read-concurrency",
        type=positive_int,
        default=32,
        help="S3 GETs in flight",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start = parse_time(args.source, "--from")
    end = parse_time(args.to, "--to") if args.to else int(time.time() * 1_000_000)
    if end <= start:
        raise UserInputError(
            f"--to {format_time_us(end)} is not after --from {format_time_us(start)}"
        )
    target = _s3_target(args.out)
    if args.json and args.out is None:
        raise UserInputError(
            "--json prints only the summary on stdout: pass --out FILE or s3://BUCKET/FOLDER/ "
            "for the changes"
        )
    if target is not None and args.format == AWS_INCREMENTAL and not args.last_per_item:
        raise UserInputError(
            "an incremental export on S3 holds one line per item: add --last-per-item (or "
            "write the lines to a FILE)"
        )
    s3 = make_client("s3", settings_from(args, max_pool_connections=args.read_concurrency + 4))
    feed = read_feed(
        s3,
        args.bucket,
        args.prefix,
        args.table,
        start,
        end,
        last_per_item=args.last_per_item,
        listing=args.listing,
        read_concurrency=args.read_concurrency,
    )
    note(args, feed.describe())
    written_to = "stdout"
    if target is not None:
        out_s3 = s3 if target[0] == args.bucket else make_client("s3", settings_from(args))
        written_to = write_s3(out_s3, target[0], target[1], args.table, feed, args.format).uri
    else:
        with _destination(args.out) as out:
            write_lines(out, feed.changes, args.format)
        written_to = args.out or written_to
    if args.json:
        emit_json(_summary(args, feed, written_to))
    elif args.out:
        print(
            f"{len(feed.changes)} changes of {feed.items} items "
            f"({format_time_us(start)} .. {format_time_us(end)}) written to {written_to}",
            file=sys.stderr,
        )
    return 0


def _summary(args: argparse.Namespace, feed: Feed, written_to: str) -> dict[str, Any]:
    return {
        "table": args.table,
        "from": format_time_us(feed.from_us),
        "to": format_time_us(feed.to_us),
        "format": args.format,
        "last_per_item": args.last_per_item,
        "changes": len(feed.changes),
        "items": feed.items,
        "change_source": feed.source.kind,
        "why": feed.source.reason,
        "base": feed.base,
        "journal_objects": feed.journal_objects,
        "journal_changes": feed.journal_changes,
        "versions_listed": feed.versions_listed,
        "versions_read": feed.versions_read,
        "copies_removed": feed.copies_removed,
        "out": written_to,
    }


def _s3_target(out: str | None) -> tuple[str, str] | None:
    """s3://BUCKET/FOLDER/ -> (bucket, "FOLDER/"); None for a file or stdout."""
    if out is None or not out.startswith("s3://"):
        return None
    bucket, _, folder = out[len("s3://") :].partition("/")
    if not bucket:
        raise UserInputError(f"--out {out!r}: expected s3://BUCKET/FOLDER/")
    folder = folder.strip("/")
    return bucket, f"{folder}/" if folder else ""


@contextmanager
def _destination(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        handle: TextIO = (
            gzip.open(path, "wt", encoding="utf-8")  # noqa: SIM115
            if path.endswith(".gz")
            else open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        )
    except OSError as e:
        raise UserInputError(f"--out {path}: {e.strerror}") from None
    with handle:
        yield handle
