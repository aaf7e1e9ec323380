"""`ddb-backup demo`: the whole walkthrough on the embedded stand-in, ending with `status`;
the commands it echoes can be pasted into a shell; `--keep` leaves the stand-in running."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from jobs.demo import command as demo
from jobs.main import main


def echoed(out: str) -> list[list[str]]:
    """The commands the demo echoed, as argv lists (as a shell would split them)."""
    return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("$ ")]


@pytest.mark.slow
def test_demo_ends_with_status_and_its_commands_can_be_pasted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept: dict[str, Any] = {}

    def paste_while_kept() -> None:
        """What a user does in another shell while --keep waits: paste the export line and
        an echoed command, then press Ctrl-C."""
        out = capsys.readouterr().out
        kept["out"] = out
        export = next(line.strip() for line in out.splitlines() if "export " in line)
        query = next(
            line[2:]
            for line in out.splitlines()
            if line.startswith("$ ddb-backup query") and "jsonl" in line
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKUP_"))}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        kept["pasted"] = subprocess.run(  # noqa: S603 - the demo's own output, in a test
            ["/bin/bash", "-c", f"set -e\n{export}\n{query}\nddb-backup status --json\n"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        raise KeyboardInterrupt  # Ctrl-C

    code = demo.run(argparse.Namespace(keep=True), cli=main, wait=paste_while_kept)
    out = kept["out"] + capsys.readouterr().out

    # THEN the walkthrough passed and ended with tables and status, healthy
    assert code == 0, out
    commands = echoed(out)
    assert [c[1] for c in commands] == [
        "backfill",
        "compact",
        "compact",
        "snapshots",
        "restore",
        "restore",
        "query",
        "query",
        "drill",
        "expire",
        "history",
        "history",
        "tables",
        "status",
    ]
    status_section = out[out.index("$ ddb-backup status") :]
    header, row = status_section.splitlines()[1:3]
    assert header.split("\t")[:2] == ["PREFIX", "TABLE"]
    assert row.split("\t")[1] == "orders"
    assert row.split("\t")[-1] == "ok"
    assert "demo finished" in out
    # AND every echoed command shows every flag: bucket, endpoint, and quoted arguments
    for argv in commands:
        assert argv[0] == "ddb-backup"
        assert argv[argv.index("--bucket") + 1] == demo.BUCKET
        assert argv[argv.index("--endpoint-url") + 1].startswith("http://127.0.0.1:")
    (alice,) = [c for c in commands if '{"customer": "alice", "order_id": 1}' in c]
    assert alice[1] == "history"
    sql = [c[-1] for c in commands if c[1] == "query"]
    assert sql[1].startswith("SELECT customer, order_id, status, lines->>'$[0].sku'")
    # AND the pasted commands ran against the kept stand-in, from a clean environment
    pasted = kept["pasted"]
    assert pasted.returncode == 0, pasted.stderr
    assert '"customer":"alice"' in pasted.stdout  # the jsonl query
    status = json.loads(pasted.stdout.splitlines()[-1])
    assert status["healthy"] is True
    assert [t["table"] for t in status["tables"]] == ["orders"]
    # AND --keep said where the stand-in is, and stopped it on Ctrl-C
    endpoint = commands[0][commands[0].index("--endpoint-url") + 1]
    assert f"keeps running at {endpoint} until Ctrl-C" in out
    assert "stopping the local stand-in" in out
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoint, timeout=5)  # noqa: S310 - http on loopback


def test_echo_is_pasteable(capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[list[str]] = []
    pipeline = demo._Pipeline("http://127.0.0.1:1", lambda argv: ran.append(list(argv)) or 0)
    pipeline.cli("query", "--format", "jsonl", "SELECT 'a b' AS x, \"q\" FROM items")
    pipeline.cli("status", table=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "$ ddb-backup query --bucket ddb-backup-demo --table orders --endpoint-url "
        "http://127.0.0.1:1 --format jsonl 'SELECT '\"'\"'a b'\"'\"' AS x, \"q\" FROM items'",
        "$ ddb-backup status --bucket ddb-backup-demo --endpoint-url http://127.0.0.1:1",
    ]
    assert [shlex.split(line[2:])[1:] for line in lines] == ran
