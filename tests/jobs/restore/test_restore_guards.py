"""Guarded restores (issue 13, finding 3 and the bulk/diff choice of finding 9): a mistaken
time or target never empties or rewrites a table without the user saying so."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from backup_lambda.errors import RefusedError
from jobs.main import main
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    backup,  # noqa: F401 - fixture
    create_table,
    key_of,
    mocked,  # noqa: F401 - fixture
    now_us,
)

TARGET = "copy"


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / SECOND, dt.UTC).isoformat().replace("+00:00", "Z")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["restore", "--bucket", BUCKET, "--table", TABLE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def _history(b: Backup, items: int = 40, late: int = 0) -> tuple[int, int]:
    """`items` items written between 30 and 20 minutes ago, `late` more ten minutes ago.
    Returns (a time after the first batch, the latest time)."""
    base = now_us() - 1800 * SECOND
    for sk in range(items):
        b.item("a", sk, base + sk * SECOND // 10, status="placed")
    later = base + 1200 * SECOND
    for sk in range(items, items + late):
        b.item("a", sk, later + sk * SECOND // 10, status="late")
    return base + 600 * SECOND, later + 600 * SECOND


def _filled_target(b: Backup, as_of: int) -> None:
    b.restore(TARGET, as_of, create_table=True)


def _one_line_refusal(code: int, out: str, err: str, flag: str) -> None:
    assert code == 2
    assert out == ""
    assert err.startswith("ddb-backup: error: ")
    assert err.count("\n") == 1
    assert flag in err


# ---------------------------------------------------------------- an as-of before the backup


def test_an_as_of_before_the_first_change_is_refused_and_the_target_kept(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a target holding 40 items restored from the backup
    _, latest = _history(backup)
    _filled_target(backup, latest)
    # WHEN restoring as of a time before the backup's first change (the old code: rc 0,
    # "put 0, deleted 40")
    code, out, err = _run(capsys, "--to", TARGET, "--as-of", "2020-01-01T00:00:00Z")
    # THEN it is refused in one line naming --allow-empty, and nothing was deleted
    _one_line_refusal(code, out, err, "--allow-empty")
    assert "no backed-up change of 'orders' at or before 2020-01-01T00:00:00Z" in err
    assert len(backup.target_items(TARGET)) == 40


def test_allow_empty_still_needs_yes_to_empty_a_table(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, latest = _history(backup)
    _filled_target(backup, latest)
    args = ("--to", TARGET, "--as-of", "2020-01-01T00:00:00Z", "--allow-empty")
    code, out, err = _run(capsys, *args)
    _one_line_refusal(code, out, err, "--yes")
    assert "it would leave the target empty (all 40 items deleted)" in err
    assert len(backup.target_items(TARGET)) == 40
    code, out, err = _run(capsys, *args, "--yes", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out.splitlines()[-1])["deletes"] == 40
    assert backup.target_items(TARGET) == {}


def test_an_empty_new_table_before_the_first_change_is_refused_before_creating_it(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _history(backup)
    code, out, err = _run(
        capsys, "--to", "fresh", "--as-of", "2020-01-01T00:00:00Z", "--create-table"
    )
    _one_line_refusal(code, out, err, "--allow-empty")
    assert "fresh" not in backup.dynamodb.list_tables()["TableNames"]


def test_an_as_of_after_the_first_change_with_a_snapshot_needs_no_flag(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A bulk restore proves the history from the snapshot alone (no extra pass).
    early, latest = _history(backup)
    backup.compact(early)
    code, out, err = _run(capsys, "--to", "fresh", "--as-of", _iso(latest), "--create-table")
    assert (code, err) == (0, "")
    assert "(bulk, from snapshot " in out.splitlines()[-1]
    assert len(backup.target_items("fresh")) == 40


@pytest.mark.parametrize("as_of", ["2999-01-01T00:00:00Z", "32503680000"])
def test_an_as_of_in_the_future_is_refused(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    as_of: str,
) -> None:
    _history(backup)
    code, out, err = _run(capsys, "--to", TARGET, "--as-of", as_of, "--create-table")
    _one_line_refusal(code, out, err, "--as-of")
    assert "is in the future" in err
    assert TARGET not in backup.dynamodb.list_tables()["TableNames"]


# ---------------------------------------------------------------- deleting much of a target


def test_deleting_more_than_the_threshold_needs_yes(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a target with 50 items, 10 of them written after the as-of
    early, latest = _history(backup, items=40, late=10)
    _filled_target(backup, latest)
    # WHEN restoring as of before those 10: 20% of the target would go
    code, out, err = _run(capsys, "--to", TARGET, "--as-of", _iso(early))
    # THEN refused, with what it would do
    _one_line_refusal(code, out, err, "--yes")
    assert "it would delete 10 of the target's 50 items (20.0%, more than " in err
    assert "put 0, delete 10, unchanged 40 (the target holds 50 items, 40 after)" in err
    assert len(backup.target_items(TARGET)) == 50
    # AND with --yes it is done
    code, out, err = _run(capsys, "--to", TARGET, "--as-of", _iso(early), "--yes")
    assert (code, err) == (0, "")
    assert "deleted 10, unchanged 40, failed 0" in out
    assert backup.target_items(TARGET) == backup.oracle(early)


def test_a_higher_threshold_allows_the_delete(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    early, latest = _history(backup, items=40, late=10)
    _filled_target(backup, latest)
    code, _, err = _run(
        capsys, "--to", TARGET, "--as-of", _iso(early), "--max-delete-percent", "19"
    )
    assert code == 2
    assert "more than --max-delete-percent 19" in err
    code, _, err = _run(
        capsys, "--to", TARGET, "--as-of", _iso(early), "--max-delete-percent", "20"
    )
    assert (code, err) == (0, "")
    assert backup.target_items(TARGET) == backup.oracle(early)


@pytest.mark.parametrize("value", ["-1", "101", "ten"])
def test_a_bad_threshold_is_a_usage_error(
    mocked: tuple[Any, Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET,
              "--max-delete-percent", value])  # fmt: skip
    assert exit_info.value.code == 2
    assert "expected a percentage from 0 to 100" in capsys.readouterr().err


def test_leaving_the_target_empty_needs_yes_whatever_the_threshold(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Every item removed later: the state after the removals is empty, legitimately
    early, _ = _history(backup, items=5)
    _filled_target(backup, early)
    for sk in range(5):
        backup.remove("a", sk, early + (sk + 1) * SECOND)
    after = early + 10 * SECOND
    code, out, err = _run(
        capsys, "--to", TARGET, "--as-of", _iso(after), "--max-delete-percent", "100"
    )
    _one_line_refusal(code, out, err, "--yes")
    assert "leave the target empty" in err
    assert len(backup.target_items(TARGET)) == 5


def test_a_dry_run_shows_what_would_need_yes_and_writes_nothing(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    early, latest = _history(backup, items=40, late=10)
    _filled_target(backup, latest)
    code, out, err = _run(capsys, "--to", TARGET, "--as-of", _iso(early), "--dry-run")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "would delete 10, unchanged 40" in lines[0]
    assert lines[1].startswith("needs --yes: it would delete 10 of the target's 50 items")
    assert len(backup.target_items(TARGET)) == 50
    code, out, _ = _run(capsys, "--to", TARGET, "--as-of", _iso(early), "--dry-run", "--json")
    result = json.loads(out.splitlines()[-1])
    assert result["plan"] == {"puts": 0, "deletes": 10, "unchanged": 40, "items_after": 40}
    assert len(result["needs_yes"]) == 1


def test_the_guard_counts_before_any_write(backup: Backup) -> None:  # noqa: F811
    # The API refuses too (yes defaults to False), and no BatchWriteItem call was made.
    early, latest = _history(backup, items=40, late=10)
    _filled_target(backup, latest)
    calls: list[Any] = []

    class Counting:
        def __init__(self, client: Any) -> None:
            self._client = client

        def batch_write_item(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return self._client.batch_write_item(**kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

    counted = Backup(backup.s3, Counting(backup.dynamodb), changes=backup.changes)
    with pytest.raises(RefusedError, match="--yes"):
        counted.restore(TARGET, early, yes=False)
    assert calls == []


# ---------------------------------------------------------------- the source table itself


def test_restoring_into_the_source_table_needs_in_place(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    early, latest = _history(backup, items=40, late=2)
    backup.restore(TABLE, latest, in_place=True)  # the live table holds the latest state
    code, out, err = _run(capsys, "--to", TABLE, "--as-of", _iso(early))
    _one_line_refusal(code, out, err, "--in-place")
    assert "is the source table itself" in err
    assert len(backup.target_items(TABLE)) == 42


def test_in_place_prints_the_plan_before_writing(
    backup: Backup,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    early, latest = _history(backup, items=40, late=2)
    backup.restore(TABLE, latest, in_place=True)
    code, out, err = _run(capsys, "--to", TABLE, "--as-of", _iso(early), "--in-place")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        "plan for 'orders' in place: put 0, delete 2, unchanged 40 "
        "(the target holds 42 items, 40 after)"
    )
    assert "(in place, from every change, by listing)" in lines[-1]
    assert backup.target_items(TABLE) == backup.oracle(early)


# ---------------------------------------------------------------- bulk or diff (finding 9)


class EventuallyConsistent:
    """A DynamoDB client whose eventually consistent scans do not see the items yet (a
    table just written); consistent scans see everything."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.scans: list[dict[str, Any]] = []

    def scan(self, **kwargs: Any) -> Any:
        self.scans.append(kwargs)
        if kwargs.get("ConsistentRead"):
            return self._client.scan(**kwargs)
        return {"Items": [], "Count": 0, "ScannedCount": 0}

    def get_paginator(self, name: str) -> Any:
        paginator = self._client.get_paginator(name)
        outer = self

        class Paginator:
            def paginate(self, **kwargs: Any) -> Any:
                outer.scans.append(kwargs)
                if kwargs.get("ConsistentRead"):
                    return paginator.paginate(**kwargs)
                return iter([{"Items": []}])

        return Paginator()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_bulk_or_diff_rests_on_a_consistent_read(backup: Backup) -> None:  # noqa: F811
    # GIVEN a target holding an item the state does not have, visible only to consistent
    # reads (the old code chose "bulk" on an eventually consistent Scan Limit=1 and left
    # the item there)
    _, latest = _history(backup, items=5)
    create_table(backup.dynamodb, TARGET)
    backup.dynamodb.put_item(
        TableName=TARGET, Item={"pk": {"S": "stale"}, "sk": {"N": "1"}, "x": {"S": "old"}}
    )
    lagging = EventuallyConsistent(backup.dynamodb)
    # WHEN restoring
    report = Backup(backup.s3, lagging, changes=backup.changes).restore(TARGET, latest)
    # THEN the restore saw the item, chose diff, and the target holds exactly the state
    assert report.mode == "diff"
    assert report.target_items == 1
    assert report.deletes == 1
    assert backup.target_items(TARGET) == backup.oracle(latest)
    assert key_of("stale", 1) not in backup.target_items(TARGET).values()
    assert all(scan.get("ConsistentRead") for scan in lagging.scans)
