"""Compaction benchmark: requests, GETs per changed key, time against a plain parallel GET,
incremental against full, and peak memory at two table sizes.

    python -m bench.compaction [--keys 2000] [--versions 3] [--runs 3] [--endpoint URL]

Without --endpoint (or BENCH_S3_ENDPOINT) it runs on the embedded moto server.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backup_lambda.layout import items_prefix
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
    write_changes,
)
from compaction import catalog
from compaction.chain import chain_rows, load_chain
from compaction.compactor import CompactionConfig, Compactor

# Versions of one key are written this far apart: more than LastModified's 1 s resolution
# plus the 1 s skew allowance, as real traffic on an item mostly is.
ROUND_GAP_S = 2.5


def now_us() -> int:
    return int(time.time() * 1_000_000)


def load_history(s3: Any, bucket: str, keys: int, versions: int, seq: Sequence) -> None:
    for v in range(versions):
        if v:
            time.sleep(ROUND_GAP_S)
        changes = generate(range(keys), 1, now_us(), 0, seq)
        for change in changes:  # the round's version number in the item
            assert change.new_image is not None
            change.new_image["version"] = {"N": str(v)}
        write_changes(s3, bucket, changes)
    time.sleep(ROUND_GAP_S)


def plain_parallel_get(s3: Any, bucket: str, workers: int) -> float:
    """GET every object's current version once, with the same concurrency as compaction."""
    paginator = s3.get_paginator("list_objects_v2")
    keys = [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=items_prefix(PREFIX, TABLE))
        for o in page.get("Contents", [])
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: s3.get_object(Bucket=bucket, Key=k)["Body"].read(), keys))
    return time.perf_counter() - started


def plain_versioned_get(s3: Any, bucket: str, workers: int) -> float:
    """GET every key's newest version by its VersionId (as compaction reads), with the same
    concurrency: what the server charges for a versioned read, without compaction."""
    paginator = s3.get_paginator("list_object_versions")
    newest = [
        (v["Key"], v["VersionId"])
        for page in paginator.paginate(Bucket=bucket, Prefix=items_prefix(PREFIX, TABLE))
        for v in page.get("Versions", [])
        if v["IsLatest"]
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda kv: s3.get_object(Bucket=bucket, Key=kv[0], VersionId=kv[1])["Body"].read(),
                newest,
            )
        )
    return time.perf_counter() - started


def compact(
    s3: Any, bucket: str, as_of: int, full: bool, counter: RequestCounter
) -> dict[str, Any]:
    counter.reset()
    config = CompactionConfig(full=full, workers=4, read_concurrency=32)
    started = time.perf_counter()
    result = Compactor(s3, bucket, TABLE, prefix=PREFIX, config=config).run(as_of)
    seconds = time.perf_counter() - started
    requests = counter.reset()
    m = result.manifest
    return {
        "seconds": seconds,
        "list_calls": requests["ListObjectVersions"],
        "get_calls": requests["GetObject"],
        "put_calls": requests["PutObject"] + requests["CreateMultipartUpload"],
        "changed_keys": m.counts.changed_keys,
        "objects_read": m.counts.objects_read,
        "items": m.counts.items,
        "manifest": m,
    }


def withdraw(s3: Any, bucket: str, manifest: Any) -> None:
    """Bench only: remove a snapshot's manifest (every version) so it is not a base."""
    key = catalog.manifest_key(PREFIX, TABLE, manifest.id)
    versions = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    for v in versions:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])


def rows_of(s3: Any, bucket: str, manifest: Any) -> dict[str, tuple[str, int, str]]:
    """The snapshot's items (its chain resolved, for a delta)."""
    chain = load_chain(s3, bucket, PREFIX, TABLE, manifest)
    rows = {d: r for d, r in chain_rows(s3, bucket, chain, "").items() if not r.change.is_removal}
    return {
        d: (
            json.dumps(r.change.new_image, sort_keys=True),
            r.change.event_time_us,
            r.change.sequence_number,
        )
        for d, r in rows.items()
    }


def peak_rss_mb(
    endpoint: str, keys: int, versions: int, bucket: str | None = None
) -> tuple[float, float]:
    """(peak RSS, peak RSS over the process's RSS before compacting) of a separate process
    that only runs a full compaction of a table of `keys` items. The table is loaded by
    this process first, so generating it does not count; `bucket` reuses a loaded table."""
    if bucket is None:
        s3, _ = clients(endpoint, RequestCounter())
        bucket = f"rss-{uuid.uuid4().hex[:8]}"
        make_bucket(s3, bucket)
        changes = generate(range(keys), versions, now_us() - 10**9, 10**6, Sequence())
        write_changes(s3, bucket, changes)
        time.sleep(2.1)
    code = f"from bench.compaction import _rss_child; _rss_child({endpoint!r}, {bucket!r})"
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    values = dict(x.split("=", 1) for x in result.stdout.splitlines() if "_KB=" in x)
    peak, baseline = int(values["RSS_KB"]), int(values["BASELINE_KB"])
    return peak / 1024, (peak - baseline) / 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _rss_child(endpoint: str, bucket: str) -> None:
    """Imports and clients first; then the peak is reset (Linux: clear_refs 5) so that it
    is the compaction's own high-water mark, not the imports'."""
    import pyarrow.parquet  # noqa: F401 - loaded before the baseline

    s3, _ = clients(endpoint, RequestCounter())
    config = CompactionConfig(full=True, workers=4, shard_digits=1)
    compactor = Compactor(s3, bucket, TABLE, prefix=PREFIX, config=config)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        baseline = _status_kb("VmRSS")
    except OSError:  # no /proc: the peak includes the imports
        baseline = 0
    compactor.run(now_us())
    try:
        peak = _status_kb("VmHWM")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"RSS_KB={peak}")
    print(f"BASELINE_KB={baseline}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction changed")
    parser.add_argument("--endpoint", default=env_endpoint())
    parser.add_argument(
        "--rss-keys",
        default="500,2000",
        help="table sizes for peak RSS (the --keys size reuses the timed table)",
    )
    args = parser.parse_args()

    with s3_server(args.endpoint) as endpoint:
        counter = RequestCounter()
        s3, _ = clients(endpoint, counter)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        make_bucket(s3, bucket)
        seq = Sequence()
        print(f"S3 endpoint {endpoint}; {args.keys} keys x {args.versions} versions")
        load_history(s3, bucket, args.keys, args.versions, seq)
        t1 = now_us()

        full_runs = [compact(s3, bucket, t1 + i, True, counter) for i in range(args.runs)]
        # The two baselines alternate, so drift in the machine hits both alike.
        get_samples, vget_samples = [], []
        for _ in range(args.runs):
            get_samples.append(plain_parallel_get(s3, bucket, 32))
            vget_samples.append(plain_versioned_get(s3, bucket, 32))
        get_median = statistics.median(get_samples)
        vget_median = statistics.median(vget_samples)
        full = sorted(full_runs, key=lambda r: r["seconds"])[len(full_runs) // 2]

        changed = max(1, int(args.keys * args.changed))
        step = args.keys // changed
        later = generate(range(0, args.keys, step), 1, now_us(), 0, seq)[:changed]
        write_changes(s3, bucket, later)
        time.sleep(ROUND_GAP_S)
        t2 = now_us()
        # Incremental from the newest full snapshot at t1, side by side with a full run at
        # t2. Each run's manifest is withdrawn after it is measured (and its rows kept for
        # the comparison), so every incremental run starts from the same base.
        inc_runs, full2_runs = [], []
        inc_rows, full_rows = None, None
        for i in range(args.runs):
            inc = compact(s3, bucket, t2 + 2 * i, False, counter)
            inc_rows = inc_rows or rows_of(s3, bucket, inc["manifest"])
            withdraw(s3, bucket, inc["manifest"])
            full_again = compact(s3, bucket, t2 + 2 * i + 1, True, counter)
            full_rows = full_rows or rows_of(s3, bucket, full_again["manifest"])
            withdraw(s3, bucket, full_again["manifest"])
            inc_runs.append(inc)
            full2_runs.append(full_again)
        inc = sorted(inc_runs, key=lambda r: r["seconds"])[len(inc_runs) // 2]
        full2 = sorted(full2_runs, key=lambda r: r["seconds"])[len(full2_runs) // 2]
        same = inc_rows == full_rows

        timings_done = time.perf_counter()
        sizes = [int(x) for x in args.rss_keys.split(",") if x.strip()]
        # The size of the timed table reuses it (it is already loaded); others load one.
        rss = {
            n: peak_rss_mb(endpoint, n, args.versions, bucket if n == args.keys else None)
            for n in sizes
        }
        print(f"(peak RSS runs took {time.perf_counter() - timings_done:.0f}s)", file=sys.stderr)

    versions_total = args.keys * args.versions
    report = {
        "keys": args.keys,
        "versions": versions_total,
        "full": {
            "median_seconds": round(full["seconds"], 3),
            "samples": [round(r["seconds"], 3) for r in full_runs],
            "list_calls": full["list_calls"],
            "get_calls": full["get_calls"],
            "changed_keys": full["changed_keys"],
            "version_gets": full["objects_read"],
            "gets_per_changed_key": round(full["objects_read"] / max(1, full["changed_keys"]), 3),
        },
        "plain_parallel_get": {
            "median_seconds": round(get_median, 3),
            "samples": [round(s, 3) for s in get_samples],
            "objects": args.keys,
        },
        "plain_versioned_get": {
            "median_seconds": round(vget_median, 3),
            "samples": [round(s, 3) for s in vget_samples],
            "objects": args.keys,
        },
        "full_over_plain_get": round(full["seconds"] / get_median, 2),
        "full_over_versioned_get": round(full["seconds"] / vget_median, 2),
        "incremental": {
            "changed_keys": changed,
            "median_seconds": round(inc["seconds"], 3),
            "samples": [round(r["seconds"], 3) for r in inc_runs],
            "list_calls": inc["list_calls"],
            "get_calls": inc["get_calls"],
            "keys_with_new_versions": inc["changed_keys"],
            "version_gets": inc["objects_read"],
            "snapshot_file_gets": inc["get_calls"] - inc["objects_read"],
            "gets_per_changed_key": round(inc["objects_read"] / max(1, inc["changed_keys"]), 3),
            "full_at_same_time_seconds": round(full2["seconds"], 3),
            "time_fraction_of_full": round(inc["seconds"] / full2["seconds"], 3),
            "get_fraction_of_full": round(inc["get_calls"] / max(1, full2["get_calls"]), 4),
            "identical_to_full": same,
        },
        "peak_rss_mb (16 units, 4 at once)": {f"{n} keys": round(v[0], 1) for n, v in rss.items()},
        "rss_growth_while_compacting_mb": {f"{n} keys": round(v[1], 1) for n, v in rss.items()},
        "list_calls_expected_min": math.ceil(versions_total / 1000),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
