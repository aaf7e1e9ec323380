"""`ddb-backup compact`: write a point-in-time snapshot of a table."""

from __future__ import annotations

import argparse
from typing import Any

from backup_lambda.errors import UserInputError
from backup_lambda.layout import format_time_us
from compaction.backfills import not_before_backfill
from compaction.clock import BucketClock
from compaction.compactor import CompactionConfig, Compactor
from compaction.policy import DEFAULT_MAX_CHAIN, DEFAULT_MAX_CHANGED_SHARE, SnapshotPolicy
from jobs.cli import config
from jobs.cli.args import (
    add_executor_arguments,
    executor_from,
    non_negative_int,
    parse_time,
    positive_int,
    share,
)
from jobs.cli.clients import ClientFactory, make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json, note
from jobs.cli.progress import progress_for

DEFAULT_SETTLE_SECONDS: int = config.SETTLE.default


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "compact",
        parents=[common],
        help="write a snapshot as of a time",
        description="Fold the table's changes up to TIME (stream event time) into one "
        "committed snapshot: Parquet plus DynamoDB-export JSON lines and a manifest. "
        "Incremental from the newest earlier snapshot unless --full. The snapshot is a "
        "delta (only what changed since the newest earlier snapshot, its parent) unless "
        "there is none, the chain of deltas would pass --max-chain, the changed keys pass "
        "--max-delta-share of the parent's items, or column types would change: then it "
        "is a full snapshot.",
    )
    parser.add_argument(
        "--as-of",
        help=f"snapshot time, not later than S3's now (default: S3's now minus --settle, "
        f"{DEFAULT_SETTLE_SECONDS} s)",
    )
    base = parser.add_mutually_exclusive_group()
    base.add_argument(
        "--full",
        action="store_true",
        help="a full snapshot rebuilt from all object versions (no base, no parent)",
    )
    base.add_argument(
        "--rebuild",
        action="store_true",
        help="a full snapshot from the object versions alone, reading no earlier snapshot "
        "(when the newest fails verification)",
    )
    base.add_argument(
        "--snapshot",
        metavar="ID",
        help="build on this (older) snapshot (default: the newest one as of TIME)",
    )
    base.add_argument(
        "--delta",
        action="store_true",
        help="a delta snapshot wherever one can be written, whatever --max-chain and "
        "--max-delta-share say (default: as they say)",
    )
    parser.add_argument(
        "--max-chain",
        type=non_negative_int,
        default=DEFAULT_MAX_CHAIN,
        metavar="N",
        help=f"deltas after a full snapshot, at most (default {DEFAULT_MAX_CHAIN}; 0: "
        "every snapshot full, built from the newest one)",
    )
    parser.add_argument(
        "--max-delta-share",
        type=share,
        default=DEFAULT_MAX_CHANGED_SHARE,
        metavar="F",
        help="write a full snapshot when the changed keys pass this share of the parent's "
        f"items (default {DEFAULT_MAX_CHANGED_SHARE:g})",
    )
    add_setting(
        parser,
        config.SETTLE,
        "--settle",
        type=positive_int,
        help="seconds the default as-of stays behind now, for in-flight stream records",
    )
    parser.add_argument("--workers", type=positive_int, default=4, help="shard units at once")
    parser.add_argument(
        "--read-concurrency",
        type=positive_int,
        default=32,
        help="S3 GETs in flight, shared by the units that run at once",
    )
    add_executor_arguments(parser)
    parser.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable versions (listed in the manifest) instead of failing",
    )
    parser.add_argument(
        "--listing",
        action="store_true",
        help="find the changes after the base by listing the item versions, even where the "
        "change journal covers them",
    )
    parser.add_argument(
        "--verify-journal",
        action="store_true",
        help="also list and read the item versions of the journal's window and fail (exit 6) "
        "if the journal misses any change; the snapshot is then built by listing",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    as_of = parse_time(args.as_of, "--as-of") if args.as_of else None
    settings = settings_from(args, max_pool_connections=args.read_concurrency + args.workers * 2)
    s3 = make_client("s3", settings)
    clock = BucketClock(s3, args.bucket)
    # S3's now, not the host's alone (compaction.clock); refuses an unversioned bucket
    now_us = clock.now_us()
    for warning in clock.warnings():
        note(args, warning)
    defaulted = as_of is None
    if as_of is None:
        as_of = _default_as_of(args, s3, now_us)
    elif as_of > now_us:
        raise UserInputError(
            f"--as-of {format_time_us(as_of)} is later than S3's clock "
            f"({format_time_us(now_us)}): changes up to it may still be written"
        )
    progress = progress_for(args)
    executor = executor_from(args)
    compactor = Compactor(
        s3,
        args.bucket,
        args.table,
        prefix=args.prefix,
        config=CompactionConfig(
            full=args.full,
            workers=args.workers,
            read_concurrency=args.read_concurrency,
            shard_digits=args.shard_digits,
            skip_corrupt=args.skip_corrupt,
            rebuild=args.rebuild,
            base_snapshot=args.snapshot,
            listing=args.listing,
            verify_journal=args.verify_journal,
            policy=SnapshotPolicy(
                kind="delta" if args.delta else "auto",
                max_chain=args.max_chain,
                max_changed_share=args.max_delta_share,
            ),
        ),
        dynamodb=make_client("dynamodb", settings),
        progress=progress,
        executor=executor,
        s3_factory=ClientFactory("s3", settings),
        autoscaling=make_client("application-autoscaling", settings),
        bucket_clock=clock,
    )
    try:
        result = compactor.run(as_of)
    finally:
        progress.close()
        if executor is not None:
            executor.close()
    manifest = result.manifest
    summary = {
        "snapshot": manifest.id,
        "created": result.created,
        "as_of": format_time_us(manifest.as_of_us),
        "base": manifest.base,
        "kind": manifest.kind,
        "parent": manifest.parent,
        "depth": manifest.depth,
        "why": manifest.policy_reason,
        "items": manifest.counts.items,
        "versions_listed": manifest.counts.versions_listed,
        "objects_read": manifest.counts.objects_read,
        "changed_keys": manifest.counts.changed_keys,
        "bytes_written": manifest.total_bytes,
        "files": len(manifest.files),
        "skipped_versions": len(manifest.skipped),
        "change_source": manifest.change_source,
        "journal_objects": manifest.counts.journal_objects,
        "journal_changes": manifest.counts.journal_changes,
        "seconds": round(result.seconds, 3),
    }
    check = result.journal_check
    if check is not None:
        summary["journal_check"] = {
            "checked": check.checked,
            "item_versions_compared": check.compared,
            "missing": len(check.missing),
        }
    if result.created and result.newer_changes:
        summary["newer_changes"] = result.newer_changes
        hint = (
            f"pass a later --as-of, or wait: the default as-of stays {args.settle} s behind now"
            if defaulted
            else "pass a later --as-of to include them"
        )
        note(
            args,
            f"{result.newer_changes} changes are newer than the as-of "
            f"{format_time_us(manifest.as_of_us)} and not in this snapshot; {hint}",
        )
    if args.json:
        emit_json(summary)
    elif result.created:
        if manifest.kind == "delta":
            kind = f"delta of {manifest.parent}, chain depth {manifest.depth}"
        else:
            kind = f"full, built from {manifest.base}" if manifest.base else "full"
        found = (
            f"{manifest.counts.versions_listed} versions listed, "
            f"{manifest.counts.objects_read} read"
        )
        if manifest.change_source != "listing":
            found = (
                f"{manifest.counts.journal_changes} changes from {manifest.counts.journal_objects} "
                f"journal objects" + (f", {found}" if manifest.change_source != "journal" else "")
            )
        print(
            f"snapshot {manifest.id} ({kind}; {manifest.policy_reason}; changes by "
            f"{manifest.change_source}): {manifest.counts.items} items, {found}, "
            f"{manifest.total_bytes} bytes in {len(manifest.files)} files, {result.seconds:.2f}s"
        )
        if check is not None:
            print(check.summary())
    else:
        print(f"snapshot {manifest.id} already committed; nothing to do")
    return 0


def _default_as_of(args: argparse.Namespace, s3: Any, now_us: int) -> int:
    """Now minus the settle window, but never before the newest backfill."""
    as_of, backfill = not_before_backfill(
        s3, args.bucket, args.prefix, args.table, now_us - int(args.settle) * 1_000_000, now_us
    )
    if backfill is not None:
        note(
            args,
            f"as-of {format_time_us(as_of)}: the time of backfill {backfill.run_id} "
            f"({backfill.items} items), later than now minus --settle",
        )
    return as_of
