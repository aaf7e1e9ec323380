"""`ddb-backup restore` through jobs.cli.main: output, exit codes, one-line errors."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from jobs.main import main
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    mocked,  # noqa: F401 - fixture
    now_us,
)


def _fill(b: Backup) -> int:
    base = now_us() - 1800 * SECOND
    for sk in range(30):
        b.item("a", sk, base + sk * SECOND, status="placed")
    b.remove("a", 29, base + 40 * SECOND)
    return base + 60 * SECOND


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["restore", "--bucket", BUCKET, "--table", TABLE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / SECOND, dt.UTC).isoformat().replace("+00:00", "Z")


def test_json_is_the_last_line(backup: Backup, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    as_of = _fill(backup)
    code, out, err = _run(
        capsys, "--to", "copy", "--as-of", _iso(as_of), "--create-table", "--verify", "--json"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[-1])
    assert result["items"] == 29
    assert (result["puts"], result["deletes"], result["unchanged"]) == (29, 0, 0)
    assert result["batch_write_calls"] == 2  # ceil(29 / 25)
    assert result["mode"] == "bulk"
    assert result["verified"] is True
    assert result["dry_run"] is False
    assert result["source"] == TABLE
    assert result["target"] == "copy"
    assert result["snapshot"] is None
    assert backup.target_items("copy") == backup.oracle(as_of)

    code, out, err = _run(capsys, "--to", "copy", "--as-of", str(as_of / SECOND), "--json")
    again = json.loads(out.splitlines()[-1])
    assert code == 0
    assert (again["mode"], again["puts"], again["deletes"], again["unchanged"]) == (
        "diff",
        0,
        0,
        29,
    )
    assert again["batch_write_calls"] == 0


def test_text_summary_and_default_as_of_is_latest(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(backup)
    code, out, err = _run(capsys, "--to", "copy", "--create-table", "--max-wcu", "100000")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "created table 'copy' (on-demand)"
    summary = out.splitlines()[-1]
    assert summary.startswith(f"{TABLE} as of ")
    assert "-> copy (bulk, from every change, by listing): 29 items; put 29, deleted 0" in summary
    assert "2 BatchWriteItem calls" in summary
    assert backup.target_items("copy") == backup.oracle(now_us())


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        ("yesterday", "bad time 'yesterday'"),
        ("2026-11-28T14:00:00", "add an offset or Z"),
        ("2999-01-01T00:00:00Z", "is in the future"),
    ],
)
def test_bad_as_of_exits_2(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    as_of: str,
    message: str,
) -> None:
    _fill(backup)
    code, out, err = _run(capsys, "--to", "copy", "--as-of", as_of, "--create-table")
    assert code == 2
    assert out == ""
    assert err.startswith("ddb-backup: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "copy" not in backup.dynamodb.list_tables()["TableNames"]


def test_unknown_bucket_and_table_exit_3(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(backup)
    code, _, err = _run(capsys, "--to", "copy", "--table", "nope")
    assert code == 3
    assert err == f"ddb-backup: error: no backup of table 'nope' in s3://{BUCKET}/\n"
    capsys.readouterr()
    code = main(["restore", "--bucket", "no-such-bucket-x", "--table", TABLE, "--to", "copy"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err == "ddb-backup: error: bucket 'no-such-bucket-x' does not exist\n"


def test_keys_and_key_prefix_are_exclusive(
    mocked: tuple[Any, Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *("restore", "--bucket", BUCKET, "--table", TABLE, "--to", "t"),
                *("--keys", "f", "--key-prefix", "a"),
            ]
        )
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_prefix_is_honoured(backup: Backup, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    backup.prefix = "team/backups/"
    as_of = _fill(backup)
    manifest = backup.compact(as_of)
    assert backup.s3.list_objects_v2(Bucket=BUCKET, Prefix="team/backups/orders/v1/")["KeyCount"]
    code, out, err = _run(
        capsys, "--prefix", "/team/backups", "--to", "copy", "--create-table", "--json"
    )
    assert (code, err) == (0, "")
    assert json.loads(out.splitlines()[-1])["snapshot"] == manifest.id
    assert backup.target_items("copy") == backup.oracle(now_us())
    code, _, err = _run(capsys, "--to", "copy")
    assert code == 3
    assert "no backup of table 'orders'" in err


def test_workers_means_units_at_once_as_in_compact(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17: one meaning per flag. `--workers` is units at once (as in compact and
    import-export); the BatchWriteItem calls in flight are `--write-concurrency`."""
    from jobs.restore import restorer

    seen: list[tuple[int, int]] = []
    real = restorer.ThreadUnitExecutor

    def counting(at_once: int) -> Any:
        seen.append((at_once, -1))
        return real(at_once)

    monkeypatch.setattr(restorer, "ThreadUnitExecutor", counting)
    real_task = restorer.RestoreTask

    def task(**kwargs: Any) -> Any:
        seen.append((-1, kwargs["writers"]))
        return real_task(**kwargs)

    monkeypatch.setattr(restorer, "RestoreTask", task)
    as_of = _fill(backup)
    args = ("--to", "copy", "--as-of", _iso(as_of), "--create-table", "--shard-digits", "1")
    code, _, err = _run(capsys, *args, "--workers", "3", "--write-concurrency", "5")
    assert (code, err) == (0, "")
    assert seen == [(3, -1), (-1, 5)]
    assert backup.target_items("copy") == backup.oracle(as_of)
