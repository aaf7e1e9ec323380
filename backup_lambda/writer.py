"""Writes changes to S3: one item's changes in stream order, different items in parallel."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_lambda.layout import Change, encode_change, format_time_us, object_key


@dataclass(frozen=True)
class WriteFailure:
    sequence_number: str
    reason: str


@dataclass
class WriteResult:
    written: list[Change] = field(default_factory=list)
    failed: list[WriteFailure] = field(default_factory=list)


class ChangeWriter:
    """Puts each change as a new version of its item's object.

    The S3 client is expected to retry throttling and 5xx itself (botocore's standard
    retry mode with backoff); what still fails is returned, never raised, so the caller
    can report it as a partial batch failure.
    """

    def __init__(self, s3: Any, bucket: str, prefix: str = "", max_workers: int = 16) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self._max_workers = max_workers

    def write(self, changes: Sequence[Change]) -> WriteResult:
        chains: dict[str, list[Change]] = {}
        for change in changes:
            chains.setdefault(object_key(self._prefix, change.table, change.keys), []).append(
                change
            )
        result = WriteResult()
        if not chains:
            return result
        workers = min(self._max_workers, len(chains))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-put") as pool:
            for written, failed in pool.map(self._write_chain, chains.items()):
                result.written.extend(written)
                result.failed.extend(failed)
        return result

    def _write_chain(
        self, chain: tuple[str, list[Change]]
    ) -> tuple[list[Change], list[WriteFailure]]:
        key, changes = chain
        for index, change in enumerate(changes):
            try:
                self._put(key, change)
            except (ClientError, BotoCoreError) as e:
                failed = [WriteFailure(change.sequence_number, f"s3://{self._bucket}/{key}: {e}")]
                # Later changes of this item wait for the redelivery, which starts at the
                # lowest failed sequence number; that keeps each object's versions in order.
                failed += [
                    WriteFailure(
                        c.sequence_number, "not attempted: an earlier change of this item failed"
                    )
                    for c in changes[index + 1 :]
                ]
                return changes[:index], failed
        return changes, []

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
