"""Items a restore cannot write (issue 13, finding 6): named with their reason, a summary
even when the restore fails, --failures-out, --skip-unwritable."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backup_lambda.layout import key_hash
from jobs.cli import clients
from jobs.main import main
from jobs.restore import batchwrite
from jobs.restore import command as restore_command
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)

TARGET = "copy"
TOO_LARGE = "x" * 420_000  # over DynamoDB's 400 KB item size


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _fill(b: Backup, items: int = 30, large: tuple[int, ...] = ()) -> None:
    base = now_us() - 1800 * SECOND
    for sk in range(items):
        payload = TOO_LARGE if sk in large else "ok"
        b.item("a", sk, base + sk * SECOND // 10, status=payload)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchwrite.BatchWriter, "_backoff", lambda self, attempt: None)


def _wrap_dynamodb(monkeypatch: pytest.MonkeyPatch, wrap: Any) -> None:
    """The command's DynamoDB clients (its own and its unit tasks') go through `wrap`."""
    real = clients.make_client

    def make(service: str, settings: Any) -> Any:
        client = real(service, settings)
        return wrap(client) if service == "dynamodb" else client

    monkeypatch.setattr(restore_command, "make_client", make)
    monkeypatch.setattr(clients, "make_client", make)
    monkeypatch.setattr(clients, "_CLIENTS", {})


class Throttling:
    """Returns the requests for `keys` (pk, sk) as UnprocessedItems, every time (as
    DynamoDB does for a throttled hot key); fails with `fatal` from the `fatal_at`-th
    call on."""

    def __init__(
        self,
        client: Any,
        keys: set[tuple[str, int]] | None = None,
        fatal_at: int | None = None,
        fatal: str = "AccessDeniedException",
    ) -> None:
        self._client = client
        self._keys = {(pk, str(sk)) for pk, sk in keys or set()}
        self._fatal_at = fatal_at
        self._fatal = fatal
        self._lock = threading.Lock()
        self.calls = 0

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:  # noqa: N803
        with self._lock:
            self.calls += 1
            number = self.calls
        if self._fatal_at is not None and number >= self._fatal_at:
            raise ClientError({"Error": {"Code": self._fatal, "Message": "no"}}, "BatchWriteItem")
        ((table, requests),) = RequestItems.items()
        held = [r for r in requests if self._pk_sk(r) in self._keys]
        rest = [r for r in requests if self._pk_sk(r) not in self._keys]
        response = {"UnprocessedItems": {table: held} if held else {}}
        if rest:
            self._client.batch_write_item(RequestItems={table: rest})
        return response

    @staticmethod
    def _pk_sk(request: dict[str, Any]) -> tuple[str, str]:
        item = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
        return item["pk"]["S"], item["sk"]["N"]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_item_too_large_is_named_and_the_restore_stops_with_a_summary(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a backup whose item (a, 7) is over DynamoDB's item size
    _fill(backup, 30, large=(7,))
    # WHEN restoring (the old code: a StorageError naming no item, no summary)
    code, out, err = _run(capsys, "--create-table", "--write-concurrency", "1")
    # THEN exit 1, the summary says what landed, and the item is named with the reason
    assert code == 1
    lines = out.splitlines()
    summary = next(line for line in lines if line.startswith(f"{TABLE} as of "))
    assert ", failed 1;" in summary
    assert "STOPPED before the end" in summary
    named = [line for line in lines if line.startswith("not written")]
    assert named == [
        'not written (put): {"pk": {"S": "a"}, "sk": {"N": "7"}}: refused by DynamoDB: '
        "Item size has exceeded the maximum allowed size"
    ]
    assert err == (
        "ddb-backup: error: 1 item could not be written to 'copy' (named above); the restore "
        "stopped there: add --skip-unwritable to write the rest\n"
    )
    written = backup.target_items(TARGET)
    assert key_hash(key_of("a", 7)) not in written
    assert f"put {len(written)}," in summary


def test_skip_unwritable_writes_the_rest_and_exits_1(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _fill(backup, 60, large=(7, 41))
    failures = tmp_path / "failures.jsonl"
    code, out, err = _run(
        capsys, "--create-table", "--skip-unwritable", "--failures-out", str(failures), "--json"
    )
    assert code == 1
    assert "every other item was written" in err
    result = json.loads(out.splitlines()[-1])
    assert (result["puts"], result["failed"], result["stopped"]) == (58, 2, False)
    assert sorted(f["key"]["sk"]["N"] for f in result["failures"]) == ["41", "7"]
    assert len(backup.target_items(TARGET)) == 58
    lines = [json.loads(line) for line in failures.read_text(encoding="utf-8").splitlines()]
    assert sorted(line["key"]["sk"]["N"] for line in lines) == ["41", "7"]
    assert {line["action"] for line in lines} == {"put"}


def test_throttled_for_good_names_ten_keys_in_text_and_all_in_the_file(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fill(backup, 40)
    held = {("a", sk) for sk in range(0, 24, 2)}  # 12 items always throttled
    _wrap_dynamodb(monkeypatch, lambda client: Throttling(client, keys=held))
    failures = tmp_path / "failures.jsonl"
    code, out, err = _run(
        capsys, "--create-table", "--skip-unwritable", "--failures-out", str(failures)
    )
    assert code == 1
    assert err.startswith("ddb-backup: error: 12 items could not be written to 'copy'")
    named = [line for line in out.splitlines() if line.startswith("not written")]
    assert len(named) == 10
    assert all("unprocessed (throttled) on each of 15 attempts" in n for n in named)
    assert out.splitlines()[-1] == (
        "... and 2 more not written (all of them with --json or --failures-out FILE)"
    )
    assert len(failures.read_text(encoding="utf-8").splitlines()) == 12
    assert len(backup.target_items(TARGET)) == 40 - 12


def test_the_failures_file_retries_just_those_items(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fill(backup, 40)
    held = {("a", 3), ("a", 30)}
    failures = tmp_path / "failures.jsonl"
    with monkeypatch.context() as patch:
        _wrap_dynamodb(patch, lambda client: Throttling(client, keys=held))
        code, _, _ = _run(
            capsys, "--create-table", "--skip-unwritable", "--failures-out", str(failures)
        )
    assert code == 1
    # WHEN the failures file is given back as --keys, without the throttling
    code, out, err = _run(capsys, "--keys", str(failures), "--json")
    # THEN just those two items are put
    assert (code, err) == (0, "")
    result = json.loads(out.splitlines()[-1])
    assert (result["items"], result["puts"], result["deletes"]) == (2, 2, 0)
    assert backup.target_items(TARGET) == backup.oracle(now_us())


def test_a_fatal_error_while_writing_still_prints_the_summary(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fill(backup, 100)
    _wrap_dynamodb(monkeypatch, lambda client: Throttling(client, fatal_at=3))
    code, out, err = _run(capsys, "--create-table", "--write-concurrency", "1")
    assert code == 1
    assert err.count("\n") == 1
    assert "BatchWriteItem on copy: AccessDeniedException" in err
    summary = out.splitlines()[-1]
    assert "put 50, deleted 0, unchanged 0, failed 0" in summary
    assert "STOPPED before the end" in summary
    assert len(backup.target_items(TARGET)) == 50


def test_a_failures_file_that_cannot_be_written_is_refused_before_restoring(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _fill(backup, 5)
    code, out, err = _run(
        capsys, "--create-table", "--failures-out", str(tmp_path / "missing" / "f.jsonl")
    )
    assert (code, out) == (2, "")
    assert err == (
        f"ddb-backup: error: --failures-out {tmp_path}/missing/f.jsonl: No such file or directory\n"
    )
    assert TARGET not in backup.dynamodb.list_tables()["TableNames"]
