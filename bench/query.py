"""Query benchmark: a snapshot of N small items (1M by default) queried with DuckDB through
our Parquet, against the same queries over the snapshot's DynamoDB-JSON lines.

    python -m bench.query [--items 1000000] [--runs 5] [--endpoint URL]

The snapshot is built with the compactor's own writers and committed with a manifest, so
the S3 figures go through `ddb-backup query`'s code path (SqlSession: the snapshot's
Parquet files downloaded at their pinned versions and verified, into a cache keyed by
SHA-256). `open_cold_s` is opening the snapshot with an empty cache (download + verify),
`open_warm_s` a second session over the filled cache (checksums only). The Parquet/JSON
ratio is measured on local copies of the same files, so that it compares formats, not the
S3 server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb

from backup_lambda.layout import Change, key_hash
from bench.common import (
    PREFIX,
    TABLE,
    RequestCounter,
    clients,
    env_endpoint,
    make_bucket,
    s3_server,
)
from compaction import catalog
from compaction.columns import choose_columns, collect
from compaction.filecache import FileCache
from compaction.fold import Row
from compaction.manifest import Column, Counts, KeyAttribute, Manifest, snapshot_id
from compaction.rowformat import DATA_LAYOUT
from compaction.snapshot_io import rows_table, upload, write_export, write_parquet
from jobs.query.sql import SqlSession

CHUNK = 250_000
LOOKUP = "user#00012345"


def small_item(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"user#{i:08d}"},
        "sk": {"N": str(i % 5)},
        "status": {"S": ("new", "paid", "shipped", "void")[i % 4]},
        "amount": {"N": f"{i % 1000}.{i % 100:02d}"},
        "country": {"S": ("de", "fr", "us", "jp", "br")[i % 5]},
    }


def build_snapshot(
    s3: Any, bucket: str, items: int, work: Path
) -> tuple[Manifest, list[Path], list[Path]]:
    """Chunks of rows -> Parquet + JSON lines files, uploaded, then a committed manifest."""
    as_of = int(time.time() * 1_000_000)
    sid, run = snapshot_id(as_of), uuid.uuid4().hex[:12]
    root = catalog.run_prefix(PREFIX, TABLE, sid, run)
    files, parquet_paths, json_paths = [], [], []
    columns: list[Column] | None = None
    for n, start in enumerate(range(0, items, CHUNK)):
        rows = []
        for i in range(start, min(items, start + CHUNK)):
            item = small_item(i)
            keys = {"pk": item["pk"], "sk": item["sk"]}
            change = Change(TABLE, keys, "INSERT", "", str(10**20 + i), as_of - 1000, item)
            rows.append(Row(key_hash(keys), change, "v1", as_of - 1000))
        rows.sort(key=lambda r: r.key_hash)
        if columns is None:
            stats = collect(r.change.new_image or {} for r in rows)
            columns = [Column(a, t) for a, t in choose_columns(stats, ["pk", "sk"])]
        spill = rows_table(rows)
        parquet, lines = work / f"part-{n}.parquet", work / f"part-{n}.json.gz"
        count = write_parquet(parquet, spill, columns)
        write_export(lines, spill)
        unit = f"{n:x}"
        files.append(
            upload(
                s3, bucket, parquet, f"{root}parquet/part-{unit}.parquet", "parquet", unit, count
            )
        )
        files.append(
            upload(
                s3, bucket, lines, f"{root}export/data/part-{unit}.json.gz", "json.gz", unit, count
            )
        )
        parquet_paths.append(parquet)
        json_paths.append(lines)
    manifest = Manifest(
        id=sid,
        table=TABLE,
        as_of_us=as_of,
        built_at_us=as_of,
        listing_watermark_us=as_of,
        base=None,
        shard_digits=1,
        key_schema=(KeyAttribute("pk", "S", "HASH"), KeyAttribute("sk", "N", "RANGE")),
        key_schema_source="describe_table",
        columns=tuple(columns or ()),
        files=tuple(files),
        counts=Counts(items, items, items, items, 0),
        newest_event_time_us=as_of - 1000,
        run_id=run,
        data_layout=DATA_LAYOUT,
    )
    catalog.commit(s3, bucket, PREFIX, manifest)
    return manifest, parquet_paths, json_paths


def timed(con: duckdb.DuckDBPyConnection, sql: str, runs: int) -> tuple[float, list[float], Any]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = con.execute(sql).fetchall()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples, result


QUERIES = {
    "count": (
        "SELECT count(*) FROM items",
        "SELECT count(*) FROM lines",
    ),
    "group_by": (
        "SELECT status, count(*), sum(amount) FROM items GROUP BY status ORDER BY status",
        "SELECT Item.status.S AS status, count(*), sum(CAST(Item.amount.N AS DECIMAL(38,2))) "
        "FROM lines GROUP BY 1 ORDER BY 1",
    ),
    "point_lookup": (
        f"SELECT pk, sk, amount, country, status FROM items WHERE pk = '{LOOKUP}' AND sk = 0",
        f"SELECT Item FROM lines WHERE Item.pk.S = '{LOOKUP}' AND Item.sk.N = '0'",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--endpoint", default=env_endpoint())
    args = parser.parse_args()
    report: dict[str, Any] = {"items": args.items}
    with s3_server(args.endpoint) as endpoint, tempfile.TemporaryDirectory() as tmp:
        s3, _ = clients(endpoint, RequestCounter())
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        make_bucket(s3, bucket)
        started = time.perf_counter()
        manifest, parquet_paths, json_paths = build_snapshot(s3, bucket, args.items, Path(tmp))
        report["build_seconds"] = round(time.perf_counter() - started, 1)
        report["parquet_bytes"] = sum(f.bytes for f in manifest.files_of("parquet"))
        report["json_gz_bytes"] = sum(f.bytes for f in manifest.files_of("json.gz"))
        report["parquet_bytes_per_item"] = round(report["parquet_bytes"] / args.items, 1)
        report["json_gz_bytes_per_item"] = round(report["json_gz_bytes"] / args.items, 1)
        report["parquet_over_json_gz_bytes"] = round(
            report["parquet_bytes"] / report["json_gz_bytes"], 3
        )

        local = duckdb.connect()
        parquet_list = ", ".join(f"'{p}'" for p in parquet_paths)
        json_list = ", ".join(f"'{p}'" for p in json_paths)
        local.execute(f"CREATE VIEW items AS SELECT * FROM read_parquet([{parquet_list}])")
        local.execute(
            f"CREATE VIEW lines AS SELECT * FROM read_json([{json_list}], "
            "format='newline_delimited')"
        )
        cache = FileCache(Path(tmp) / "cache")
        for label in ("open_cold_s", "open_warm_s"):
            session = SqlSession(s3, bucket, PREFIX, TABLE, cache=cache)
            started = time.perf_counter()
            session.open_latest()
            report[label] = round(time.perf_counter() - started, 3)
            if label == "open_cold_s":
                session.close()
        for name, (sql_parquet, sql_json) in QUERIES.items():
            p_median, p_samples, p_result = timed(local, sql_parquet, args.runs)
            j_median, j_samples, j_result = timed(local, sql_json, args.runs)
            s_median, s_samples, s_result = timed(session.con, sql_parquet, args.runs)
            report[name] = {
                "parquet_local_s": round(p_median, 4),
                "json_lines_local_s": round(j_median, 4),
                "json_over_parquet": round(j_median / p_median, 1),
                "parquet_query_path_s": round(s_median, 4),
                "same_answer": len(p_result) == len(j_result) == len(s_result),
                "samples": {
                    "parquet": [round(s, 4) for s in p_samples],
                    "json": [round(s, 4) for s in j_samples],
                    "s3": [round(s, 4) for s in s_samples],
                },
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
