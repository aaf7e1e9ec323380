"""`ddb-backup history` through jobs.cli.main, against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup_lambda.layout import object_key
from jobs.main import main
from tests.conftest import Deliver
from tests.support import BUCKET, StreamTable, records_of

ALICE = '{"customer": "alice", "order_id": 1}'
CAROL = '{"customer": {"S": "carol"}, "order_id": {"N": "3"}}'


@pytest.fixture
def backed_up(deliver: Deliver) -> list[dict[str, Any]]:
    """The stored Lambda event (orders table) backed up to the bucket."""
    records = records_of("stream_event_orders")
    assert deliver(records) == {"batchItemFailures": []}
    return records


def history(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop whatever the fixtures printed (handler logs)
    code = main(["history", "--bucket", BUCKET, "--table", "orders", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output_lists_every_version_oldest_first(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = history(capsys, "--key", ALICE)
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["EVENT", "TIME", "EVENT"]
    assert len(rows) == 2
    assert rows[0].split()[:3] == ["2026-11-28T00:00:00Z", "INSERT", "111100000000000000000001"]
    assert rows[1].split()[:3] == ["2026-11-28T00:01:00Z", "MODIFY", "111100000000000000000002"]
    assert '"status": {"S": "paid"}' in rows[1]


def test_table_output_marks_ttl_expiries(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = history(capsys, "--key", CAROL)
    assert code == 0
    (row,) = out.splitlines()[1:]
    assert row.split() == ["2026-11-28T00:03:00Z", "REMOVE(TTL)", "111100000000000000000004", "-"]


def test_json_output_is_one_object_on_the_last_line(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = history(capsys, "--key", ALICE, "--json")
    assert code == 0
    result = json.loads(out.splitlines()[-1])
    keys = {"customer": {"S": "alice"}, "order_id": {"N": "1"}}
    assert result["table"] == "orders"
    assert result["key"] == keys
    assert result["object"] == object_key("", "orders", keys)
    versions = result["versions"]
    assert [v["sequenceNumber"] for v in versions] == [
        "111100000000000000000001",
        "111100000000000000000002",
    ]
    assert [v["eventName"] for v in versions] == ["INSERT", "MODIFY"]
    assert [v["eventTime"] for v in versions] == ["2026-11-28T00:00:00Z", "2026-11-28T00:01:00Z"]
    assert versions[1]["image"] == backed_up[1]["dynamodb"]["NewImage"]
    assert all(v["copies"] == 1 and v["versionId"] for v in versions)


def test_json_output_of_a_removal(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = history(capsys, "--key", CAROL, "--json")
    assert code == 0
    (version,) = json.loads(out.splitlines()[-1])["versions"]
    assert (version["eventName"], version["ttlExpiry"], version["image"]) == ("REMOVE", True, None)


@pytest.mark.parametrize(
    ("as_of", "count"),
    [
        ("2026-11-28T00:00:30Z", 1),
        ("2026-11-28T00:01:00Z", 2),  # at or before: the change at exactly T counts
        ("2026-11-28T01:00:30+01:00", 1),
        ("1795824060", 2),
    ],
)
def test_as_of_limits_history_by_event_time(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], as_of: str, count: int
) -> None:
    code, out, _ = history(capsys, "--key", ALICE, "--as-of", as_of, "--json")
    assert code == 0
    assert len(json.loads(out.splitlines()[-1])["versions"]) == count


def test_a_key_never_written_has_an_empty_history(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = history(capsys, "--key", '{"customer": "zed", "order_id": 9}')
    assert (code, err) == (0, "")
    assert out.strip() == "no stored changes for this key"


def test_history_of_real_stream_changes_under_a_prefix(
    monkeypatch: pytest.MonkeyPatch,
    orders: StreamTable,
    deliver: Deliver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN real changes on a moto table backed up under a prefix
    monkeypatch.setenv("BACKUP_PREFIX", "team/backups")
    key = {"pk": {"S": "a/../b"}, "sk": {"N": "12345678901234567890123456789012345678"}}
    orders.put({**key, "v": {"N": "1"}})
    orders.update(key, "SET v = :v", {":v": {"N": "2"}}, {})
    orders.delete(key)
    records = orders.new_records()
    assert deliver(records) == {"batchItemFailures": []}
    # WHEN asked with the same prefix and the key in plain JSON
    plain = '{"pk": "a/../b", "sk": 12345678901234567890123456789012345678}'
    code, out, _ = history(capsys, "--prefix", "team/backups/", "--key", plain, "--json")
    # THEN all three changes are listed in order
    assert code == 0
    versions = json.loads(out.splitlines()[-1])["versions"]
    assert [v["eventName"] for v in versions] == ["INSERT", "MODIFY", "REMOVE"]
    assert [v["sequenceNumber"] for v in versions] == [
        r["dynamodb"]["SequenceNumber"] for r in records
    ]


def assert_one_line_error(code: int, out: str, err: str, expected_code: int, text: str) -> None:
    assert code == expected_code
    assert err.startswith("ddb-backup: error: ")
    assert err.count("\n") == 1
    assert err.endswith("\n")
    assert text in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("{customer: alice}", "not valid JSON"),
        ('{"customer": true}', "customer"),
        ("[]", "JSON object"),
    ],
)
def test_bad_key_is_a_one_line_user_error(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], key: str, text: str
) -> None:
    code, out, err = history(capsys, "--key", key)
    assert_one_line_error(code, out, err, 2, text)


@pytest.mark.parametrize("as_of", ["yesterday", "2026-11-28T00:00:00"])
def test_bad_as_of_is_a_one_line_user_error(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], as_of: str
) -> None:
    code, out, err = history(capsys, "--key", ALICE, "--as-of", as_of)
    assert_one_line_error(code, out, err, 2, "bad time")


def test_missing_bucket_is_a_one_line_error(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = main(["history", "--bucket", "no-such-bucket", "--table", "orders", "--key", ALICE])
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, 3, "no-such-bucket")


def test_unknown_table_is_a_one_line_error(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(["history", "--bucket", BUCKET, "--table", "invoices", "--key", ALICE])
    out, err = capsys.readouterr()
    assert_one_line_error(code, out, err, 3, "invoices")


def test_missing_required_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # --bucket may come from BACKUP_BUCKET or a config file, so argparse no longer requires
    # it: the command says so once no source gave one
    assert main(["history", "--table", "orders", "--key", ALICE]) == 2
    assert "--bucket" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["history", "--bucket", BUCKET, "--key", ALICE])
    assert exit_info.value.code == 2
    assert "--table" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ('{"customer": "alice", "order_id": "1"}', "order_id S"),  # the wrong type
        ('{"customer": "alice"}', "the table's key is (customer S, order_id N)"),  # no sort key
        ('{"customer": "alice", "order_id": 1, "x": "y"}', "x S"),  # an attribute too many
        ('{"client": "alice", "order_id": 1}', "client S"),  # a misspelt name
    ],
)
def test_a_key_that_can_match_no_item_is_refused_like_restore_keys(
    backed_up: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], key: str, text: str
) -> None:
    # GIVEN a key whose attribute names or types are not the table's WHEN history is asked
    # THEN one line says it can match no item (exit 2), not "no stored changes" (exit 0)
    code, out, err = history(capsys, "--key", key)
    assert_one_line_error(code, out, err, 2, "can match no item")
    assert text in err
