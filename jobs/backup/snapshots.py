"""`ddb-backup snapshots`: the committed snapshots of a table."""

from __future__ import annotations

import argparse
from typing import Any

from backup_lambda.errors import CorruptSnapshotError, NotFoundError, UserInputError
from backup_lambda.layout import format_time_us
from compaction.catalog import committed_snapshots, load_manifest
from compaction.chain import load_chain
from compaction.manifest import Manifest
from compaction.snapshotcheck import SnapshotCheck, check_snapshot
from compaction.versions import table_has_backup
from jobs.cli.args import positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.output import emit_json

NEWEST = "newest"


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "snapshots",
        parents=[common],
        help="list committed snapshots",
        description="Committed snapshots of the table, oldest first: id, as-of, kind "
        "(full, or a delta and its depth in the chain), items (of the state it stands for), "
        "bytes (of its own files), parent (a delta's). With --verify, reads every file of "
        "a snapshot at the version its manifest pins and checks it (size, SHA-256, rows; "
        "the export's line counts), and exits with status 6 if any file fails.",
    )
    parser.add_argument(
        "--verify",
        nargs="?",
        const=NEWEST,
        metavar="ID",
        help="check every file of snapshot ID (default: the newest; a delta with its "
        "chain), or of every snapshot with --all",
    )
    parser.add_argument(
        "--all", action="store_true", help="with --verify: check every committed snapshot"
    )
    parser.add_argument(
        "--read-concurrency", type=positive_int, default=8, help="S3 GETs in flight (--verify)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    s3 = make_client("s3", settings_from(args))
    if args.verify is not None or args.all:
        return _verify(args, s3)
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


def _verify(args: argparse.Namespace, s3: Any) -> int:
    if args.verify is None:
        raise UserInputError("--all goes with --verify: `snapshots --verify --all`")
    if args.all and args.verify != NEWEST:
        raise UserInputError("--verify takes a snapshot ID or --all, not both")
    chosen = _to_verify(args, s3)
    checks: list[SnapshotCheck] = []
    for manifest in chosen:
        check = check_snapshot(s3, args.bucket, manifest, args.read_concurrency)
        checks.append(check)
        if not args.json:
            _print_check(check)
    failed = [c.id for c in checks if not c.ok]
    if args.json:
        emit_json(
            {
                "table": args.table,
                "verified": [
                    {
                        "id": c.id,
                        "ok": c.ok,
                        "files": c.files,
                        "bytes": c.bytes,
                        "failures": list(c.failures),
                    }
                    for c in checks
                ],
            }
        )
    if failed:
        raise CorruptSnapshotError(
            f"{len(failed)} of {len(checks)} snapshots failed verification: {', '.join(failed)}"
        )
    return 0


def _to_verify(args: argparse.Namespace, s3: Any) -> list[Manifest]:
    """The snapshots to check: every one (--all), or one with the chain it needs."""
    if args.all:
        manifests = committed_snapshots(s3, args.bucket, args.prefix, args.table)
        if not manifests:
            raise NotFoundError(f"no committed snapshot of table {args.table!r} to verify")
        return manifests
    if args.verify == NEWEST:
        manifests = committed_snapshots(s3, args.bucket, args.prefix, args.table)
        if not manifests:
            raise NotFoundError(f"no committed snapshot of table {args.table!r} to verify")
        head = manifests[-1]
    else:
        found = load_manifest(s3, args.bucket, args.prefix, args.table, args.verify)
        if found is None:
            raise NotFoundError(f"no committed snapshot {args.verify!r} of table {args.table!r}")
        head = found
    return list(reversed(load_chain(s3, args.bucket, args.prefix, args.table, head).levels))


def _print_check(check: SnapshotCheck) -> None:
    if check.ok:
        print(f"{check.id} OK ({check.files} files, {check.bytes} bytes)")
        return
    print(f"{check.id} FAILED ({len(check.failures)} of {check.files} files)")
    for failure in check.failures:
        print(f"  {failure}")
