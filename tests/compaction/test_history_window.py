"""`history --key K --from T1 --to T2`: the item's changes in the window, read from the
journal where it covers the window (journal-only tables have no item objects), else from
the object versions; the command says which."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from backup_lambda.layout import format_time_us
from jobs.main import main
from tests.compaction.helpers import BESIDE, BUCKET, ITEMS, ONLY, TABLE, SimClock, Store

Cli = Callable[..., tuple[int, str, str]]
KEY = {"pk": {"S": "user#1"}, "sk": {"N": "1"}}
OTHER = {"pk": {"S": "user#2"}, "sk": {"N": "1"}}


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], moto_aws: None) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def workload(store: Store) -> None:
    store.put(KEY, {"v": {"N": "1"}}, event_s=5)  # before the window
    second = store.put(KEY, {"v": {"N": "2"}}, event_s=12, name="MODIFY")
    store.put(OTHER, {"v": {"N": "9"}}, event_s=13)
    store.put(KEY, {"v": {"N": "3"}}, event_s=14, write_s=15, name="MODIFY")
    store.write(second, 16)  # a replay: one entry, two copies
    store.put(KEY, None, event_s=18)
    store.put(KEY, {"v": {"N": "5"}}, event_s=40, name="MODIFY")  # after the window
    store.put(KEY, {"v": {"N": "4"}}, event_s=25, write_s=7200)  # 2 h late, in the window


def window(clock: SimClock) -> list[str]:
    return ["--from", format_time_us(clock.at(10)), "--to", format_time_us(clock.at(30))]


@pytest.mark.parametrize(
    ("store", "source", "said"),
    [
        (ONLY, "journal", "changes from the journal"),
        (BESIDE, "journal", "changes from the journal"),
        (ITEMS, "listing", "changes from the object versions"),
    ],
    indirect=["store"],
)
def test_history_over_a_window(
    store: Store, sim_clock: SimClock, cli: Cli, source: str, said: str
) -> None:
    # GIVEN an item's changes (in journal-only mode: no item object at all)
    workload(store)
    # WHEN its history over (10, 30] is asked for
    base = ["history", "--bucket", BUCKET, "--table", TABLE, "--key", json.dumps(KEY)]
    code, out, err = cli(*base, *window(sim_clock), "--json")
    # THEN it lists the window's changes once each, in event-time order, and says where from
    assert code == 0, err
    assert said in err
    result = json.loads(out.splitlines()[-1])
    assert result["change_source"] == source
    versions = result["versions"]
    assert [v["eventName"] for v in versions] == ["MODIFY", "MODIFY", "REMOVE", "INSERT"]
    assert [(v["image"] or {}).get("v") for v in versions] == [
        {"N": "2"},
        {"N": "3"},
        None,
        {"N": "4"},
    ]
    assert [v["copies"] for v in versions] == [2, 1, 1, 1]
    if source == "journal":
        assert all(v["versionId"].startswith("journal:") for v in versions)
    # and the table output says the same
    code, out, _ = cli(*base, *window(sim_clock))
    assert code == 0
    assert len(out.splitlines()) == 1 + len(versions)


@pytest.mark.parametrize("store", [ONLY], indirect=True)
def test_journal_only_history_without_a_window_says_to_pass_one(
    store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    workload(store)
    code, out, err = cli("history", "--bucket", BUCKET, "--table", TABLE, "--key", json.dumps(KEY))
    assert code == 0
    assert out.strip() == "no stored changes for this key"
    assert "journal-only since" in err
    assert "--from/--to" in err


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        (["--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z"], "not after"),
        (["--from", "2026-01-01T00:00:00Z", "--as-of", "2026-01-02T00:00:00Z"], "--as-of"),
    ],
)
def test_bad_windows_are_one_line_errors(
    store: Store, cli: Cli, extra: list[str], text: str
) -> None:
    store.put(KEY, {"v": {"N": "1"}}, event_s=5)
    code, out, err = cli(
        "history", "--bucket", BUCKET, "--table", TABLE, "--key", json.dumps(KEY), *extra
    )
    assert code == 2
    assert err.count("\n") == 1
    assert text in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("store", [ONLY], indirect=True)
def test_a_key_without_its_sort_key_is_refused_on_a_journal_only_table(
    store: Store, sim_clock: SimClock, cli: Cli
) -> None:
    # GIVEN a journal-only table (the key schema is read from the journal's first change)
    workload(store)
    # WHEN a key lacks the sort key THEN one line, exit 2
    code, out, err = cli(
        "history",
        "--bucket",
        BUCKET,
        "--table",
        TABLE,
        "--key",
        '{"pk": "user#1"}',
        *window(sim_clock),
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "can match no item: the table's key is (pk S, sk N)" in err
    assert "Traceback" not in out + err
