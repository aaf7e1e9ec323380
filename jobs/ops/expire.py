"""`ddb-backup expire`: snapshot retention, orphan clean-up, journal retention
(jobs/ops/expire_journal.py), and the safe lifecycle rule."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import NotFoundError, UserInputError
from backup_lambda.layout import format_time_us, items_prefix
from compaction import catalog
from compaction.journal import has_journal
from compaction.lease import LEASE_NAME, LIVE_US
from compaction.manifest import Manifest
from compaction.retention import (
    RetentionPolicy,
    journal_bound,
    journal_from_us,
    keep_chains,
    lifecycle_rule,
    noncurrent_days,
    split_snapshots,
)
from compaction.s3errors import translate
from compaction.state import DEFAULT_CLOCK_SKEW_US
from compaction.versions import VersionRef, iter_versions, put_json, table_has_backup
from jobs.cli import config
from jobs.cli.args import positive_int
from jobs.cli.clients import make_client, settings_from
from jobs.cli.options import add_setting
from jobs.cli.output import emit_json
from jobs.ops.expire_journal import (
    TOMBSTONE_FIELD,
    JournalExpiry,
    plan_expiry,
    recently_expired,
    record_removal,
)

TOMBSTONE = "expired.json"
DEFAULT_GRACE_HOURS = 24.0
# Shorter, and a compaction's early files could go while it still runs (its lease protects
# it beyond that; compaction.lease).
MIN_GRACE_HOURS = 1.0


@dataclass
class ExpireReport:
    kept: list[str] = field(default_factory=list)
    # kept only because a kept delta's chain needs it: id -> the kept snapshot needing it
    kept_for_chains: dict[str, str] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)  # manifests removed in this run
    deleted_runs: list[str] = field(default_factory=list)  # run folders whose files went
    waiting_runs: list[str] = field(default_factory=list)  # unreferenced, inside the grace
    # unreferenced, with a lease renewed lately: a compaction still writing them
    running_runs: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    freed_bytes: int = 0
    lifecycle: dict[str, Any] | None = None
    lifecycle_applied: bool = False
    journal: JournalExpiry | None = None  # change journal objects removed (or to remove)


class Expirer:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        table: str,
        prefix: str,
        policy: RetentionPolicy,
        grace_us: int,
        dry_run: bool = False,
        now_us: int | None = None,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._table = table
        self._prefix = prefix
        self._policy = policy
        self._grace_us = grace_us
        self._dry_run = dry_run
        self._now_us = now_us if now_us is not None else int(time.time() * 1_000_000)

    def run(self, apply_lifecycle: bool = False) -> ExpireReport:
        report = ExpireReport()
        manifests = catalog.committed_snapshots(self._s3, self._bucket, self._prefix, self._table)
        if not manifests and not table_has_backup(
            self._s3, self._bucket, self._prefix, self._table
        ):
            raise NotFoundError(f"no backup of table {self._table!r} in s3://{self._bucket}")
        kept, expired = split_snapshots(manifests, self._policy, self._now_us)
        kept, expired, report.kept_for_chains = keep_chains(kept, expired)
        report.kept = [m.id for m in kept]
        objects = self._snapshot_objects()
        for manifest in expired:
            report.expired.append(manifest.id)
            if not self._dry_run:
                # The manifest goes first: no new reader can pick the snapshot; readers
                # already in it have the grace period before its files go.
                self._put_tombstone(manifest)
                self._delete(objects.get((manifest.id, "manifest"), []))
        # (snapshot, run) of every listed file, parsed below the snapshots folder as
        # _snapshot_objects does: the prefix itself may contain "/run-".
        root = catalog.snapshots_prefix(self._prefix, self._table)
        referenced = {
            (m.id, f.key[len(root) :].split("/", 2)[1].removeprefix("run-"))
            for m in kept
            for f in m.files
        }
        self._clean_runs(objects, referenced, {m.id for m in expired}, report)
        report.journal = self._expire_journal(kept, expired, objects)
        days = noncurrent_days(kept[0] if kept else None, self._now_us, DEFAULT_CLOCK_SKEW_US)
        if days is not None:
            rule_id = f"ddb-backup-{self._table}-items"[:255]
            report.lifecycle = lifecycle_rule(
                rule_id, items_prefix(self._prefix, self._table), days
            )
            if apply_lifecycle and not self._dry_run:
                self._apply_lifecycle(report.lifecycle)
                report.lifecycle_applied = True
        return report

    def _expire_journal(
        self,
        kept: list[Manifest],
        expired: list[Manifest],
        objects: dict[tuple[str, str], list[VersionRef]],
    ) -> JournalExpiry | None:
        """Remove the journal objects folded into every snapshot a read may still build
        on (expire_journal.py), after recording that they may be gone. None: the table
        has no journal."""
        if not has_journal(self._s3, self._bucket, self._prefix, self._table):
            return None
        tombstones = {
            snapshot: refs
            for (snapshot, kind), refs in objects.items()
            if kind == "tombstone" and (snapshot, "manifest") not in objects
        }
        recent, unknown = recently_expired(
            self._s3, self._bucket, tombstones, self._now_us, self._grace_us
        )
        needed = [(m.id, journal_from_us(m)) for m in [*kept, *expired]] + recent
        bound = journal_bound(kept[-1] if kept else None, needed)
        if unknown:
            bound = dataclasses.replace(
                bound,
                through_us=None,
                reason=f"snapshot {unknown[0]} was expired less than the grace period ago "
                "by an earlier ddb-backup (its tombstone records no journal bound): the "
                "journal is removed once the grace period has passed",
            )
        expiry = plan_expiry(self._s3, self._bucket, self._prefix, self._table, bound)
        if expiry.refs and bound.through_us is not None and not self._dry_run:
            record_removal(
                self._s3, self._bucket, self._prefix, self._table, bound.through_us, self._now_us
            )
            self._delete(expiry.refs)
        return expiry

    def _snapshot_objects(self) -> dict[tuple[str, str], list[VersionRef]]:
        """Every object version under snapshots/, keyed by (snapshot id, run id | 'manifest'
        | 'tombstone')."""
        root = catalog.snapshots_prefix(self._prefix, self._table)
        grouped: dict[tuple[str, str], list[VersionRef]] = defaultdict(list)
        for ref in iter_versions(self._s3, self._bucket, root):
            snapshot, _, rest = ref.key[len(root) :].partition("/")
            if rest == "manifest.json":
                grouped[(snapshot, "manifest")].append(ref)
            elif rest == TOMBSTONE:
                grouped[(snapshot, "tombstone")].append(ref)
            elif rest.startswith("run-"):
                grouped[(snapshot, rest[4:].split("/", 1)[0])].append(ref)
        return grouped

    def _clean_runs(
        self,
        objects: dict[tuple[str, str], list[VersionRef]],
        referenced: set[tuple[str, str]],
        expired_now: set[str],
        report: ExpireReport,
    ) -> None:
        """Delete run folders no kept manifest lists, once they are older than the grace."""
        for (snapshot, run), refs in sorted(objects.items()):
            if run in {"manifest", "tombstone"} or (snapshot, run) in referenced:
                continue
            if self._running(snapshot, refs, objects):
                report.running_runs.append(f"{snapshot}/run-{run}")
                continue
            stamps = [int(r.last_modified.timestamp() * 1_000_000) for r in refs]
            stamps += [
                int(r.last_modified.timestamp() * 1_000_000)
                for r in objects.get((snapshot, "tombstone"), [])
            ]
            if snapshot in expired_now:
                stamps.append(self._now_us)
            if self._now_us - max(stamps) < self._grace_us:
                report.waiting_runs.append(f"{snapshot}/run-{run}")
                continue
            report.deleted_runs.append(f"{snapshot}/run-{run}")
            report.deleted_objects += len(refs)
            report.freed_bytes += sum(r.size for r in refs)
            if not self._dry_run:
                self._delete(refs)
        self._drop_spent_tombstones(objects, report)

    def _running(
        self,
        snapshot: str,
        refs: list[VersionRef],
        objects: dict[tuple[str, str], list[VersionRef]],
    ) -> bool:
        """A run folder whose lease (compaction.lease) was written within LIVE_US, of a
        snapshot neither committed nor expired (a run starts only for such a snapshot): its
        run is still going, whatever the grace period."""
        if (snapshot, "manifest") in objects or (snapshot, "tombstone") in objects:
            return False
        leases = [
            int(r.last_modified.timestamp() * 1_000_000)
            for r in refs
            if r.key.endswith(f"/{LEASE_NAME}")
        ]
        return bool(leases) and self._now_us - max(leases) < LIVE_US

    def _drop_spent_tombstones(
        self, objects: dict[tuple[str, str], list[VersionRef]], report: ExpireReport
    ) -> None:
        """A tombstone goes once its snapshot has no manifest and no files left."""
        deleted = set(report.deleted_runs)
        for (snapshot, kind), refs in objects.items():
            if kind != "tombstone" or (snapshot, "manifest") in objects:
                continue
            remaining = [
                run
                for (other, run) in objects
                if other == snapshot
                and run not in {"manifest", "tombstone"}
                and f"{snapshot}/run-{run}" not in deleted
            ]
            if not remaining and not self._dry_run:
                self._delete(refs)

    def _put_tombstone(self, manifest: Manifest) -> None:
        key = f"{catalog.snapshots_prefix(self._prefix, self._table)}{manifest.id}/{TOMBSTONE}"
        document = {
            "expired_at": format_time_us(self._now_us),
            # Reads that started on it may still need the journal after this (for the
            # grace period): journal retention keeps it until then.
            TOMBSTONE_FIELD: journal_from_us(manifest),
        }
        put_json(self._s3, self._bucket, key, document)

    def _delete(self, refs: list[VersionRef]) -> None:
        """Delete exact versions (no delete markers left behind), 1,000 per request."""
        for start in range(0, len(refs), 1000):
            chunk = refs[start : start + 1000]
            try:
                response = self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={
                        "Objects": [{"Key": r.key, "VersionId": r.version_id} for r in chunk],
                        "Quiet": True,
                    },
                )
            except (ClientError, BotoCoreError) as e:
                raise translate(e, self._bucket, chunk[0].key) from e
            if response.get("Errors"):
                first = response["Errors"][0]
                raise translate(
                    ClientError({"Error": first}, "DeleteObjects"),
                    self._bucket,
                    first.get("Key", ""),
                )

    def _apply_lifecycle(self, rule: dict[str, Any]) -> None:
        try:
            current = self._s3.get_bucket_lifecycle_configuration(Bucket=self._bucket)["Rules"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                raise translate(e, self._bucket, "?lifecycle") from e
            current = []
        rules = [r for r in current if r.get("ID") != rule["ID"]] + [rule]
        try:
            self._s3.put_bucket_lifecycle_configuration(
                Bucket=self._bucket, LifecycleConfiguration={"Rules": rules}
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, self._bucket, "?lifecycle") from e


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "expire",
        parents=[common],
        help="remove snapshots past retention and orphaned files; print the lifecycle rule",
        description="Keeps the newest --keep-last snapshots and any within --keep-days, "
        "and every snapshot a kept delta's chain needs (saying which); "
        "removes the others (manifest first, files after --grace-hours), removes files of "
        "crashed or losing runs after the grace period, removes change journal objects "
        "folded into every snapshot a read may still build on (docs/OPERATIONS.md), and "
        "prints the S3 lifecycle rule "
        "for noncurrent item versions that keeps every kept point in time reachable.",
    )
    add_setting(
        parser,
        config.KEEP_LAST,
        "--keep-last",
        type=positive_int,
        required=True,
        metavar="K",
        help="keep the newest K snapshots",
    )
    add_setting(
        parser,
        config.KEEP_DAYS,
        "--keep-days",
        type=float,
        metavar="D",
        help="also keep snapshots younger than D days",
        none_means="only --keep-last",
    )
    parser.add_argument(
        "--grace-hours",
        type=float,
        default=DEFAULT_GRACE_HOURS,
        help=f"files of removed or unfinished snapshots stay this long, at least "
        f"{MIN_GRACE_HOURS:g} (default {DEFAULT_GRACE_HOURS:g}); a run folder whose lease was "
        "renewed lately (a compaction writing it) stays whatever the grace",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed")
    parser.add_argument(
        "--apply-lifecycle", action="store_true", help="put the lifecycle rule on the bucket"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.keep_days is not None and args.keep_days < 0:
        raise UserInputError("--keep-days must be >= 0")
    if args.grace_hours < MIN_GRACE_HOURS:
        raise UserInputError(
            f"--grace-hours {args.grace_hours:g} is shorter than the minimum, "
            f"{MIN_GRACE_HOURS:g}: files of a compaction still running could go"
        )
    expirer = Expirer(
        make_client("s3", settings_from(args)),
        args.bucket,
        args.table,
        args.prefix,
        RetentionPolicy(args.keep_last, args.keep_days),
        grace_us=int(args.grace_hours * 3600 * 1_000_000),
        dry_run=args.dry_run,
    )
    report = expirer.run(apply_lifecycle=args.apply_lifecycle)
    payload = {
        "dry_run": args.dry_run,
        "kept": report.kept,
        "kept_for_chains": report.kept_for_chains,
        "expired": report.expired,
        "deleted_runs": report.deleted_runs,
        "waiting_runs": report.waiting_runs,
        "running_runs": report.running_runs,
        "deleted_objects": report.deleted_objects,
        "freed_bytes": report.freed_bytes,
        "lifecycle_rule": report.lifecycle,
        "lifecycle_applied": report.lifecycle_applied,
        "journal": report.journal.to_json() if report.journal else None,
    }
    if args.json:
        emit_json(payload)
        return 0
    would = "would " if args.dry_run else ""
    print(f"kept {len(report.kept)} snapshots: {', '.join(report.kept) or '-'}")
    for snapshot, needed_by in report.kept_for_chains.items():
        print(f"  kept {snapshot}: the chain of kept delta snapshot {needed_by} needs it")
    print(f"{would}expire {len(report.expired)}: {', '.join(report.expired) or '-'}")
    print(
        f"{would}delete {report.deleted_objects} files ({report.freed_bytes} bytes) of "
        f"{len(report.deleted_runs)} unreferenced runs; {len(report.waiting_runs)} wait "
        "for the grace period"
    )
    for running in report.running_runs:
        print(f"  left {running} alone: a compaction is writing it (its lease is recent)")
    if report.journal is not None:
        print_journal(report.journal, would)
    if report.lifecycle is not None:
        state = "applied" if report.lifecycle_applied else "to apply (or pass --apply-lifecycle)"
        print(f"lifecycle rule for noncurrent item versions, {state}:")
        print(json.dumps(report.lifecycle, indent=1))
    return 0


def print_journal(journal: JournalExpiry, would: str) -> None:
    if journal.bound.through_us is None:
        print(f"change journal kept: {journal.bound.reason}")
        return
    print(
        f"{would}delete {journal.objects} change journal objects ({journal.bytes} bytes) "
        f"{journal.bound.reason}"
    )
    for partition, (objects, size) in journal.partitions.items():
        print(f"  journal/{partition}/: {objects} objects, {size} bytes")
