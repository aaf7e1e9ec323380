"""Importing DynamoDB exports on moto: full exports become snapshots, incremental exports
become changes; every bad input is one error naming the file, with nothing committed."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from backup_lambda.errors import BackupError, NotFoundError, RefusedError, UserInputError
from backup_lambda.layout import key_hash
from compaction import catalog
from compaction.awsexport import ExportFormatError, ExportIntegrityError
from compaction.compactor import Compactor
from compaction.history import item_history
from compaction.importexport import ExportImporter, ImportOptions, ImportReport
from compaction.manifest import KeyAttribute, snapshot_id
from compaction.state import plan_state, read_state
from tests.compaction.awsexports import (
    DROP,
    SOURCE_BUCKET,
    ExportFolder,
    change_line,
    item_line,
)

BUCKET = "import-tests"
TABLE = "orders"
SCHEMA = (KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE"))
SEC = 1_000_000
MIN = 60 * SEC
HOUR = 60 * MIN
# Export times are in the past and have milliseconds, as DynamoDB's have.
X = (int(time.time()) // 3600 - 24) * 3600 * SEC + 250_000


def key(pk: str, sk: int = 0) -> Item:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def item(pk: str, sk: int = 0, **attrs: Any) -> Item:
    return {**key(pk, sk), **attrs}


RICH = [
    item(
        "rich",
        1,
        big={"N": "12345678901234567890123456789012345678"},
        small={"N": "-0.00000000000000000000000000000000000001"},
        bin={"B": base64.b64encode(bytes(range(256))).decode()},
        bs={"BS": ["AAE=", "/w=="]},
        ns={"NS": ["1", "-99999999999999999999999999999999999999"]},
        ss={"SS": ["", "ü", "a/b"]},
        nested={"M": {"a": {"M": {"b": {"L": [{"NULL": True}, {"BOOL": True}, {"S": ""}]}}}}},
    ),
    *(item(f"user#{i}", i, amount={"N": f"{i}.25"}, status={"S": "new"}) for i in range(20)),
]


@pytest.fixture
def source(s3: Any) -> ExportFolder:
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return ExportFolder(s3)


Run = Callable[..., ImportReport]


@pytest.fixture
def run(s3: Any, source: ExportFolder) -> Run:
    def go(prefix: str = "exports/", dynamodb: Any = None, **options: Any) -> ImportReport:
        options.setdefault("key_schema", SCHEMA)
        return ExportImporter(
            s3,
            BUCKET,
            TABLE,
            f"s3://{SOURCE_BUCKET}/{prefix}",
            dynamodb=dynamodb,
            options=ImportOptions(**options),
        ).run()

    return go


def state(s3: Any, as_of_us: int) -> dict[str, Item]:
    plan = plan_state(s3, BUCKET, "", TABLE, as_of_us)
    return {
        row.key_hash: row.change.new_image or {}
        for unit in read_state(s3, plan)
        for row in unit.rows
    }


def expect(*items: Item) -> dict[str, Item]:
    return {key_hash({"pk": i["pk"], "sk": i["sk"]}): i for i in items}


def nothing_committed(s3: Any) -> bool:
    listing = s3.list_object_versions(Bucket=BUCKET)
    keys = [v["Key"] for v in listing.get("Versions", [])]
    return not any(k.endswith("manifest.json") or "/items/" in k or "/imports/" in k for k in keys)


# ---- full exports ---------------------------------------------------------------------


def test_a_full_export_becomes_a_snapshot_as_of_its_export_time(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    # GIVEN a full export in two data files and an empty one, with every kind of value
    source.full(RICH, X, files=2, empty_files=1)
    # WHEN it is imported
    report = run()
    # THEN a snapshot as of its exportTime is committed, holding exactly its items
    (outcome,) = report.exports
    assert outcome.snapshot == snapshot_id(X)
    manifest = catalog.load_manifest(s3, BUCKET, "", TABLE, snapshot_id(X))
    assert manifest is not None
    assert (manifest.origin, manifest.kind, manifest.as_of_us) == ("import-export", "full", X)
    assert manifest.counts.items == len(RICH)
    assert manifest.key_schema == SCHEMA
    assert state(s3, X) == expect(*RICH)


def test_an_export_of_an_empty_table_is_an_empty_snapshot(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.full([], X, files=1, empty_files=2)
    run()
    manifest = catalog.load_manifest(s3, BUCKET, "", TABLE, snapshot_id(X))
    assert manifest is not None
    assert manifest.counts.items == 0
    assert state(s3, X + HOUR) == {}


def test_compaction_after_an_import_builds_on_the_imported_snapshot(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.full(RICH[:5], X)
    run()
    result = Compactor(s3, BUCKET, TABLE).run(X + HOUR)
    assert result.manifest.base == snapshot_id(X)
    assert state(s3, X + HOUR) == expect(*RICH[:5])


def test_a_key_in_two_data_files_is_refused(s3: Any, source: ExportFolder, run: Run) -> None:
    written = source.full([*RICH[:3], RICH[0]], X, files=2)
    with pytest.raises(ExportFormatError, match="one key is in two lines") as error:
        run()
    assert written.data_keys[0] in str(error.value)
    assert written.data_keys[1] in str(error.value)
    assert nothing_committed(s3)


def test_the_export_is_read_where_it_was_copied_to(s3: Any, source: ExportFolder, run: Run) -> None:
    # GIVEN an export copied from exports/ to elsewhere/ (its manifests name exports/...)
    source.full(RICH[:4], X)
    for entry in s3.list_objects_v2(Bucket=SOURCE_BUCKET, Prefix="exports/")["Contents"]:
        s3.copy_object(
            Bucket=SOURCE_BUCKET,
            Key="elsewhere/" + entry["Key"][len("exports/") :],
            CopySource={"Bucket": SOURCE_BUCKET, "Key": entry["Key"]},
        )
        s3.delete_object(Bucket=SOURCE_BUCKET, Key=entry["Key"])
    # WHEN it is imported from where it is now THEN its data files are found there
    run(prefix="elsewhere/")
    assert state(s3, X) == expect(*RICH[:4])


def test_one_export_folder_can_be_named_directly(s3: Any, source: ExportFolder, run: Run) -> None:
    written = source.full(RICH[:2], X)
    source.full(RICH[2:4], X + HOUR)
    report = run(prefix=written.folder)
    assert [o.export_id for o in report.exports] == [written.export_id]


# ---- incremental exports --------------------------------------------------------------


def test_incremental_changes_fold_by_their_write_time(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    # GIVEN a full export at X and an incremental export of [X, X + 1 h) (both images)
    a, b, c = item("a", 1, v={"N": "1"}), item("b", 2), item("c", 3)
    source.full([a, b, c], X)
    a2, d = item("a", 1, v={"N": "2"}), item("d", 4, n={"M": {"x": {"NS": ["1"]}}})
    lines = [
        change_line(key("a", 1), X + 10 * MIN, new=a2, old=a),  # modified
        change_line(key("b", 2), X + 20 * MIN, old=b),  # deleted
        change_line(key("d", 4), X + 30 * MIN, new=d),  # inserted
        change_line(key("ghost", 9), X + 40 * MIN),  # a delete of a key never seen
    ]
    source.incremental(lines, X, X + HOUR)
    # WHEN both are imported
    report = run()
    assert [o.status for o in report.exports] == ["imported", "imported"]
    assert (report.exports[1].puts, report.exports[1].deletes) == (2, 2)
    # THEN the state at each time has the changes written by then
    assert state(s3, X + 5 * MIN) == expect(a, b, c)
    assert state(s3, X + 15 * MIN) == expect(a2, b, c)
    assert state(s3, X + 25 * MIN) == expect(a2, c)
    assert state(s3, X + 59 * MIN) == expect(a2, c, d)
    # AND history shows each change, with the export it came from
    entries = item_history(s3, BUCKET, "", TABLE, key("a", 1))
    assert [(e.change.event_name, e.change.event_time_us) for e in entries] == [
        ("MODIFY", X + 10 * MIN)
    ]
    assert entries[0].change.event_id.startswith("export:")
    ghost = item_history(s3, BUCKET, "", TABLE, key("ghost", 9))
    assert [e.change.event_name for e in ghost] == ["REMOVE"]


def test_a_new_image_export_puts_and_deletes(s3: Any, source: ExportFolder, run: Run) -> None:
    a, b = item("a", 1), item("b", 2)
    source.full([a, b], X)
    a2 = item("a", 1, v={"S": "new"})
    lines = [change_line(key("a", 1), X + MIN, new=a2), change_line(key("b", 2), X + 2 * MIN)]
    source.incremental(lines, X, X + HOUR, view="NEW_IMAGE")
    run()
    assert state(s3, X + 3 * MIN) == expect(a2)
    (entry,) = item_history(s3, BUCKET, "", TABLE, key("a", 1))
    assert entry.change.event_name == "MODIFY"  # NEW_IMAGE cannot tell an insert


def test_importing_twice_changes_nothing(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full(RICH[:3], X)
    source.incremental([change_line(key("z", 1), X + MIN, new=item("z", 1))], X, X + HOUR)
    run()
    versions = len(s3.list_object_versions(Bucket=BUCKET)["Versions"])
    report = run()
    assert [o.status for o in report.exports] == ["already imported", "already imported"]
    assert len(s3.list_object_versions(Bucket=BUCKET)["Versions"]) == versions


def test_an_interrupted_import_resumes_after_the_last_file_written(
    s3: Any, source: ExportFolder, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an incremental export of three data files, and a run that dies on the second
    lines = [change_line(key(f"k{i}", i), X + i * SEC, new=item(f"k{i}", i)) for i in range(6)]
    source.incremental(lines, X, X + HOUR, files=3, empty_files=0)
    from backup_lambda.writer import ChangeWriter

    real_write = ChangeWriter.write
    calls = {"n": 0}

    def dying(self: ChangeWriter, changes: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real_write(self, changes)

    monkeypatch.setattr(ChangeWriter, "write", dying)
    with pytest.raises(RuntimeError):
        run(allow_gap=True)
    written = len(s3.list_object_versions(Bucket=BUCKET, Prefix=f"{TABLE}/v1/items/")["Versions"])
    assert 0 < written < 6
    # WHEN it runs again THEN the written file is not written again, and all changes are in
    monkeypatch.setattr(ChangeWriter, "write", real_write)
    report = run(allow_gap=True)
    assert report.exports[0].status == "imported"
    items = s3.list_object_versions(Bucket=BUCKET, Prefix=f"{TABLE}/v1/items/")["Versions"]
    assert len(items) == 6
    assert state(s3, X + HOUR) == expect(*(item(f"k{i}", i) for i in range(6)))


# ---- windows --------------------------------------------------------------------------


def test_a_gap_between_windows_is_refused_and_nothing_is_written(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.full([item("a")], X)
    source.incremental([change_line(key("b"), X + MIN, new=item("b"))], X, X + HOUR)
    source.incremental(
        [change_line(key("c"), X + 3 * HOUR, new=item("c"))], X + 2 * HOUR, X + 4 * HOUR
    )
    with pytest.raises(RefusedError, match="--allow-gap") as error:
        run()
    assert "no export covers" in str(error.value)
    assert nothing_committed(s3)


def test_an_allowed_gap_is_reported(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full([item("a")], X)
    source.incremental(
        [change_line(key("c"), X + 3 * HOUR, new=item("c"))], X + 2 * HOUR, X + 4 * HOUR
    )
    report = run(allow_gap=True)
    assert [(g.start_us, g.end_us) for g in report.gaps] == [(X, X + 2 * HOUR)]
    assert state(s3, X + 4 * HOUR) == expect(item("a"), item("c"))


def test_overlapping_windows_fold_by_time(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full([item("a", v={"N": "0"})], X)
    source.incremental(
        [change_line(key("a"), X + 50 * MIN, new=item("a", v={"N": "1"}))], X, X + HOUR
    )
    source.incremental(
        [change_line(key("a"), X + 70 * MIN, new=item("a", v={"N": "2"}))],
        X + 30 * MIN,
        X + 2 * HOUR,
    )
    report = run()
    assert report.gaps == []
    assert state(s3, X + 60 * MIN) == expect(item("a", v={"N": "1"}))
    assert state(s3, X + 2 * HOUR) == expect(item("a", v={"N": "2"}))


def test_a_gap_after_an_earlier_import_is_found(s3: Any, source: ExportFolder, run: Run) -> None:
    first = source.full([item("a")], X)
    run(export_ids=(first.export_id,))
    later = source.incremental(
        [change_line(key("b"), X + 3 * HOUR, new=item("b"))], X + 2 * HOUR, X + 4 * HOUR
    )
    with pytest.raises(RefusedError, match="between"):
        run(export_ids=(later.export_id,))


def test_an_unknown_export_id_is_not_found(source: ExportFolder, run: Run) -> None:
    source.full([item("a")], X)
    with pytest.raises(NotFoundError, match="no finished export nope"):
        run(export_ids=("nope",))


def test_an_unfinished_export_is_skipped_and_reported(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.full([item("a")], X)
    s3.put_object(Bucket=SOURCE_BUCKET, Key="exports/AWSDynamoDB/01999-running/_started", Body=b"")
    report = run()
    assert report.unfinished == ["exports/AWSDynamoDB/01999-running/"]
    assert len(report.exports) == 1


def test_no_export_at_all_is_not_found(source: ExportFolder, run: Run) -> None:
    with pytest.raises(
        NotFoundError, match="no DynamoDB export under s3://exports-source/exports/"
    ):
        run()


# ---- key schema -----------------------------------------------------------------------


def test_the_key_schema_comes_from_describe_table(
    s3: Any, source: ExportFolder, run: Run, orders: Any
) -> None:
    source.full(RICH[:2], X)
    report = run(key_schema=None, dynamodb=orders.dynamodb)
    assert report.key_schema_source == "describe_table"
    manifest = catalog.load_manifest(s3, BUCKET, "", TABLE, snapshot_id(X))
    assert manifest is not None
    assert manifest.key_schema == SCHEMA


def test_without_a_key_schema_the_import_stops(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full(RICH[:2], X)
    with pytest.raises(UserInputError, match="--key-schema"):
        run(key_schema=None)
    assert nothing_committed(s3)


def test_an_item_without_the_key_is_refused_with_its_line(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    written = source.full([item("a"), {"pk": {"S": "b"}}], X, files=1, empty_files=0)
    with pytest.raises(ExportFormatError, match="line 2: no key attribute 'sk'") as error:
        run()
    assert written.data_keys[0] in str(error.value)
    assert nothing_committed(s3)


def test_a_key_of_the_wrong_type_is_refused(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full([{"pk": {"S": "a"}, "sk": {"S": "1"}}], X, files=1, empty_files=0)
    with pytest.raises(ExportFormatError, match="key attribute 'sk' is S, the key schema says N"):
        run()


def test_keys_that_differ_from_the_schema_are_refused(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.incremental(
        [change_line({"id": {"S": "a"}}, X + MIN)], X, X + HOUR, files=1, empty_files=0
    )
    with pytest.raises(ExportFormatError, match=r"line 1: Keys has attributes \['id'\]"):
        run()
    assert nothing_committed(s3)


def test_a_new_image_that_disagrees_with_keys_is_refused(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.incremental(
        [change_line(key("a"), X + MIN, new=item("b"))], X, X + HOUR, files=1, empty_files=0
    )
    with pytest.raises(ExportFormatError, match="NewImage's key attributes differ from Keys"):
        run()


def test_the_backup_key_schema_must_agree(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full([item("a")], X)
    run()
    later = source.full([{"pk": {"S": "a"}}], X + HOUR)
    with pytest.raises(UserInputError, match="differs from the backup's"):
        run(key_schema=(KeyAttribute("pk", "S", "HASH"),), export_ids=(later.export_id,))


# ---- bad exports: one error naming the file, nothing committed -----------------------


def test_a_changed_data_file_fails_its_md5(s3: Any, source: ExportFolder, run: Run) -> None:
    written = source.full(RICH[:4], X)
    source.replace_data(written, 0, [item_line(i) for i in RICH[:2]])
    with pytest.raises(ExportIntegrityError, match="does not match md5Checksum") as error:
        run()
    assert written.data_keys[0] in str(error.value)
    assert nothing_committed(s3)


def test_an_item_count_that_does_not_match_the_lines(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    # GIVEN a files manifest (and summary) that count 3 items in a file of 4 lines
    written = source.full(RICH[:4], X, files=1, empty_files=0)
    entries = source.files_manifest(written)
    entries[0]["itemCount"] = 3
    source.rewrite_files_manifest(written, entries)
    source.put_summary(written.folder, {**written.summary, "itemCount": 3})
    with pytest.raises(
        ExportIntegrityError, match=re.escape("4 lines, manifest-files.json says itemCount 3")
    ) as error:
        run()
    assert written.data_keys[0] in str(error.value)
    assert nothing_committed(s3)


def test_a_summary_without_its_export_time(s3: Any, source: ExportFolder, run: Run) -> None:
    written = source.full(RICH[:2], X, summary={"exportTime": DROP})
    with pytest.raises(ExportFormatError, match="exportTime is missing") as error:
        run()
    assert written.folder + "manifest-summary.json" in str(error.value)
    assert nothing_committed(s3)


def test_an_ion_export_is_refused(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full(RICH[:2], X, summary={"outputFormat": "ION"})
    with pytest.raises(ExportFormatError, match="outputFormat ION is not supported"):
        run()


def test_exports_of_two_tables_are_refused(s3: Any, source: ExportFolder, run: Run) -> None:
    source.full(RICH[:2], X)
    source.table_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/users"
    source.incremental([], X, X + HOUR)
    with pytest.raises(UserInputError, match="table/users is not the table of"):
        run()
    assert nothing_committed(s3)


def test_a_malformed_line_names_its_file_and_line(s3: Any, source: ExportFolder, run: Run) -> None:
    # GIVEN a valid full export, then an incremental export whose third line is broken
    source.full([item("a")], X)
    good = [change_line(key("a"), X + i * SEC, new=item("a", v={"N": str(i)})) for i in range(2)]
    written = source.incremental(
        [*good, b'{"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": {"pk"'],
        X,
        X + HOUR,
        files=1,
        empty_files=0,
    )
    with pytest.raises(ExportFormatError) as error:
        run()
    assert str(error.value).startswith(f"s3://{SOURCE_BUCKET}/{written.data_keys[0]} line 3: ")
    # THEN not even the valid full export was committed
    assert nothing_committed(s3)


def test_a_change_outside_its_window_is_refused(s3: Any, source: ExportFolder, run: Run) -> None:
    source.incremental([change_line(key("a"), X + 2 * HOUR, new=item("a"))], X, X + HOUR)
    with pytest.raises(ExportFormatError, match="after the export's window"):
        run()


def test_a_manifest_that_does_not_match_its_md5_file(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    written = source.full(RICH[:2], X)
    s3.put_object(Bucket=SOURCE_BUCKET, Key=written.folder + "manifest-files.md5", Body=b"AAAA")
    with pytest.raises(ExportIntegrityError, match=re.escape("manifest-files.md5: does not match")):
        run()


def test_a_dry_run_checks_everything_and_writes_nothing(
    s3: Any, source: ExportFolder, run: Run
) -> None:
    source.full(RICH, X)
    source.incremental([change_line(key("a"), X + MIN, new=item("a"))], X, X + HOUR)
    report = run(dry_run=True)
    assert [o.status for o in report.exports] == ["checked", "checked"]
    assert nothing_committed(s3)
    written = source.full(RICH[:2], X + 2 * HOUR)
    source.replace_data(written, 1, [])
    with pytest.raises(ExportIntegrityError):
        run(dry_run=True, allow_gap=True)


def test_errors_are_backup_errors() -> None:
    # The CLI turns every BackupError into one line; these are the import's.
    for cls in (ExportFormatError, ExportIntegrityError):
        assert issubclass(cls, BackupError)


def test_import_records_say_what_was_imported(s3: Any, source: ExportFolder, run: Run) -> None:
    written = source.full(RICH[:2], X)
    run()
    body = s3.get_object(Bucket=BUCKET, Key=f"{TABLE}/v1/imports/{written.export_id}.json")
    record = json.loads(body["Body"].read())
    assert record["snapshot"] == snapshot_id(X)
    assert record["export_type"] == "FULL_EXPORT"
    assert record["table_arn"] == source.table_arn
