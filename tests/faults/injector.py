"""A fault injector at the wire: every request any boto3 client in the process sends to
in-process moto passes through it, on every attempt botocore makes.

moto answers requests from botocore's `before-send` event (one `BotocoreStubber` for the
whole process), inside botocore's retry loop. The injector wraps that stubber, so it sees
each attempt as S3 or DynamoDB would, whichever session or cached client sent it, and it
can answer instead of moto:

- an error response (S3 `SlowDown` 503, `InternalError` 500; DynamoDB
  `ProvisionedThroughputExceededException`, `ThrottlingException`, 500, 503): parsed and
  retried by botocore exactly like the real thing;
- a transport failure before the server saw the request (read timeout, connection reset);
- a lost response: moto applies the request, then the client sees a read timeout (the
  write happened; botocore sends it again);
- a broken body: moto answers, then the connection resets (or the body ends short) while
  the caller reads the payload, which botocore does not retry.

A rule is "fail the Nth matching call of OPERATION with FAULT, K times" (K None: for good).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3.exceptions
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from moto.core.botocore_stubber import BotocoreStubber

Forward = Callable[[], AWSResponse | None]
Rewrite = Callable[[str, str, AWSPreparedRequest], None]  # (service, operation, request)


@dataclass(frozen=True)
class Fault:
    """What the client gets instead of the server's answer."""

    name: str
    service: str  # "s3", "dynamodb", or "*" (transport faults fit any service)
    status: int = 0  # an error response with this status and `code`
    code: str = ""
    transport: type[Exception] | None = None  # raised instead of any response
    applied: bool = False  # the server applies the request first (a lost response)
    body: str = ""  # "reset" | "short": the response body breaks while being read
    transient_by_botocore: bool = True  # botocore's standard retries cover it

    def fits(self, service: str) -> bool:
        return self.service in {"*", service}

    def strike(self, service: str, request: AWSPreparedRequest, forward: Forward) -> AWSResponse:
        if self.applied:
            forward()
        if self.transport is not None:
            raise self.transport(endpoint_url=request.url)  # type: ignore[call-arg]
        return _error_response(service, request, self.status, self.code)


# S3 answers
SLOW_DOWN = Fault("SlowDown", "s3", 503, "SlowDown")
S3_INTERNAL = Fault("InternalError", "s3", 500, "InternalError")
S3_UNAVAILABLE = Fault("ServiceUnavailable", "s3", 503, "ServiceUnavailable")
# DynamoDB answers
THROUGHPUT = Fault(
    "ProvisionedThroughputExceeded", "dynamodb", 400, "ProvisionedThroughputExceededException"
)
THROTTLING = Fault("ThrottlingException", "dynamodb", 400, "ThrottlingException")
DDB_INTERNAL = Fault("InternalServerError", "dynamodb", 500, "InternalServerError")
DDB_UNAVAILABLE = Fault("ServiceUnavailable", "dynamodb", 503, "ServiceUnavailable")
# The network, for any service
READ_TIMEOUT = Fault("ReadTimeout", "*", transport=ReadTimeoutError)
CONNECTION_RESET = Fault("ConnectionReset", "*", transport=ConnectionClosedError)
LOST_RESPONSE = Fault("LostResponse", "*", transport=ReadTimeoutError, applied=True)
# A GET whose payload breaks after the headers arrived (no botocore retry covers it)
BODY_RESET = Fault("BodyReset", "s3", body="reset", transient_by_botocore=False)
BODY_SHORT = Fault("BodyShort", "s3", body="short", transient_by_botocore=False)


@dataclass(frozen=True)
class Storm:
    """One fault for every S3 step and one for every DynamoDB step of a run."""

    s3: Fault
    dynamodb: Fault
    writes_only: bool = False  # only steps that change state (a lost answer)

    @property
    def name(self) -> str:
        same = self.s3 == self.dynamodb
        return self.s3.name if same else f"{self.s3.name}+{self.dynamodb.name}"

    def fault_for(self, service: str) -> Fault:
        return self.s3 if service == "s3" else self.dynamodb


# Every fault that botocore's standard retries cover, each in at least one storm.
STORMS = (
    Storm(SLOW_DOWN, THROUGHPUT),
    Storm(S3_UNAVAILABLE, THROTTLING),
    Storm(S3_INTERNAL, DDB_INTERNAL),
    Storm(SLOW_DOWN, DDB_UNAVAILABLE),
    Storm(READ_TIMEOUT, READ_TIMEOUT),
    Storm(CONNECTION_RESET, CONNECTION_RESET),
    Storm(LOST_RESPONSE, LOST_RESPONSE, writes_only=True),
)
# For a second variant of a job (a delta chain) whose calls the full set already met:
# throttling, 5xx and a dropped connection.
FEW_STORMS = (STORMS[0], STORMS[2], STORMS[5])
# One fault per persistent case, taken in turn so that steps meet different ones.
PERSISTENT = {
    "s3": (S3_INTERNAL, SLOW_DOWN, CONNECTION_RESET, READ_TIMEOUT),
    "dynamodb": (THROUGHPUT, CONNECTION_RESET, THROTTLING, DDB_INTERNAL),
}


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Any:
        yield self.read()


def _error_response(
    service: str, request: AWSPreparedRequest, status: int, code: str
) -> AWSResponse:
    message = "injected fault: please retry"
    if service == "s3":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        headers = {"Content-Type": "application/xml"}
    else:
        body = json.dumps({"__type": f"com.amazonaws.{service}#{code}", "message": message})
        body = body.encode()  # type: ignore[assignment]
        headers = {"Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse(request.url, status, headers, _RawBody(body))  # type: ignore[arg-type]


class _BrokenRaw(io.BytesIO):
    """A payload that resets the connection after its first half, or ends there."""

    def __init__(self, data: bytes, mode: str) -> None:
        super().__init__(data[: len(data) // 2])
        self._mode = mode

    def read(self, amt: int | None = None) -> bytes:
        chunk = super().read(amt)
        if self._mode == "reset" and (amt is None or not chunk):
            raise urllib3.exceptions.ProtocolError(
                "Connection broken: ConnectionResetError(104, 'Connection reset by peer')"
            )
        return chunk

    def stream(self, **_: Any) -> Any:
        yield self.read()


def _broken_body(response: AWSResponse, mode: str) -> AWSResponse:
    data = response.raw.read()
    headers = dict(response.headers)
    headers["Content-Length"] = str(len(data))
    return AWSResponse(response.url, response.status_code, headers, _BrokenRaw(data, mode))  # type: ignore[arg-type]


@dataclass
class Rule:
    """Fail the `nth` matching call (1-based) and the `times - 1` matching calls after it."""

    service: str
    operation: str
    fault: Fault
    nth: int = 1
    times: int | None = 1  # None: every matching call from the nth on
    where: Callable[[AWSPreparedRequest], bool] | None = None
    seen: int = 0
    struck: int = 0

    def takes(self, service: str, operation: str, request: AWSPreparedRequest) -> bool:
        if (service, operation) != (self.service, self.operation):
            return False
        if self.where is not None and not self.where(request):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times is not None and self.struck >= self.times):
            return False
        self.struck += 1
        return True

    @property
    def persistent(self) -> bool:
        return self.times is None


@dataclass
class Call:
    service: str
    operation: str
    url: str
    fault: str | None


@dataclass
class FaultInjector:
    """The rules in force and every call seen (thread-safe: clients run on many threads)."""

    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    # Changes to requests before the server sees them (smaller pages, a server's quirks)
    rewrites: list[Rewrite] = field(default_factory=list)
    backoffs: list[float] = field(default_factory=list)  # botocore's sleeps, not slept
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self,
        service: str,
        operation: str,
        fault: Fault,
        *,
        nth: int = 1,
        times: int | None = 1,
        where: Callable[[AWSPreparedRequest], bool] | None = None,
    ) -> Rule:
        assert fault.fits(service), f"{fault.name} is not a {service} fault"
        rule = Rule(service, operation, fault, nth, times, where)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def count(self, service: str, operation: str, *, faulted: bool | None = None) -> int:
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (c.service, c.operation) == (service, operation)
                and (faulted is None or (c.fault is not None) == faulted)
            )

    def handle(self, event_name: str, request: AWSPreparedRequest, forward: Forward) -> Any:
        _, service, operation = event_name.split(".", 2)
        for rewrite in self.rewrites:
            rewrite(service, operation, request)
        with self._lock:
            rule = next((r for r in self.rules if r.takes(service, operation, request)), None)
            call = Call(service, operation, request.url, rule.fault.name if rule else None)
            self.calls.append(call)
        if rule is None:
            return forward()
        if rule.fault.body:  # only a payload that arrives can break on the way
            response = forward()
            if response is None or response.status_code != 200:
                with self._lock:  # nothing to break: not a strike
                    rule.struck -= 1
                    call.fault = None
                return response
            return _broken_body(response, rule.fault.body)
        return rule.fault.strike(service, request, forward)


def scan_pages(limit: int) -> Rewrite:
    """DynamoDB Scan pages of at most `limit` items (a Scan that sets no Limit)."""

    def rewrite(service: str, operation: str, request: AWSPreparedRequest) -> None:
        if (service, operation) != ("dynamodb", "Scan"):
            return
        body = json.loads(request.body or b"{}")
        if "Limit" not in body:
            body["Limit"] = limit
            request.body = json.dumps(body).encode()
            request.headers["Content-Length"] = str(len(request.body))

    return rewrite


def ignore_if_none_match(service: str, operation: str, request: AWSPreparedRequest) -> None:
    """A server that drops PutObject's If-None-Match on a versioned bucket (Ceph RGW 16)."""
    if (service, operation) == ("s3", "PutObject") and "If-None-Match" in request.headers:
        del request.headers["If-None-Match"]


def install(injector: FaultInjector, setattr_: Callable[[Any, str, Any], None]) -> None:
    """Route moto's answers through `injector` (`setattr_`: monkeypatch.setattr, undone after
    the test)."""
    original = BotocoreStubber.__call__

    def stubbed(
        self: BotocoreStubber, event_name: str, request: AWSPreparedRequest, **kwargs: Any
    ) -> AWSResponse | None:
        if not self.enabled:
            return None
        return injector.handle(  # type: ignore[no-any-return]
            event_name, request, lambda: original(self, event_name, request, **kwargs)
        )

    setattr_(BotocoreStubber, "__call__", stubbed)
