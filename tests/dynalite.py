"""The dynalite tier: an independent DynamoDB implementation (node, npm package `dynalite`),
stricter than moto in places, started once per test process on a free loopback port.

`scripts/dynalite.sh install` puts it into .dynalite/ (make test runs it first; this
fixture runs it too when needed). Without node the tests that use it are skipped, with
that reason; `DYNALITE_ENDPOINT` (from `scripts/dynalite.sh up`) reuses a running server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "dynalite.sh"
NOT_INSTALLED = 3  # scripts/dynalite.sh: node or npm is missing


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _program() -> str:
    if shutil.which("node") is None:
        pytest.skip(
            "dynalite tests skipped: node is not installed (dynalite, an independent "
            "DynamoDB implementation, runs on node 20+; apt-get install nodejs npm)"
        )
    done = subprocess.run(  # noqa: S603 - our own script
        [str(SCRIPT), "install"], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode == NOT_INSTALLED:
        pytest.skip(f"dynalite tests skipped: {done.stderr.strip()}")
    if done.returncode != 0:
        pytest.fail(f"scripts/dynalite.sh install failed: {done.stderr.strip()[-2000:]}")
    found = subprocess.run(  # noqa: S603
        [str(SCRIPT), "bin"], capture_output=True, text=True, timeout=30, check=True
    )
    return found.stdout.strip()


@pytest.fixture(scope="session")
def dynalite_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT of a dynalite server (in memory) for this test process."""
    running = os.environ.get("DYNALITE_ENDPOINT")
    if running:
        yield running.rstrip("/")
        return
    program = _program()
    node = shutil.which("node") or "node"
    for _attempt in range(5):
        port = _free_port()
        command = [node, program, "--host", "127.0.0.1", "--port", str(port)]
        command += ["--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"]
        process = subprocess.Popen(  # noqa: S603
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while process.poll() is None and not _answers(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None and _answers(port):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail("dynalite did not start (5 attempts)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
