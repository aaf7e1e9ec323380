"""An embedded local AWS stand-in (moto's server on loopback) for the demo and tests."""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from backup_lambda.errors import ConfigError

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "standin",
    "AWS_SECRET_ACCESS_KEY": "standin",
    "AWS_SESSION_TOKEN": "standin",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass(frozen=True)
class StandIn:
    endpoint_url: str

    @property
    def env(self) -> dict[str, str]:
        """The environment that points AWS clients (ddb-backup, the AWS CLI) at it."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, **_FAKE_ENV}


@contextmanager
def local_aws() -> Iterator[StandIn]:
    """Start moto's server on 127.0.0.1 (a free port) and point this process's AWS at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise ConfigError(
            "the local AWS stand-in needs moto: pip install 'ddb-backup[demo]' (make demo does)"
        ) from None
    # No per-request access log, and no server-side traceback for an API moto lacks (the
    # client gets its error answer; callers treat it as not captured or not supported).
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are this process's: a stand-in started after others begins empty.
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(reset, timeout=10):  # noqa: S310 - http on loopback
        pass
    saved = {name: os.environ.get(name) for name in [*_FAKE_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE"]}
    os.environ.update(_FAKE_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield StandIn(endpoint_url=endpoint)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class FakeLambdaContext:
    """What the Lambda runtime passes as `context`, for invoking the handler locally."""

    function_name: str = "ddb-backup-local"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ddb-backup-local"
    aws_request_id: str = "local-request"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000
