"""The steps of each job that the suite attacks: one per distinct API call site.

A step names the operation and, where one operation serves several steps, which of its
requests belong to the step (by URL). New call sites get a line here and are then covered
by every fault that fits their service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botocore.awsrequest import AWSPreparedRequest

from tests.faults.injector import (
    BODY_RESET,
    BODY_SHORT,
    PERSISTENT,
    Fault,
    FaultInjector,
    Rule,
    Storm,
)

Where = Callable[[AWSPreparedRequest], bool]


def url_has(*parts: str, without: tuple[str, ...] = ()) -> Where:
    def where(request: AWSPreparedRequest) -> bool:
        return all(p in request.url for p in parts) and not any(w in request.url for w in without)

    return where


def body_has(*parts: str, without: tuple[str, ...] = ()) -> Where:
    def where(request: AWSPreparedRequest) -> bool:
        body = request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        return all(p in text for p in parts) and not any(w in text for w in without)

    return where


@dataclass(frozen=True)
class Step:
    name: str
    service: str
    operation: str
    where: Where | None = None
    writes: bool = False  # changes state on the server: a lost response is its own case
    body: bool = False  # a GET whose payload the caller reads

    @property
    def id(self) -> str:
        return self.name.replace(" ", "-")

    def body_faults(self) -> tuple[Fault, ...]:
        return (BODY_RESET, BODY_SHORT) if self.body else ()


ITEMS = "/v1/items/"

# S3's clock and the bucket's versioning: one GetBucketVersioning per run (compaction.clock)
BUCKET_CHECK = Step("bucket check", "s3", "GetBucketVersioning")
# a build's lease in its run folder (written first, renewed while it runs) and the HEADs
# that confirm every listed file before the manifest is written
LEASE_PUT = Step("lease put", "s3", "PutObject", url_has("/lease.json"), writes=True)
COMMIT_HEADS = Step("commit files head", "s3", "HeadObject", url_has("/snapshots/"))

# Reading the state as of a time (compact, restore): the base snapshot and the object
# versions after it
STATE_READS = (
    Step("manifest get", "s3", "GetObject", url_has("/manifest.json"), body=True),
    Step("snapshot ids list", "s3", "ListObjectsV2", url_has("delimiter=")),
    Step("items probe", "s3", "ListObjectsV2", url_has("max-keys=1&")),
    Step("versions page 1", "s3", "ListObjectVersions", url_has("items", without=("marker",))),
    Step("versions page 2+", "s3", "ListObjectVersions", url_has("items", "key-marker")),
    Step("item version get", "s3", "GetObject", url_has(ITEMS, "versionId="), body=True),
    Step("base parquet get", "s3", "GetObject", url_has("/parquet/"), body=True),
    Step("base tombstones get", "s3", "GetObject", url_has("/tombstones/"), body=True),
)

# compact (incremental: from a base snapshot, with removals, so it reads and writes every
# kind of file)
COMPACT = (
    *STATE_READS,
    Step("key schema describe", "dynamodb", "DescribeTable"),
    Step("tombstones put", "s3", "PutObject", url_has("/tombstones/"), writes=True),
    Step("export data put", "s3", "PutObject", url_has("/export/data/"), writes=True),
    Step("export manifests put", "s3", "PutObject", url_has("/export/AWSDynamoDB/"), writes=True),
    Step("parquet put", "s3", "PutObject", url_has("/parquet/"), writes=True),
    Step("manifest commit", "s3", "PutObject", url_has("/manifest.json"), writes=True),
    Step("commit race check", "s3", "ListObjectVersions", url_has("manifest.json")),
    BUCKET_CHECK,
    LEASE_PUT,
    COMMIT_HEADS,
)

# restore into a missing table (--create-table --verify): a bulk load
TARGET_DESCRIBE = Step("target describe", "dynamodb", "DescribeTable")
BATCH_WRITE = Step("batch write", "dynamodb", "BatchWriteItem", writes=True)
BASE_FILES_HEAD = Step("base files head", "s3", "HeadObject", url_has("/snapshots/"))
RESTORE_BULK = (
    *STATE_READS,
    BASE_FILES_HEAD,
    TARGET_DESCRIBE,
    Step("target create", "dynamodb", "CreateTable", writes=True),
    BATCH_WRITE,
    Step("verify scan", "dynamodb", "Scan", body_has('"Segment"')),
)
# restore into a table holding other data: a diff restore (puts and deletes); the one
# consistent segmented scan of the target also decides bulk or diff (no Scan Limit=1)
RESTORE_DIFF = (
    *STATE_READS,
    BASE_FILES_HEAD,
    TARGET_DESCRIBE,
    Step("target scan", "dynamodb", "Scan", body_has('"Segment"')),
    BATCH_WRITE,
)

# the backup Lambda: a cold start checks the bucket's versioning and declares journal
# coverage (once per table), each batch is one journal object, then each change is a
# PutObject of its item's object
COVERAGE_PUT = Step(
    "coverage marker put", "s3", "PutObject", url_has("/v1/journal-coverage/"), writes=True
)
JOURNAL_PUT = Step("journal put", "s3", "PutObject", url_has("/v1/journal/"), writes=True)
ITEM_PUT = Step("item put", "s3", "PutObject", url_has(ITEMS), writes=True)
LAMBDA_WRITES = (COVERAGE_PUT, JOURNAL_PUT, ITEM_PUT)
LAMBDA = (*LAMBDA_WRITES, BUCKET_CHECK)  # the versioning check: once per cold start

# import-export: a full export (a committed snapshot, as compaction commits one) and an
# incremental export (changes through the Lambda's writer), each file checked first
IMPORT = (
    Step("exports list", "s3", "ListObjectsV2", url_has("AWSDynamoDB", "delimiter=")),
    Step("export summary get", "s3", "GetObject", url_has("manifest-summary.json")),
    Step("export checksum get", "s3", "GetObject", url_has(".md5")),
    Step("export files manifest get", "s3", "GetObject", url_has("manifest-files.json")),
    Step("export data get", "s3", "GetObject", url_has("AWSDynamoDB/", ".json.gz"), body=True),
    Step("import records list", "s3", "ListObjectsV2", url_has("imports", "delimiter=")),
    Step("import markers list", "s3", "ListObjectsV2", url_has("imports", "files%2F")),
    Step("key schema describe", "dynamodb", "DescribeTable"),
    Step("snapshot ids list", "s3", "ListObjectsV2", url_has("snapshots", "delimiter=")),
    Step("manifest get", "s3", "GetObject", url_has("/manifest.json")),
    Step("export data put", "s3", "PutObject", url_has("/export/data/"), writes=True),
    Step("parquet put", "s3", "PutObject", url_has("/parquet/"), writes=True),
    Step("export manifests put", "s3", "PutObject", url_has("/export/AWSDynamoDB/"), writes=True),
    Step("manifest commit", "s3", "PutObject", url_has("/manifest.json"), writes=True),
    Step("commit race check", "s3", "ListObjectVersions", url_has("manifest.json")),
    JOURNAL_PUT,
    ITEM_PUT,
    Step("import marker put", "s3", "PutObject", url_has("/imports/", "/files/"), writes=True),
    Step(
        "import record put",
        "s3",
        "PutObject",
        url_has("/imports/", without=("/files/",)),
        writes=True,
    ),
    BUCKET_CHECK,
    LEASE_PUT,
    COMMIT_HEADS,
)

# query: the newest snapshot as it is (its files downloaded at their pinned versions), or
# exactly the state as of a time (the state reads)
QUERY_NEWEST = (
    Step("snapshot ids list", "s3", "ListObjectsV2", url_has("delimiter=")),
    STATE_READS[0],  # manifest get
    Step("snapshot file get", "s3", "GetObject", url_has("/run-", "versionId="), body=True),
)
QUERY_AS_OF = STATE_READS

# backfill: describe the source (stream on? keys?), scan it in segments, write each page as
# changes (the Lambda's writer: journal object, then item objects), then the run's record
BACKFILL = (
    Step("source describe", "dynamodb", "DescribeTable"),
    Step("source scan", "dynamodb", "Scan"),
    JOURNAL_PUT,
    ITEM_PUT,
    Step("record put", "s3", "PutObject", url_has("/backfills/"), writes=True),
    BUCKET_CHECK,
)


def persistent_cases(steps: tuple[Step, ...]) -> list[tuple[Step, Fault]]:
    """Each step with one persistent fault, the faults of its service in turn."""
    cases = []
    for index, step in enumerate(steps):
        choices = PERSISTENT[step.service]
        cases.append((step, choices[index % len(choices)]))
    return cases


def raise_storm(
    faults: FaultInjector, storm: Storm, steps: tuple[Step, ...], times: int
) -> list[tuple[Step, Rule]]:
    """Every step fails `times` times in a row with the storm's fault for its service."""
    return [
        (
            step,
            faults.inject(
                step.service,
                step.operation,
                storm.fault_for(step.service),
                times=times,
                where=step.where,
            ),
        )
        for step in steps
        if step.writes or not storm.writes_only
    ]


def unmet(rules: list[tuple[Step, Rule]]) -> list[str]:
    """Steps whose fault never struck as often as asked (a step the run did not reach)."""
    return [step.name for step, rule in rules if rule.struck != rule.times]
