"""The delta-or-full policy through `ddb-backup compact`: each rule gives the documented
kind, and the reason is printed and in `--json` (`why`) and the manifest
(`policy_reason`); `snapshots` lists each snapshot's kind, parent and size."""

from __future__ import annotations

import json
from typing import Any

from compaction import catalog
from tests.compaction.helpers import BUCKET, TABLE, SimClock, Store
from tests.compaction.test_compactor_moto import Cli, cli, iso, key  # noqa: F401 - fixture

ITEMS = 10


def compact(
    s3: Any, run: Cli, clock: SimClock, at_s: float, *flags: str
) -> tuple[dict[str, Any], str]:
    """`compact --as-of at_s FLAGS --json`, S3's now just after: (its summary, the reason),
    checked against the committed manifest."""
    clock.set(at_s + 1)
    args = ["compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(clock, at_s)]
    code, out, err = run(*args, *flags, "--json")
    assert (code, err) == (0, ""), err
    summary = json.loads(out.strip().splitlines()[-1])
    manifest = catalog.committed_snapshots(s3, BUCKET, "", TABLE)[-1]
    assert summary["snapshot"] == manifest.id
    assert summary["why"] == manifest.policy_reason
    assert (summary["kind"], summary["parent"], summary["depth"]) == (
        manifest.kind,
        manifest.parent,
        manifest.depth,
    )
    return summary, manifest.policy_reason or ""


def change(store: Store, keys: range, at_s: float) -> None:
    for n, i in enumerate(keys):
        store.put(key(i), {"n": {"N": str(int(at_s) + i)}}, event_s=at_s + n / 100, name="MODIFY")


def test_each_rule_gives_its_kind_and_says_why(
    s3_client: Any,
    store: Store,
    sim_clock: SimClock,
    cli: Cli,  # noqa: F811 - the fixture
) -> None:
    for i in range(ITEMS):
        store.put(key(i), {"n": {"N": str(i)}}, event_s=i / 10)
    first, why = compact(s3_client, cli, sim_clock, 10)
    assert (first["kind"], why) == ("full", "no earlier snapshot to be a delta of")

    change(store, range(1), 20)  # 1 of 10 keys: 10%, not over the default share
    delta, why = compact(s3_client, cli, sim_clock, 30)
    assert (delta["kind"], delta["parent"], delta["depth"]) == ("delta", first["snapshot"], 1)
    assert why == "1 changed keys, 10.0% of the parent's 10 items"

    change(store, range(2), 40)  # 2 of 10: over it
    over, why = compact(s3_client, cli, sim_clock, 50)
    assert (over["kind"], over["base"]) == ("full", delta["snapshot"])
    assert why == "2 changed keys, 20.0% of the parent's 10 items: over --max-delta-share 0.1"

    change(store, range(2), 60)  # the same, forced
    forced, why = compact(s3_client, cli, sim_clock, 70, "--delta")
    assert (forced["kind"], forced["parent"]) == ("delta", over["snapshot"])
    assert why == "--delta: 2 changed keys, 20.0% of the parent's 10 items"

    change(store, range(1), 80)  # a second delta would pass --max-chain 1
    capped, why = compact(s3_client, cli, sim_clock, 90, "--max-chain", "1")
    assert capped["kind"] == "full"
    assert why == "a delta would make the chain 2 long (--max-chain 1)"

    change(store, range(5), 100)  # half the keys, with a share of 0.5 allowed
    shared, why = compact(s3_client, cli, sim_clock, 110, "--max-delta-share", "0.5")
    assert (shared["kind"], why) == ("delta", "5 changed keys, 50.0% of the parent's 10 items")

    store.put(key(3), {"n": {"S": "no longer a number"}}, event_s=120, name="MODIFY")
    retyped, why = compact(s3_client, cli, sim_clock, 130, "--delta")
    assert retyped["kind"] == "full"
    assert why == "column 'n' would change from decimal(38,0) to json"

    full, why = compact(s3_client, cli, sim_clock, 140, "--full")
    assert (full["kind"], full["base"], why) == (
        "full",
        None,
        "--full: rebuilt from every object version",
    )
    rebuilt, why = compact(s3_client, cli, sim_clock, 150, "--rebuild")
    assert (rebuilt["kind"], rebuilt["base"]) == ("full", None)
    assert why == "--full: rebuilt from every object version"

    # Without --json: the kind and the reason on the summary line.
    change(store, range(1), 160)
    sim_clock.set(171)
    args = ["compact", "--bucket", BUCKET, "--table", TABLE, "--as-of", iso(sim_clock, 170)]
    code, out, _ = cli(*args)
    assert code == 0
    assert (
        f"(delta of {rebuilt['snapshot']}, chain depth 1; 1 changed keys, 10.0% of the "
        "parent's 10 items; changes by listing)"
    ) in out
    sim_clock.set(172)
    code, out, _ = cli(*args[:-1], iso(sim_clock, 171), "--max-chain", "0")
    assert code == 0
    assert "(full, built from " in out
    assert "; a delta would make the chain 2 long (--max-chain 0); " in out

    assert_listed(s3_client, cli)


def assert_listed(s3: Any, cli: Cli) -> None:  # noqa: F811 - not the fixture
    """`snapshots`: each one's kind, parent and bytes, as the manifests say."""
    code, out, _ = cli("snapshots", "--bucket", BUCKET, "--table", TABLE, "--json")
    assert code == 0
    listed = json.loads(out.strip().splitlines()[-1])["snapshots"]
    manifests = catalog.committed_snapshots(s3, BUCKET, "", TABLE)
    assert [(s["id"], s["kind"], s["parent"], s["depth"], s["bytes"]) for s in listed] == [
        (m.id, m.kind, m.parent, m.depth, m.total_bytes) for m in manifests
    ]
    assert [s["kind"][0] for s in listed] == list("fdfdfdfffdf")
    code, out, _ = cli("snapshots", "--bucket", BUCKET, "--table", TABLE)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "AS", "OF", "KIND", "ITEMS", "BYTES", "PARENT"]
    for line, manifest in zip(lines[1:], manifests, strict=True):
        cells = line.split()
        kind = f"delta:{manifest.depth}" if manifest.kind == "delta" else "full"
        assert (cells[0], cells[2], cells[4], cells[5]) == (
            manifest.id,
            kind,
            str(manifest.total_bytes),
            manifest.parent or "-",
        )
