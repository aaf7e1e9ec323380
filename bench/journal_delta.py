"""Change journal and delta snapshots (issues #12 and #14), side by side on one table.

    python -m bench.journal_delta [--keys 3334] [--versions 3] [--runs 3] [--endpoint URL]

The table's history is written through the Lambda's ChangeWriter (a journal object per
batch of 100, then the item objects), after a journal coverage marker dated before the
first write, so the journal covers the whole history. Then, on that one table:

1. a full compaction (`compact --full`: lists every version) commits the base;
2. a zero-change "bridge" compaction (journal path) commits a delta on it: the first
   journal compaction after a listing-built base reads the journal back the 15-minute write
   lead, which here is the whole history; from then on a window starts at the base;
3. 1% of the keys change, then, alternating, `runs` times each: an incremental compaction
   on the journal path, one on the listing path (`compact --listing`), and a full
   compaction, each withdrawn after it is measured so all start from the same base (their
   items are compared: they must be identical);
4. a restore `--as-of` after the base with the 1% pending (journal window, no listing);
5. the changes are committed, then two `scheduled` runs find nothing new (requests counted: the
   first after a manual compact, which refreshes the scheduled state, and the steady state);
6. a fresh full snapshot, then 7 delta compactions of 1% each, and a full snapshot as of
   the 7th delta's time: restore and query from the chain vs from the full snapshot,
   alternating `runs` times (answers compared).

Requests come from botocore event hooks (LIST = ListObjectVersions + ListObjectsV2);
bytes written are the Content-Length of every PUT/POST (snapshot files, manifests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backup_lambda.journal import COVERAGE, write_marker
from backup_lambda.layout import Change
from backup_lambda.writer import ChangeWriter
from bench.common import (
    PREFIX,
    TABLE,
    RequestCounter,
    Sequence,
    clients,
    env_endpoint,
    generate,
    make_bucket,
    s3_server,
)
from bench.compaction import ROUND_GAP_S, now_us, rows_of, withdraw
from bench.restore import create_table
from compaction.compactor import CompactionConfig, Compactor
from compaction.filecache import FileCache
from jobs.ops.schedule_table import ScheduleConfig
from jobs.ops.scheduled import run_compactions
from jobs.query.sql import SqlSession
from jobs.restore.restorer import RestoreOptions, Restorer

BATCH = 100  # records per Lambda invocation (the deploy template's batch size)
WRITERS = 4  # invocations at once (stream shards)
LOOKUP = "user#00000042"
QUERIES = {
    "count": "SELECT count(*) FROM items",
    "group_by": "SELECT status, count(*), sum(amount) FROM items GROUP BY status ORDER BY status",
    "point_lookup": f"SELECT __item FROM items WHERE pk = '{LOOKUP}' AND sk = 0",
}


def journal_changes(s3: Any, bucket: str, changes: list[Change]) -> float:
    """Write changes as the Lambda does: batches of BATCH through one ChangeWriter, WRITERS
    batches at once; one key's changes stay in one batch sequence (rounds are written one
    after another by the caller). Returns seconds."""
    writer = ChangeWriter(s3, bucket, PREFIX, max_workers=16, writer="bench")
    batches = [changes[i : i + BATCH] for i in range(0, len(changes), BATCH)]

    def write(batch: list[Change]) -> None:
        result = writer.write(batch)
        if result.failed:
            raise RuntimeError(f"{len(result.failed)} changes not written: {result.failed[0]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, batches))
    return time.perf_counter() - started


def round_of(keys: list[int], version: int, seq: Sequence) -> list[Change]:
    changes = []
    for i in keys:
        change = generate(range(i, i + 1), 1, now_us(), 0, seq)[0]
        assert change.new_image is not None
        change.new_image["version"] = {"N": str(version)}
        changes.append(change)
    return changes


def counted(counter: RequestCounter, work: Callable[[], Any]) -> tuple[Any, float, dict[str, int]]:
    counter.reset()
    started = time.perf_counter()
    value = work()
    seconds = time.perf_counter() - started
    calls = counter.reset()
    lists = calls["ListObjectVersions"] + calls["ListObjectsV2"]
    gets = calls["GetObject"] + calls["HeadObject"]
    puts = calls["PutObject"] + calls["CreateMultipartUpload"] + calls["UploadPart"]
    puts += calls["CompleteMultipartUpload"]
    requests = {
        "list": lists,
        "list_object_versions": calls["ListObjectVersions"],
        "get": gets,
        "put": puts,
        "all_s3": sum(v for k, v in calls.items() if k != RequestCounter.BYTES_SENT),
        "bytes_put": calls[RequestCounter.BYTES_SENT],
        "by_operation": {k: v for k, v in sorted(calls.items()) if k != RequestCounter.BYTES_SENT},
    }
    return value, seconds, requests


def compact(
    s3: Any, bucket: str, as_of: int, counter: RequestCounter, **config: Any
) -> dict[str, Any]:
    settings = CompactionConfig(workers=4, read_concurrency=32, **config)
    result, seconds, requests = counted(
        counter, lambda: Compactor(s3, bucket, TABLE, prefix=PREFIX, config=settings).run(as_of)
    )
    m = result.manifest
    assert result.created, f"no new snapshot as of {as_of}"
    requests.pop("by_operation")
    return {
        "seconds": seconds,
        **requests,
        "requests": requests["list"] + requests["get"] + requests["put"],
        "change_source": m.change_source,
        "kind": m.kind,
        "depth": m.depth,
        "snapshot_file_bytes": m.total_bytes,
        "changed_keys": m.counts.changed_keys,
        "items": m.counts.items,
        "manifest": m,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    chosen = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    out = {k: v for k, v in chosen.items() if k != "manifest"}
    out["median_seconds"] = round(chosen["seconds"], 3)
    out["samples"] = [round(r["seconds"], 3) for r in runs]
    del out["seconds"]
    return out


def restore(
    s3: Any,
    dynamodb: Any,
    bucket: str,
    counter: RequestCounter,
    as_of: int,
    snapshot: str | None = None,
) -> dict[str, Any]:
    target = f"r-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, target)
    options = RestoreOptions(
        as_of_us=as_of, workers=8, read_concurrency=32, snapshot=snapshot, allow_empty=True
    )
    report, seconds, requests = counted(
        counter,
        lambda: Restorer(
            s3, dynamodb, bucket, TABLE, target, prefix=PREFIX, options=options, announce=_quiet
        ).run(),
    )
    return {
        "seconds": seconds,
        "target": target,
        "items": report.state_items,
        "change_source": report.change_source,
        **{k: v for k, v in requests.items() if k != "bytes_put"},
    }


def _quiet(_: str) -> None:
    return None


def table_items(dynamodb: Any, name: str) -> list[str]:
    items = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=name):
        items += [json.dumps(i, sort_keys=True) for i in page["Items"]]
    return sorted(items)


def query(
    s3: Any, bucket: str, snapshot: str, workdir: Path, counter: RequestCounter
) -> dict[str, Any]:
    """A cold `query`: open the snapshot (download, verify, chain view) in a fresh cache,
    then the three queries."""
    cache = FileCache(workdir / uuid.uuid4().hex[:8])
    session = SqlSession(s3, bucket, PREFIX, TABLE, cache=cache)
    try:
        _, open_seconds, _ = counted(counter, lambda: session.open_latest(snapshot))
        answers, times = {}, {}
        for name, sql in QUERIES.items():
            started = time.perf_counter()
            rows = session.con.execute(sql).fetchall()
            answers[name] = [tuple(str(v) for v in row) for row in rows]
            times[name] = time.perf_counter() - started
    finally:
        session.close()
    total = open_seconds + sum(times.values())
    return {"seconds": total, "open_seconds": open_seconds, "times": times, "answers": answers}


def main() -> None:  # noqa: PLR0915 - one scenario, step by step
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=3334)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction changed")
    parser.add_argument("--chain", type=int, default=7, help="deltas in the chain")
    parser.add_argument("--endpoint", default=env_endpoint())
    args = parser.parse_args()
    report: dict[str, Any] = {"keys": args.keys, "versions": args.keys * args.versions}
    changed = max(1, int(args.keys * args.changed))
    step = args.keys // changed

    with s3_server(args.endpoint) as endpoint, tempfile.TemporaryDirectory() as tmp:
        counter = RequestCounter()  # S3 requests only: DynamoDB's are counted apart
        s3, _ = clients(endpoint, counter)
        _, dynamodb = clients(endpoint, RequestCounter())
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        make_bucket(s3, bucket)
        seq = Sequence()
        # The coverage marker first, dated now: every change below goes through the
        # ChangeWriter after it (the Lambda's own marker says now + 16 minutes, for
        # writers still running code without the journal; the bench has none).
        write_marker(s3, bucket, PREFIX, TABLE, COVERAGE, now_us(), "bench")
        load_seconds = 0.0
        for v in range(args.versions):
            if v:
                time.sleep(ROUND_GAP_S)
            load_seconds += journal_changes(s3, bucket, round_of(list(range(args.keys)), v, seq))
        time.sleep(ROUND_GAP_S)
        report["load_seconds"] = round(load_seconds, 1)

        # 1-2: the full base, then the bridge.
        base = compact(s3, bucket, now_us(), counter, full=True)
        time.sleep(ROUND_GAP_S)
        bridge = compact(s3, bucket, now_us(), counter)
        report["base_full"] = median_run([base])
        report["bridge_after_listing_base"] = median_run([bridge])

        # 3: 1% changed; journal vs listing vs full, alternating.
        keys_changed = list(range(0, args.keys, step))[:changed]
        journal_changes(s3, bucket, round_of(keys_changed, args.versions, seq))
        time.sleep(ROUND_GAP_S)
        t2 = now_us()
        runs: dict[str, list[dict[str, Any]]] = {"journal": [], "listing": [], "full": []}
        rows: dict[str, Any] = {}
        settings = {"journal": {}, "listing": {"listing": True}, "full": {"full": True}}
        for i in range(args.runs):
            for n, (name, config) in enumerate(settings.items()):
                run = compact(s3, bucket, t2 + 3 * i + n, counter, **config)
                if name not in rows:
                    rows[name] = rows_of(s3, bucket, run["manifest"])
                withdraw(s3, bucket, run["manifest"])
                runs[name].append(run)
        inc = {name: median_run(r) for name, r in runs.items()}
        full = inc["full"]
        journal, listing = inc["journal"], inc["listing"]
        report["incremental_1pct"] = {
            "changed_keys": changed,
            "journal": journal,
            "listing": listing,
            "full": full,
            "journal_requests_over_full": round(journal["requests"] / full["requests"], 4),
            "journal_time_over_full": round(journal["median_seconds"] / full["median_seconds"], 3),
            "listing_requests_over_full": round(listing["requests"] / full["requests"], 4),
            "listing_time_over_full": round(listing["median_seconds"] / full["median_seconds"], 3),
            "delta_bytes_put_over_full": round(journal["bytes_put"] / full["bytes_put"], 4),
            "delta_file_bytes_over_full": round(
                journal["snapshot_file_bytes"] / full["snapshot_file_bytes"], 4
            ),
            "identical_items": rows["journal"] == rows["listing"] == rows["full"],
        }

        # 4: restore --as-of after the base, the 1% pending in the journal.
        restored = restore(s3, dynamodb, bucket, counter, t2)
        report["restore_as_of_after_base"] = {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in restored.items()
            if k != "target"
        }
        report["restore_as_of_after_base"]["seconds_after_base"] = round(
            (t2 - bridge["manifest"].as_of_us) / 1e6, 1
        )

        # 5: the changes committed; a scheduled run then finds nothing new.
        compact(s3, bucket, now_us(), counter)
        time.sleep(2.5)
        schedule = ScheduleConfig(bucket, (TABLE,), PREFIX, settle_seconds=1)
        outcome, seconds, requests = counted(
            counter, lambda: run_compactions(s3, dynamodb, schedule)
        )
        report["scheduled_no_change"] = {
            "status": outcome[0]["status"],
            "seconds": round(seconds, 3),
            **{k: v for k, v in requests.items() if k != "bytes_put"},
        }
        # The first scheduled run after a manual `compact` finds its state object stale
        # (it names an older snapshot), lists the snapshots and rewrites it; every later
        # run with nothing new is the steady state the target is about.
        outcome, seconds, requests = counted(
            counter, lambda: run_compactions(s3, dynamodb, schedule)
        )
        report["scheduled_no_change_again"] = {
            "status": outcome[0]["status"],
            "seconds": round(seconds, 3),
            **{k: v for k, v in requests.items() if k != "bytes_put"},
        }

        # 6: a chain of deltas against a full snapshot at the same as-of.
        compact(s3, bucket, now_us(), counter, full=True)
        deltas = []
        for d in range(args.chain):
            offset = 1 + d  # different keys each time (with some overlap at small sizes)
            keys_d = [(k + offset * 7) % args.keys for k in keys_changed]
            journal_changes(s3, bucket, round_of(keys_d, args.versions + 1 + d, seq))
            time.sleep(ROUND_GAP_S)
            deltas.append(compact(s3, bucket, now_us(), counter))
        head = deltas[-1]["manifest"]
        full_same = compact(s3, bucket, head.as_of_us + 1, counter, full=True)
        same_rows = rows_of(s3, bucket, head) == rows_of(s3, bucket, full_same["manifest"])
        chain_restores, full_restores, chain_queries, full_queries = [], [], [], []
        for i in range(args.runs):
            a = restore(s3, dynamodb, bucket, counter, head.as_of_us, head.id)
            b = restore(s3, dynamodb, bucket, counter, head.as_of_us + 1, full_same["manifest"].id)
            if i == 0:
                same_restored = table_items(dynamodb, a["target"]) == table_items(
                    dynamodb, b["target"]
                )
            chain_restores.append(a)
            full_restores.append(b)
            work = Path(tmp)
            chain_queries.append(query(s3, bucket, head.id, work, counter))
            full_queries.append(query(s3, bucket, full_same["manifest"].id, work, counter))
        same_answers = all(
            c["answers"] == f["answers"] for c, f in zip(chain_queries, full_queries, strict=True)
        )

        def med(values: list[dict[str, Any]], field: str = "seconds") -> float:
            return statistics.median(v[field] for v in values)

        report["chain"] = {
            "deltas": [
                {
                    "kind": d["kind"],
                    "depth": d["depth"],
                    "change_source": d["change_source"],
                    "seconds": round(d["seconds"], 3),
                    "bytes_put": d["bytes_put"],
                    "requests": d["requests"],
                }
                for d in deltas
            ],
            "full_at_same_as_of": {
                "seconds": round(full_same["seconds"], 3),
                "bytes_put": full_same["bytes_put"],
                "requests": full_same["requests"],
                "snapshot_file_bytes": full_same["snapshot_file_bytes"],
            },
            "chain_file_bytes": sum(d["snapshot_file_bytes"] for d in deltas),
            "restore": {
                "items": chain_restores[0]["items"],
                "chain_median_seconds": round(med(chain_restores), 3),
                "full_median_seconds": round(med(full_restores), 3),
                "chain_over_full": round(med(chain_restores) / med(full_restores), 3),
                "samples": {
                    "chain": [round(r["seconds"], 3) for r in chain_restores],
                    "full": [round(r["seconds"], 3) for r in full_restores],
                },
                "chain_gets": chain_restores[0]["get"],
                "full_gets": full_restores[0]["get"],
                "same_items": same_restored,
            },
            "query": {
                "chain_median_seconds": round(med(chain_queries), 3),
                "full_median_seconds": round(med(full_queries), 3),
                "chain_over_full": round(med(chain_queries) / med(full_queries), 3),
                "chain_open_median_seconds": round(med(chain_queries, "open_seconds"), 3),
                "full_open_median_seconds": round(med(full_queries, "open_seconds"), 3),
                **{
                    f"{name}_chain_over_full": round(
                        statistics.median(q["times"][name] for q in chain_queries)
                        / statistics.median(q["times"][name] for q in full_queries),
                        2,
                    )
                    for name in QUERIES
                },
                "samples": {
                    "chain": [round(q["seconds"], 3) for q in chain_queries],
                    "full": [round(q["seconds"], 3) for q in full_queries],
                },
                "same_answers": same_answers,
            },
            "same_snapshot_rows": same_rows,
        }
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
