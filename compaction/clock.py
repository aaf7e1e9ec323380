"""S3's now: the clock of the times that bound what was written.

S3 stamps LastModified with its own clock. A run's listing watermark, a snapshot's default
as-of and the event time of backfilled items are compared with those stamps, so they must
not run ahead of S3's clock: with the host 10 minutes fast, a snapshot's listing bound lay
in S3's future and changes written in those 10 minutes were never listed again (issue 13,
finding 4).

One request to the bucket (GetBucketVersioning, every writer's check that the bucket keeps
object versions: backup_lambda.versioning) returns S3's `Date` (whole seconds). The run's
now is the host's clock where it lies within the second S3 named (sub-second, as before),
else S3's Date advanced by the host's elapsed time. Either is at most 1 s past S3's true
time: the clock skew that listings already allow for (compaction.state.DEFAULT_CLOCK_SKEW_US).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backup_lambda.versioning import Versioning, require_versioning

SECOND_US = 1_000_000
# Warn when the host's clock is more than this outside the second S3's Date names.
TOLERANCE_US = 1_000_000


@dataclass(frozen=True)
class ClockReading:
    """The clocks a run read: S3's (the response Date of a request to the bucket, 1 s
    resolution) and the host's when the answer arrived; `source` says which one the run
    follows ("s3", or "host" where S3 sent no usable Date)."""

    s3_us: int | None
    host_us: int
    source: str = "s3"

    def now_us(self, host_now_us: int) -> int:
        """S3's now when the host's clock reads `host_now_us` (at or after the reading):
        the host's time while it lies within the second S3 named (advanced by the time
        since), else the start of that second, advanced alike."""
        if self.s3_us is None:
            return host_now_us
        if self.s3_us <= self.host_us <= self.s3_us + SECOND_US:
            return host_now_us
        return self.s3_us + (host_now_us - self.host_us)  # S3's true time is at least this

    @property
    def skew_us(self) -> int:
        """The host's clock minus S3's Date (positive: the host is ahead; S3's Date is
        truncated to the second, so this is up to 1 s more than the true skew)."""
        return 0 if self.s3_us is None else self.host_us - self.s3_us

    def warning(self) -> str | None:
        """One line for the user when the clocks disagree, else None."""
        if self.s3_us is None:
            return (
                "S3 sent no usable Date header: times are taken from this host's clock alone "
                "(keep it in sync: NTP)"
            )
        skew = self.skew_us
        if -TOLERANCE_US <= skew <= SECOND_US + TOLERANCE_US:
            return None
        side = "ahead of" if skew > 0 else "behind"
        return (
            f"this host's clock is {abs(skew) / SECOND_US:.1f} s {side} S3's; times are "
            "taken from S3's clock (fix the host's time sync: NTP)"
        )


def parse_http_date(text: str | None) -> int | None:
    """An HTTP Date header (RFC 7231) in epoch microseconds; None if absent or unparsable."""
    if not text:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp()) * SECOND_US


def date_of(response: dict[str, Any]) -> int | None:
    """S3's Date from a response (or a ClientError's response)."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return parse_http_date(headers.get("date"))


class BucketClock:
    """S3's clock for one run, read once (lazily) and then advanced by the host's clock.

    The request that reads it is the run's check that the bucket keeps object versions
    (backup_lambda.versioning): the first reading refuses a bucket without.
    `host` is the host's clock in seconds (time.time); tests pass a fast or slow one.
    """

    def __init__(self, s3: Any, bucket: str, host: Callable[[], float] | None = None) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._host = host or time.time
        self._reading: ClockReading | None = None
        self._versioning: Versioning | None = None

    def host_us(self) -> int:
        return int(self._host() * SECOND_US)

    @property
    def reading(self) -> ClockReading:
        if self._reading is None:
            self._versioning = require_versioning(self._s3, self._bucket)
            self._reading = reading_of(self._versioning.response, self.host_us())
        return self._reading

    def now_us(self) -> int:
        """S3's now (see ClockReading.now_us)."""
        reading = self.reading
        return reading.now_us(self.host_us())

    def warnings(self) -> list[str]:
        """Lines for the user: the clocks disagree, versioning could not be checked."""
        reading = self.reading  # reads the versioning too
        checked = self._versioning.warning() if self._versioning is not None else None
        return [w for w in (checked, reading.warning()) if w is not None]


def reading_of(response: dict[str, Any], host_us: int) -> ClockReading:
    s3_us = date_of(response)
    return ClockReading(s3_us, host_us, "s3" if s3_us is not None else "host")
