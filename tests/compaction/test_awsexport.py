"""DynamoDB's export format, read strictly: summaries, file manifests, data files, lines."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import pytest

from backup_lambda.errors import StorageError
from compaction.awsexport import (
    DataFileReader,
    ExportFile,
    ExportFormatError,
    ExportIntegrityError,
    md5_matches,
    parse_change_line,
    parse_files_manifest,
    parse_item_line,
    parse_summary,
    parse_time_us,
    resolve_key,
    same_table,
)
from compaction.importexport import find_gaps
from tests.compaction.awsexports import TABLE_ARN, md5_b64

FOLDER = "exports/AWSDynamoDB/01604474914028-a1b2c3d4/"
FULL_SUMMARY: dict[str, Any] = {
    "version": "2020-06-30",
    "exportArn": f"{TABLE_ARN}/export/01604474914028-a1b2c3d4",
    "startTime": "2020-11-04T07:28:34.028Z",
    "endTime": "2020-11-04T07:33:43.897Z",
    "tableArn": TABLE_ARN,
    "tableId": "12345a12-abcd-123a-ab12-1234abc12345",
    "exportTime": "2020-11-04T07:28:34.028Z",
    "s3Bucket": "src",
    "s3Prefix": "exports",
    "s3SseAlgorithm": "AES256",
    "s3SseKmsKeyId": None,
    "manifestFilesS3Key": FOLDER + "manifest-files.json",
    "billedSizeBytes": 0,
    "itemCount": 8,
    "outputFormat": "DYNAMODB_JSON",
}


def summary(**changes: Any) -> bytes:
    doc = {**FULL_SUMMARY, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_full_summary_fields_are_read() -> None:
    # GIVEN the summary of a full export as DynamoDB writes it (no exportType: before 2023)
    parsed = parse_summary(summary(), "src", FOLDER, "exports/")
    # THEN its time, type, count and files manifest are known
    assert parsed.export_time_us == 1604474914028000
    assert parsed.export_type == "FULL_EXPORT"
    assert parsed.item_count == 8
    assert parsed.files_key == FOLDER + "manifest-files.json"
    assert parsed.export_id == "01604474914028-a1b2c3d4"
    assert parsed.table_name == "orders"


def test_incremental_summary_fields_are_read() -> None:
    body = summary(
        exportTime=...,
        version="2023-08-01",
        exportType="INCREMENTAL_EXPORT",
        exportFromTime="2020-11-04T07:00:00.000Z",
        exportToTime="2020-11-04T08:00:00.000Z",
        outputView="NEW_IMAGE",
    )
    parsed = parse_summary(body, "src", FOLDER, "exports/")
    assert (parsed.from_us, parsed.to_us) == (1604473200000000, 1604476800000000)
    assert parsed.output_view == "NEW_IMAGE"
    assert parsed.incremental


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exportTime": ...}, "exportTime is missing"),
        ({"manifestFilesS3Key": ...}, "manifestFilesS3Key is missing"),
        ({"itemCount": "8"}, "itemCount is missing or not a int"),
        ({"tableArn": ...}, "tableArn is missing"),
        ({"tableArn": "orders"}, "is not a table ARN"),
        ({"version": ...}, "version is missing"),
        ({"exportArn": ...}, "exportArn is missing"),
        ({"exportType": "SOMETHING"}, "unknown exportType"),
        ({"exportTime": "yesterday"}, "not an ISO-8601 time"),
        ({"exportTime": "2020-11-04T07:28:34"}, "has no time zone"),
        ({"outputFormat": "ION"}, "outputFormat ION is not supported"),
        (
            {"exportType": "INCREMENTAL_EXPORT", "exportFromTime": "2020-11-04T07:00:00Z"},
            "exportToTime is missing",
        ),
        (
            {
                "exportType": "INCREMENTAL_EXPORT",
                "exportFromTime": "2020-11-04T07:00:00Z",
                "exportToTime": "2020-11-04T08:00:00Z",
                "outputView": "KEYS_ONLY",
            },
            "unknown outputView",
        ),
        (
            {
                "exportType": "INCREMENTAL_EXPORT",
                "exportFromTime": "2020-11-04T08:00:00Z",
                "exportToTime": "2020-11-04T07:00:00Z",
                "outputView": "NEW_IMAGE",
            },
            "exportToTime is not after exportFromTime",
        ),
    ],
)
def test_a_summary_missing_what_an_import_needs_is_one_error_naming_it(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ExportFormatError, match=message) as error:
        parse_summary(summary(**changes), "src", FOLDER, "exports/")
    assert f"s3://src/{FOLDER}manifest-summary.json" in str(error.value)


def test_a_summary_that_is_not_json_names_the_file() -> None:
    with pytest.raises(ExportFormatError, match=re.escape("manifest-summary.json: not JSON")):
        parse_summary(b"{oops", "src", FOLDER, "exports/")


def files_body(*entries: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in entries)


ENTRY = {
    "itemCount": 8,
    "md5Checksum": "sQMSpEILNgoQmarvDFonGQ==",
    "etag": "af83d6f217c19b8b0fff8023d8ca4716-1",
    "dataFileS3Key": FOLDER + "data/33334444EXAMPLE.json.gz",
}


def test_files_manifest_lists_data_files_where_they_are_now() -> None:
    # GIVEN an export copied from exports/ to moved/ (manifests still say exports/...)
    parsed = parse_summary(summary(), "src", "moved/AWSDynamoDB/01604474914028-a1b2c3d4/", "moved/")
    files = parse_files_manifest(files_body(ENTRY), parsed)
    # THEN the data file is read from its new place
    assert files == [
        ExportFile(
            "moved/AWSDynamoDB/01604474914028-a1b2c3d4/data/33334444EXAMPLE.json.gz",
            8,
            ENTRY["md5Checksum"],
            ENTRY["etag"],
        )
    ]
    assert parsed.files_key == "moved/AWSDynamoDB/01604474914028-a1b2c3d4/manifest-files.json"


def test_files_manifest_counts_must_add_up_to_the_summary() -> None:
    parsed = parse_summary(summary(itemCount=9), "src", FOLDER, "exports/")
    with pytest.raises(
        ExportIntegrityError, match=re.escape("hold 8 items, manifest-summary.json says 9")
    ):
        parse_files_manifest(files_body(ENTRY), parsed)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**ENTRY, "md5Checksum": "not base64!"}, "md5Checksum 'not base64!' is not base64"),
        ({**ENTRY, "md5Checksum": "AAAA"}, "itemCount or md5Checksum is invalid"),
        ({k: v for k, v in ENTRY.items() if k != "dataFileS3Key"}, "dataFileS3Key is missing"),
        ({**ENTRY, "itemCount": -1}, "itemCount or md5Checksum is invalid"),
    ],
)
def test_a_bad_files_manifest_line_names_its_line(entry: dict[str, Any], message: str) -> None:
    parsed = parse_summary(summary(), "src", FOLDER, "exports/")
    with pytest.raises(ExportFormatError, match=message) as error:
        parse_files_manifest(b"\n" + files_body(entry), parsed)
    assert f"{FOLDER}manifest-files.json line 2" in str(error.value)


def test_resolving_keys() -> None:
    # full keys under the recorded prefix move with the export; keys without it are relative
    assert (
        resolve_key("p/AWSDynamoDB/x/data/a.json.gz", "p", "q/") == "q/AWSDynamoDB/x/data/a.json.gz"
    )
    assert (
        resolve_key("AWSDynamoDB/x/data/a.json.gz", "p", "q/") == "q/AWSDynamoDB/x/data/a.json.gz"
    )
    assert resolve_key("AWSDynamoDB/data/a.json.gz", "", "") == "AWSDynamoDB/data/a.json.gz"
    assert resolve_key("elsewhere/a.json.gz", "p", "q/") == "elsewhere/a.json.gz"


def test_table_arns_compare_by_name_only_when_one_has_no_account() -> None:
    assert same_table(TABLE_ARN, "arn:aws:dynamodb:::table/orders")
    assert not same_table(TABLE_ARN, "arn:aws:dynamodb:eu-west-1:123456789012:table/orders")
    assert not same_table(TABLE_ARN, "arn:aws:dynamodb:::table/users")


def test_times() -> None:
    assert parse_time_us("2020-11-04T07:28:34.028Z", "w", "t") == 1604474914028000
    assert parse_time_us("2020-11-04T07:28:34.028123+00:00", "w", "t") == 1604474914028123
    assert parse_time_us(1604474914.5, "w", "t") == 1604474914500000


def test_md5_files_may_be_base64_or_hex() -> None:
    assert md5_matches(md5_b64(b"abc"), b"abc")
    assert md5_matches("900150983cd24fb0d6963f7d28e17f72\n", b"abc")
    assert not md5_matches(md5_b64(b"abd"), b"abc")


# ---- lines ----------------------------------------------------------------------------

RICH = {
    "pk": {"S": "a/../ü"},
    "sk": {"N": "-12345678901234567890123456789012345678"},
    "tiny": {"N": "1.2345678901234567890123456789012345678E-120"},
    "bin": {"B": "AAECA/8="},
    "bs": {"BS": ["AAE=", "/w=="]},
    "ns": {"NS": ["1", "99999999999999999999999999999999999999"]},
    "ss": {"SS": ["", "x"]},
    "nested": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {"e": {"S": ""}}}]}}},
}


def test_item_lines_keep_every_value_exactly() -> None:
    raw = json.dumps({"Item": RICH}).encode()
    assert parse_item_line(raw, "f line 1") == RICH


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "f line 3: not a JSON line"),
        (b"[1]", "f line 3: not a JSON object"),
        (b'{"Item": {"a": {"N": "1e999"}}}', "f line 3: Item.a: '1e999' is outside"),
        (b'{"Item": {"a": {"X": "1"}}}', "f line 3: Item.a: unknown DynamoDB type tag"),
        (b'{"Item": {"a": {"S": "x"}}, "Extra": 1}', 'f line 3: expected {"Item": ...}'),
        (b"", "f line 3: not a JSON line"),
        (b'{"Item": {"a": {"B": "!!"}}}', "f line 3: Item.a: '!!' is not valid base64"),
    ],
)
def test_a_malformed_item_line_names_its_line(raw: bytes, message: str) -> None:
    with pytest.raises(ExportFormatError, match=message.replace("{", r"\{").replace("(", r"\(")):
        parse_item_line(raw, "f line 3")


def test_change_lines() -> None:
    keys = {"pk": {"S": "a"}}
    raw = json.dumps(
        {
            "Metadata": {"WriteTimestampMicros": {"N": "1604474914028123"}},
            "Keys": keys,
            "OldImage": {**keys, "v": {"N": "1"}},
            "NewImage": {**keys, "v": {"N": "2"}},
        }
    ).encode()
    line = parse_change_line(raw, "f line 1")
    assert line.write_us == 1604474914028123
    assert line.new_image == {**keys, "v": {"N": "2"}}
    assert line.old_image == {**keys, "v": {"N": "1"}}
    deleted = parse_change_line(
        json.dumps({"Metadata": {"WriteTimestampMicros": {"N": "5"}}, "Keys": keys}).encode(), "f"
    )
    assert deleted.new_image is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"Keys": {"pk": {"S": "a"}}}, "WriteTimestampMicros is missing"),
        (
            {"Metadata": {"WriteTimestampMicros": {"N": "-5"}}, "Keys": {"pk": {"S": "a"}}},
            "invalid",
        ),
        ({"Metadata": {"WriteTimestampMicros": {"N": "5"}}}, "Keys: expected a map"),
        ({"Metadata": {"WriteTimestampMicros": {"N": "5"}}, "Keys": {}}, "Keys is empty"),
        (
            {"Metadata": {"WriteTimestampMicros": {"N": "5"}}, "Keys": {"pk": {"S": "a"}}, "X": 1},
            "unexpected fields",
        ),
        (
            {
                "Metadata": {"WriteTimestampMicros": {"N": "5"}},
                "Keys": {"pk": {"S": "a"}},
                "NewImage": {"pk": {"SS": []}},
            },
            "NewImage.pk: SS must be a non-empty list",
        ),
    ],
)
def test_a_malformed_change_line_names_its_line(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportFormatError, match=message) as error:
        parse_change_line(json.dumps(doc).encode(), "f line 9")
    assert str(error.value).startswith("f line 9: ")


# ---- data files -----------------------------------------------------------------------


class FakeS3:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def get_object(self, **_: Any) -> dict[str, Any]:
        import io

        return {"ETag": '"e"', "Body": io.BytesIO(self.body)}


def read(body: bytes, count: int, md5: str | None = None) -> list[tuple[int, bytes]]:
    data_file = ExportFile("d/x.json.gz", count, md5 or md5_b64(body), None)
    return list(DataFileReader(FakeS3(body), "src", data_file))


def test_data_file_lines_stream_through_gzip_members() -> None:
    # GIVEN a data file of two gzip members (a writer that appended)
    body = gzip.compress(b"a\nb\n") + gzip.compress(b"c\n")
    assert read(body, 3) == [(1, b"a"), (2, b"b"), (3, b"c")]


def test_empty_data_files_have_no_lines() -> None:
    assert read(gzip.compress(b""), 0) == []
    assert read(b"", 0) == []


def test_a_changed_data_file_fails_its_md5() -> None:
    with pytest.raises(ExportIntegrityError, match=r"s3://src/d/x.json.gz: MD5 .* does not match"):
        read(gzip.compress(b"a\n"), 1, md5=md5_b64(b"other"))


def test_line_count_must_match_item_count() -> None:
    with pytest.raises(
        ExportIntegrityError, match=re.escape("2 lines, manifest-files.json says itemCount 3")
    ):
        read(gzip.compress(b"a\nb\n"), 3)


def test_a_truncated_gzip_is_refused() -> None:
    body = gzip.compress(b"a\nb\n" * 100)[:-8]
    with pytest.raises(ExportIntegrityError, match="truncated"):
        read(body, 200)


def test_a_file_that_is_not_gzip_is_refused() -> None:
    with pytest.raises(ExportFormatError, match=re.escape("s3://src/d/x.json.gz: not a gzip file")):
        read(b"plain text\n", 1)


def test_gaps_between_exports() -> None:
    # a full export at 10, windows [10, 20), [15, 30) overlap; [40, 50) leaves a gap
    spans = [(10, 10, "full"), (10, 20, "w1"), (15, 30, "w2"), (40, 50, "w3"), (12, 14, "w0")]
    gaps = find_gaps(spans)
    assert [(g.start_us, g.end_us, g.after, g.before) for g in gaps] == [(30, 40, "w2", "w3")]
    assert find_gaps([(10, 10, "full"), (11, 20, "w1")])[0].start_us == 10
    assert find_gaps([(10, 20, "w1"), (5, 5, "full")]) == [
        find_gaps([(5, 5, "full"), (10, 20, "w1")])[0]
    ]


class Dropping:
    """Serves a body whose connection drops after `cut` bytes, `drops` times."""

    def __init__(self, body: bytes, cut: int, drops: int) -> None:
        self.body, self.cut, self.drops = body, cut, drops
        self.calls: list[dict[str, Any]] = []

    def get_object(self, **args: Any) -> dict[str, Any]:
        import io

        from botocore.exceptions import ReadTimeoutError

        self.calls.append(args)
        start = int(args["Range"].split("=")[1].rstrip("-")) if "Range" in args else 0
        data = self.body[start:]
        parent = self

        class Body:
            def __init__(self) -> None:
                self._stream = io.BytesIO(data)
                self._served = 0

            def read(self, size: int) -> bytes:
                if parent.drops and self._served >= parent.cut:
                    parent.drops -= 1
                    raise ReadTimeoutError(endpoint_url="http://s3")
                chunk = self._stream.read(min(size, max(1, parent.cut)))
                self._served += len(chunk)
                return chunk

        return {"ETag": '"e1"', "Body": Body()}


def test_a_dropped_connection_resumes_where_it_stopped() -> None:
    body = gzip.compress(b"".join(b"line %d\n" % i for i in range(500)))
    s3 = Dropping(body, cut=len(body) // 3, drops=2)
    data_file = ExportFile("d/x.json.gz", 500, md5_b64(body), None)
    lines = list(DataFileReader(s3, "src", data_file))
    assert [n for n, _ in lines] == list(range(1, 501))
    assert lines[-1][1] == b"line 499"
    # the later reads were ranged and pinned to the object first read
    assert "Range" not in s3.calls[0]
    assert s3.calls[1]["Range"] == f"bytes={len(body) // 3}-"
    assert s3.calls[2]["IfMatch"] == '"e1"'


def test_a_connection_that_keeps_dropping_is_one_error() -> None:
    body = gzip.compress(b"a\n" * 1000)
    s3 = Dropping(body, cut=10, drops=99)
    data_file = ExportFile("d/x.json.gz", 1000, md5_b64(body), None)
    with pytest.raises(StorageError, match=r"s3://src/d/x\.json\.gz: reading failed 3 times"):
        list(DataFileReader(s3, "src", data_file))
