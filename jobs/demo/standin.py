"""An embedded local AWS stand-in (moto's server on loopback) for the demo and tests."""

from __future__ import annotations

import logging
import os
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


@contextmanager
def local_aws() -> Iterator[StandIn]:
    """Start moto's server on 127.0.0.1 (a free port) and point this process's AWS at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise ConfigError(
            "the local AWS stand-in needs moto: pip install 'ddb-backup[demo]' (make demo does)"
        ) from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
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
