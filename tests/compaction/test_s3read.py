"""compaction.s3read: a payload that breaks mid-body is read again, other errors pass."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from compaction.s3read import ATTEMPTS, get_bytes


class _Body:
    def __init__(self, data: bytes, error: Exception | None) -> None:
        self._data = data
        self._error = error

    def read(self) -> bytes:
        if self._error is not None:
            raise self._error
        return self._data


class _BreakingS3:
    """Each GET's body breaks until `breaks` bodies have broken."""

    def __init__(self, breaks: int, error: Exception | None = None) -> None:
        self.breaks = breaks
        self.error = error or ResponseStreamingError(error="Connection reset by peer")
        self.requests: list[dict[str, Any]] = []

    def get_object(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        broken = len(self.requests) <= self.breaks
        return {"Body": _Body(b"payload", self.error if broken else None)}


@pytest.mark.parametrize(
    "error",
    [
        ResponseStreamingError(error="Connection reset by peer"),
        IncompleteReadError(actual_bytes=3, expected_bytes=7),
    ],
    ids=["reset", "short"],
)
def test_a_broken_payload_is_read_again(error: Exception) -> None:
    s3 = _BreakingS3(ATTEMPTS - 1, error)
    assert get_bytes(s3, "b", "k", "v1") == b"payload"
    assert s3.requests == [{"Bucket": "b", "Key": "k", "VersionId": "v1"}] * ATTEMPTS


def test_a_payload_that_always_breaks_fails_after_the_attempts() -> None:
    s3 = _BreakingS3(ATTEMPTS)
    with pytest.raises(ResponseStreamingError):
        get_bytes(s3, "b", "k")
    assert s3.requests == [{"Bucket": "b", "Key": "k"}] * ATTEMPTS


def test_a_failed_request_is_not_repeated() -> None:
    """botocore already retried the request; only the body is ours to read again."""
    calls: list[str] = []

    class Refusing:
        def get_object(self, **_: Any) -> Any:
            calls.append("get")
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")

    with pytest.raises(ClientError):
        get_bytes(Refusing(), "b", "k")
    assert calls == ["get"]
