"""Diff restores into tables with data, dry runs, reruns, partial restores and --verify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from backup_lambda.ddbjson import Item
from backup_lambda.errors import StorageError
from backup_lambda.layout import key_hash
from jobs.main import main
from jobs.restore import restorer as restore_module
from jobs.restore.keys import KeyFilter
from jobs.restore.restorer import VerifyError
from tests.jobs.restore.restore_fixtures import (
    BUCKET,
    SECOND,
    TABLE,
    Backup,
    create_table,
    fake_aws_env,
    key_of,
    make_backup,
    new_session,
    now_us,
    put_items,
    share_sessions,
)

TARGET = "target"
_AS_OF: dict[int, int] = {}


def _write_state(b: Backup) -> int:
    """40 items in partitions a, b, c (some modified, two removed); returns the as-of."""
    base = now_us() - 1800 * SECOND
    for sk in range(40):
        b.item("abc"[sk % 3], sk, base + sk * SECOND, status="placed", n=sk)
    b.item("a", 0, base + 100 * SECOND, status="paid", n=0)
    b.remove("b", 1, base + 101 * SECOND)
    b.remove("c", 2, base + 102 * SECOND)
    b.item("a", 3, base + 400 * SECOND, status="after the as-of")
    return base + 200 * SECOND


@pytest.fixture(scope="module")
def shared_backup() -> Iterator[Backup]:
    """One data set for the module (the tests only read it); each test has its target."""
    with mock_aws():
        session = new_session()
        b = make_backup(session.client("s3"), session.client("dynamodb"))
        _AS_OF[id(b)] = _write_state(b)
        yield b


@pytest.fixture
def backup(shared_backup: Backup, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backup]:
    fake_aws_env(monkeypatch)
    share_sessions(monkeypatch)
    yield shared_backup
    for name in shared_backup.dynamodb.list_tables()["TableNames"]:
        if name != TABLE:
            shared_backup.dynamodb.delete_table(TableName=name)


def _state(b: Backup) -> int:
    """The as-of time of the module's data set."""
    return _AS_OF[id(b)]


def _image(b: Backup, as_of: int, pk: str, sk: int) -> Item:
    return b.oracle(as_of)[key_hash(key_of(pk, sk))]


def _prepare_target(b: Backup, as_of: int) -> dict[str, Item]:
    """A target with extra, missing, changed and identical items; returns what it holds."""
    create_table(b.dynamodb, TARGET)
    state = b.oracle(as_of)
    identical = [image for image in state.values() if image["pk"] == {"S": "c"}]
    changed = [{**_image(b, as_of, "a", 0), "status": {"S": "stale"}}]
    changed.append({k: v for k, v in _image(b, as_of, "a", 6).items() if k != "n"})
    changed.append({**_image(b, as_of, "a", 9), "extra": {"BOOL": True}})
    extra = [
        {**key_of("b", 1), "status": {"S": "removed at the as-of"}},
        {**key_of("zz", 99), "status": {"S": "never backed up"}},
    ]
    put_items(b.dynamodb, TARGET, [*identical, *changed, *extra])
    return b.target_items(TARGET)


@pytest.mark.parametrize("shard_digits", [None, 1, 2], ids=["sized", "16-units", "256-units"])
def test_diff_restore_ends_with_exactly_the_state(backup: Backup, shard_digits: int | None) -> None:
    as_of = _state(backup)
    before = _prepare_target(backup, as_of)
    state = backup.oracle(as_of)
    identical = sum(1 for d, item in before.items() if state.get(d) == item)
    assert identical == 12  # partition c minus the removed item

    report = backup.restore(TARGET, as_of, shard_digits=shard_digits)
    assert report.mode == "diff"
    assert report.state_items == len(state) == 38
    assert (report.puts, report.deletes, report.unchanged) == (38 - identical, 2, identical)
    assert backup.target_items(TARGET) == state

    again = backup.restore(TARGET, as_of)
    assert (again.puts, again.deletes, again.unchanged) == (0, 0, len(state))
    assert again.writes.requests == 0
    assert backup.target_items(TARGET) == state


def test_dry_run_counts_and_writes_nothing(backup: Backup) -> None:
    as_of = _state(backup)
    before = _prepare_target(backup, as_of)
    dry = backup.restore(TARGET, as_of, dry_run=True)
    assert dry.dry_run
    assert (dry.puts, dry.deletes, dry.unchanged) == (26, 2, 12)
    assert dry.writes.requests == 0
    assert backup.target_items(TARGET) == before
    real = backup.restore(TARGET, as_of)
    assert (real.puts, real.deletes, real.unchanged) == (dry.puts, dry.deletes, dry.unchanged)


def test_dry_run_cli_prints_the_counts(
    backup: Backup,
    capsys: pytest.CaptureFixture[str],
) -> None:
    as_of = _state(backup)
    before = _prepare_target(backup, as_of)
    capsys.readouterr()
    code = main(
        [
            *("restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET),
            *("--as-of", str(as_of / SECOND), "--dry-run"),
        ]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "would put 26, would delete 2, unchanged 12" in out
    assert backup.target_items(TARGET) == before


def test_restores_to_other_times_converge_in_place(backup: Backup) -> None:
    as_of = _state(backup)
    later = as_of + 300 * SECOND
    backup.restore(TARGET, as_of, create_table=True)
    assert backup.target_items(TARGET) == backup.oracle(as_of)
    forward = backup.restore(TARGET, later)
    assert (forward.puts, forward.deletes) == (1, 0)
    assert backup.target_items(TARGET) == backup.oracle(later)
    earlier = as_of - 185 * SECOND  # 16 items, none removed yet
    back = backup.restore(TARGET, earlier)
    assert backup.target_items(TARGET) == backup.oracle(earlier)
    assert (back.state_items, back.deletes) == (16, 24)


class FailingAfter:
    """A DynamoDB client whose BatchWriteItem fails permanently after `calls` calls."""

    def __init__(self, client: Any, calls: int) -> None:
        self._client = client
        self._left = calls

    def batch_write_item(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        if self._left <= 0:
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "boom"}}, "BatchWriteItem"
            )
        self._left -= 1
        return self._client.batch_write_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.parametrize("shard_digits", [None, 1], ids=["sized", "16-units"])
def test_interrupted_restore_converges_when_rerun(
    backup: Backup, shard_digits: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_of = _state(backup)
    create_table(backup.dynamodb, TARGET)
    started: list[str] = []
    real_unit = restore_module.restore_unit

    def counted(task: Any, work: Any) -> Any:
        started.append(work[0])
        return real_unit(task, work)

    monkeypatch.setattr(restore_module, "restore_unit", counted)
    broken = Backup(backup.s3, FailingAfter(backup.dynamodb, calls=1), changes=backup.changes)
    with pytest.raises(StorageError, match="BatchWriteItem on target: InternalServerError"):
        broken.restore(TARGET, as_of, workers=1, shard_digits=shard_digits)
    if shard_digits:  # the first failure starts no further unit
        assert 1 <= len(started) < 16
    partial = backup.target_items(TARGET)
    assert 0 < len(partial) < len(backup.oracle(as_of))

    report = backup.restore(TARGET, as_of)
    assert report.mode == "diff"
    assert report.unchanged == len(partial)
    assert backup.target_items(TARGET) == backup.oracle(as_of)


# Partial restores -------------------------------------------------------------------


def _partial_target(b: Backup, as_of: int) -> dict[str, Item]:
    create_table(b.dynamodb, TARGET)
    put_items(
        b.dynamodb,
        TARGET,
        [
            {**_image(b, as_of, "a", 0), "status": {"S": "stale"}},  # listed: fixed
            {**key_of("b", 1), "status": {"S": "removed at the as-of"}},  # listed: deleted
            {**key_of("zz", 1), "status": {"S": "not listed"}},  # untouched
            {**_image(b, as_of, "b", 4), "status": {"S": "stale, not listed"}},  # untouched
        ],
    )
    return b.target_items(TARGET)


def _expected_partial(
    b: Backup, as_of: int, before: dict[str, Item], keys: list[Item]
) -> dict[str, Item]:
    state = b.oracle(as_of)
    expected = dict(before)
    for keys_item in keys:
        digest = key_hash(keys_item)
        expected.pop(digest, None)
        if digest in state:
            expected[digest] = state[digest]
    return expected


def test_partial_restore_of_listed_keys(
    backup: Backup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    as_of = _state(backup)
    before = _partial_target(backup, as_of)
    listed = [key_of("a", 0), key_of("b", 1), key_of("c", 5), key_of("a", 12)]
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text(
        '{"pk": "a", "sk": 0}\n'
        '{"pk": {"S": "b"}, "sk": {"N": "1"}}\n'
        "\n"
        '{"sk": 5.0, "pk": "c"}\n'
        '{"pk": "a", "sk": 12}\n',
        encoding="utf-8",
    )
    capsys.readouterr()
    code = main(
        [
            *("restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET),
            *("--as-of", str(as_of / SECOND), "--keys", str(keys_file), "--json", "--yes"),
        ]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    result = json.loads(out.splitlines()[-1])
    assert (result["items"], result["puts"], result["deletes"]) == (3, 3, 1)
    assert backup.target_items(TARGET) == _expected_partial(backup, as_of, before, listed)


def test_partial_restore_by_key_filter_api(backup: Backup) -> None:
    as_of = _state(backup)
    before = _partial_target(backup, as_of)
    listed = [key_of("a", 0), key_of("b", 1)]
    report = backup.restore(
        TARGET, as_of, key_filter=KeyFilter(key_hashes=frozenset(map(key_hash, listed)))
    )
    assert (report.puts, report.deletes, report.state_items) == (1, 1, 1)
    assert backup.target_items(TARGET) == _expected_partial(backup, as_of, before, listed)


def test_partial_restore_of_one_partition(
    backup: Backup,
    capsys: pytest.CaptureFixture[str],
) -> None:
    as_of = _state(backup)
    before = _partial_target(backup, as_of)
    state = backup.oracle(as_of)
    capsys.readouterr()
    code = main(
        [
            *("restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET),
            *("--as-of", str(as_of / SECOND), "--key-prefix", "b", "--json", "--yes"),
        ]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    result = json.loads(out.splitlines()[-1])
    in_b = {d: item for d, item in state.items() if item["pk"] == {"S": "b"}}
    assert result["items"] == len(in_b) == 12
    assert result["deletes"] == 1
    expected = {d: item for d, item in before.items() if item["pk"] != {"S": "b"}}
    expected.update(in_b)
    assert backup.target_items(TARGET) == expected


def test_keys_file_errors_are_one_line(
    backup: Backup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _state(backup)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pk": "a", "sk": 1}\nnot json\n', encoding="utf-8")
    for path, message in [
        (bad, "--keys " + str(bad) + " line 2:"),
        (tmp_path / "missing.jsonl", "--keys " + str(tmp_path / "missing.jsonl")),
    ]:
        capsys.readouterr()
        code = main(
            ["restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET, "--keys", str(path)]
        )
        _, err = capsys.readouterr()
        assert code == 2
        assert err.startswith("ddb-backup: error: " + message)
        assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"pk": "a", "sk": "5"}', "sk S"),  # the sort key is a number
        ('{"pk": "a"}', "(pk S)"),  # part of the key
        ('{"pk": "a", "sk": 5, "status": "x"}', "status S"),  # not only the key
        ('{"id": "a", "sk": 5}', "id S"),  # another attribute
    ],
)
def test_keys_that_cannot_be_the_tables_keys_are_refused(
    backup: Backup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    problem: str,
) -> None:
    """A key that can never match (wrong names or types) is an error, not a silent no-op."""
    _state(backup)
    create_table(backup.dynamodb, TARGET)
    keys_file = tmp_path / "keys.jsonl"
    keys_file.write_text('{"pk": "a", "sk": 0}\n' + line + "\n", encoding="utf-8")
    capsys.readouterr()
    code = main(
        [
            *("restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET),
            *("--keys", str(keys_file)),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith(f"ddb-backup: error: --keys {keys_file} line 2: ")
    assert problem in err
    assert "the table's key is (pk S, sk N)" in err
    assert err.count("\n") == 1
    assert backup.target_items(TARGET) == {}


# --verify ---------------------------------------------------------------------------


def test_verify_passes_on_a_good_restore(backup: Backup) -> None:
    as_of = _state(backup)
    report = backup.restore(TARGET, as_of, create_table=True, verify=True)
    assert report.verified is True
    assert report.as_json()["verified"] is True
    _prepare_target_extra = {**key_of("zz", 5), "status": {"S": "x"}}
    put_items(backup.dynamodb, TARGET, [_prepare_target_extra])
    report = backup.restore(TARGET, as_of, verify=True)
    assert report.verified is True
    assert report.deletes == 1


class DroppingOnePut:
    """A DynamoDB client whose BatchWriteItem silently drops the first put it sees."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.dropped = 0

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:  # noqa: N803
        ((table, requests),) = RequestItems.items()
        if not self.dropped:
            requests = requests[1:]
            self.dropped += 1
        return self._client.batch_write_item(RequestItems={table: requests})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_verify_fails_when_a_write_was_lost(backup: Backup) -> None:
    as_of = _state(backup)
    lossy = Backup(backup.s3, DroppingOnePut(backup.dynamodb), changes=backup.changes)
    with pytest.raises(VerifyError, match=r"verify failed on 'target': 1 missing, 0 unexpected"):
        lossy.restore(TARGET, as_of, create_table=True, verify=True)


def test_verify_fails_when_the_target_changes_before_the_check(
    backup: Backup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    as_of = _state(backup)
    original = restore_module.Restorer._verify

    def meddle(self: Any, key_names: list[str], expected: dict[str, str]) -> None:
        put_items(backup.dynamodb, TARGET, [{**key_of("zz", 7), "status": {"S": "sneaked in"}}])
        put_items(backup.dynamodb, TARGET, [{**_image(backup, as_of, "a", 0), "x": {"N": "1"}}])
        original(self, key_names, expected)

    monkeypatch.setattr(restore_module.Restorer, "_verify", meddle)
    with pytest.raises(VerifyError, match="0 missing, 1 unexpected, 1 different of 38 items"):
        backup.restore(TARGET, as_of, create_table=True, verify=True)

    capsys.readouterr()
    code = main(
        [
            *("restore", "--bucket", BUCKET, "--table", TABLE, "--to", TARGET),
            *("--as-of", str(as_of / SECOND), "--verify"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("ddb-backup: error: verify failed on 'target'")
    assert err.count("\n") == 1
    assert "Traceback" not in out + err


def test_units_running_together_share_the_write_cap(
    backup: Backup, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps: list[float | None] = []
    real_writer = restore_module.BatchWriter

    def spy(*args: Any, **kwargs: Any) -> Any:
        caps.append(kwargs.get("max_wcu"))
        return real_writer(*args, **kwargs)

    monkeypatch.setattr(restore_module, "BatchWriter", spy)
    as_of = _state(backup)
    # 16 units, 2 at a time: each has half the cap, so together they never exceed it
    report = backup.restore("capped-16", as_of, create_table=True, max_wcu=100, shard_digits=1)
    assert caps == [50.0] * 16
    assert backup.target_items("capped-16") == backup.oracle(as_of)
    assert report.puts == 38
    # one unit: the whole cap
    caps.clear()
    backup.restore("capped-1", as_of, create_table=True, max_wcu=100, shard_digits=0)
    assert caps == [100.0]
