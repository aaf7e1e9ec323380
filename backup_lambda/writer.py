"""Writes changes to S3: the batch's journal object first, then one item's changes in stream
order, different items in parallel."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.errors import StorageError
from backup_lambda.journal import ITEM_DEADLINE_US, JournalWriter
from backup_lambda.layout import Change, encode_change, format_time_us, object_key


@dataclass(frozen=True)
class WriteFailure:
    sequence_number: str
    reason: str


@dataclass
class WriteResult:
    written: list[Change] = field(default_factory=list)
    failed: list[WriteFailure] = field(default_factory=list)
    journal_objects: int = 0


@dataclass
class _Chain:
    written: list[Change] = field(default_factory=list)
    failed: list[WriteFailure] = field(default_factory=list)
    late: list[Change] = field(default_factory=list)  # written after the item deadline


class ChangeWriter:
    """Journals each batch, then puts each change as a new version of its item's object.

    The invariant (docs/FORMAT.md): every change in an item object is also in a journal
    object written before it. So a batch whose journal object cannot be written writes no
    item object, and every failure is returned as a failed change, never raised, so the
    caller reports it as a partial batch failure and the retry writes both again. The S3
    client is expected to retry throttling and 5xx itself (botocore's standard retry mode).

    `journal_only` skips the item objects (one PUT per batch). `claim_coverage` declares,
    on the first write of a table, that from 16 minutes on every change of the table is
    journaled: only the stream Lambda, which writes every change, may claim it.
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        prefix: str = "",
        max_workers: int = 16,
        *,
        journal_only: bool = False,
        claim_coverage: bool = False,
        clock: Callable[[], float] = time.time,
        writer: str = "writer",
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._max_workers = max_workers
        self._journal_only = journal_only
        self._journal = JournalWriter(
            s3,
            bucket,
            prefix,
            claim_coverage=claim_coverage,
            journal_only=journal_only,
            clock=clock,
            writer=writer,
        )

    def write(self, changes: Sequence[Change]) -> WriteResult:
        tables: dict[str, list[Change]] = {}
        for change in changes:
            tables.setdefault(change.table, []).append(change)
        result = WriteResult()
        for table, batch in tables.items():
            try:
                _, journaled_us = self._journal.write(table, batch)
            except StorageError as e:
                result.failed += [
                    WriteFailure(c.sequence_number, f"journal not written: {e}") for c in batch
                ]
                continue
            result.journal_objects += 1
            if self._journal_only:
                result.written += batch
                continue
            self._write_items(table, batch, journaled_us, result)
        return result

    def _write_items(
        self, table: str, batch: list[Change], journaled_us: int, result: WriteResult
    ) -> None:
        chains: dict[str, list[Change]] = {}
        for change in batch:
            chains.setdefault(object_key(self._prefix, change.table, change.keys), []).append(
                change
            )
        deadline = journaled_us + ITEM_DEADLINE_US
        workers = min(self._max_workers, len(chains))
        outcome = _Chain()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-put") as pool:
            for chain in pool.map(lambda c: self._write_chain(c, deadline), chains.items()):
                outcome.written += chain.written
                outcome.failed += chain.failed
                outcome.late += chain.late
        if outcome.late:
            # Their item versions were written more than the deadline after the journal
            # object: journal them again, so a reader's window finds them.
            try:
                self._journal.write(table, outcome.late)
                result.journal_objects += 1
            except StorageError as e:
                late = {id(c) for c in outcome.late}
                outcome.written = [c for c in outcome.written if id(c) not in late]
                outcome.failed += [
                    WriteFailure(c.sequence_number, f"journal not written again: {e}")
                    for c in outcome.late
                ]
        result.written += outcome.written
        result.failed += outcome.failed

    def _write_chain(self, chain: tuple[str, list[Change]], deadline_us: int) -> _Chain:
        key, changes = chain
        outcome = _Chain()
        for index, change in enumerate(changes):
            reason = None
            if self._journal.now_us() > deadline_us:
                reason = (
                    "not attempted: the batch's journal object is too old; "
                    "the retry journals it again"
                )
            else:
                try:
                    self._put(key, change)
                except (ClientError, BotoCoreError) as e:
                    reason = f"s3://{self._bucket}/{key}: {e}"
            if reason is not None:
                outcome.failed.append(WriteFailure(change.sequence_number, reason))
                # Later changes of this item wait for the redelivery, which starts at the
                # lowest failed sequence number; that keeps each object's versions in order.
                outcome.failed += [
                    WriteFailure(
                        c.sequence_number, "not attempted: an earlier change of this item failed"
                    )
                    for c in changes[index + 1 :]
                ]
                return outcome
            outcome.written.append(change)
            if self._journal.now_us() > deadline_us:
                outcome.late.append(change)
        return outcome

    def _put(self, key: str, change: Change) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=encode_change(change),
            ContentType="application/json",
            Metadata={
                "ddb-event-name": change.event_name,
                "ddb-sequence-number": change.sequence_number,
                "ddb-event-time": format_time_us(change.event_time_us),
            },
        )
