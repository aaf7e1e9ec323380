"""Faults at every step of `ddb-backup import-export`: a full export (committed as a
snapshot as of its exportTime) and an incremental export after it (its lines written as
changes through the Lambda's writer).

Transient: the import succeeds, the snapshot holds exactly the full export's items and the
state after the incremental window is exactly the export's. Persistent: one clear line,
exit status 1, no half snapshot; a rerun resumes and the end state is exact.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from backup_lambda.layout import key_hash
from compaction.compactor import Compactor
from tests.compaction.awsexports import ExportFolder, change_line
from tests.faults.conftest import Outcome
from tests.faults.injector import BODY_RESET, BODY_SHORT, STORMS, Fault, FaultInjector, Storm
from tests.faults.oracles import assert_every_snapshot_whole, assert_whole, manifest_at
from tests.faults.steps import IMPORT, Step, persistent_cases, raise_storm, unmet
from tests.jobs.restore.restore_fixtures import SECOND, TABLE, Backup, key_of, now_us

_sources = itertools.count()
# Steps whose failure the compaction's persistent cases already meet through the same code
# (the import commits its snapshot as compaction does); the storms still cover them here.
SHARED_WITH_COMPACTION = {
    "snapshot ids list",
    "manifest get",
    "export data put",
    "parquet put",
    "export manifests put",
    "commit race check",
    "journal put",
}


@dataclass(frozen=True)
class Exports:
    source: str  # s3://bucket/prefix/ of the exports
    full_at: int
    full_items: dict[str, Item]
    end: int
    state_at_end: dict[str, Item]


def by_hash(items: list[Item]) -> dict[str, Item]:
    return {key_hash({k: i[k] for k in ("pk", "sk")}): i for i in items}


def exports(world: Backup) -> Exports:
    """A full export of eight items, then an incremental export: two modifies, a removal
    and two inserts."""
    bucket = f"exports-{next(_sources)}"
    world.s3.create_bucket(Bucket=bucket)
    folder = ExportFolder(world.s3, bucket=bucket)
    start = now_us() - 7200 * SECOND
    items = [{**key_of(f"p{i % 3}", i), "n": {"N": str(i)}} for i in range(8)]
    folder.full(items, start)
    state = by_hash(items)
    lines = []
    for offset, (pk, sk, status) in enumerate(
        [
            ("p0", 0, "paid"),
            ("p1", 1, "paid"),
            ("p2", 2, None),
            ("p9", 90, "new"),
            ("p9", 91, "new"),
        ]
    ):
        keys = key_of(pk, sk)
        image = None if status is None else {**keys, "status": {"S": status}}
        old = state.get(key_hash(keys))
        lines.append(change_line(keys, start + (10 + offset) * SECOND, new=image, old=old))
        if image is None:
            state.pop(key_hash(keys))
        else:
            state[key_hash(keys)] = image
    end = start + 60 * SECOND
    folder.incremental(lines, start, end)
    return Exports(f"s3://{bucket}/exports/", start, by_hash(items), end, state)


def import_exports(cli: Any, made: Exports) -> Outcome:
    outcome: Outcome = cli("import-export", "--from", made.source, "--json")
    return outcome


def assert_imported(world: Backup, made: Exports) -> None:
    """The full export's snapshot is exactly its items, the state at the incremental
    export's end exactly the export's, and nothing visible is half written."""
    snapshot = manifest_at(world, made.full_at - made.full_at % 1000)  # exportTime: ms
    assert snapshot is not None
    assert snapshot.origin == "import-export"
    assert assert_whole(world.s3, world.bucket, snapshot) == made.full_items
    result = Compactor(world.s3, world.bucket, TABLE).run(made.end)
    assert assert_whole(world.s3, world.bucket, result.manifest) == made.state_at_end
    assert_every_snapshot_whole(world)


@pytest.mark.parametrize("storm", STORMS, ids=lambda s: s.name)
def test_transient_faults_at_every_step_are_retried_and_the_import_is_exact(
    world: Backup, faults: FaultInjector, cli: Any, storm: Storm
) -> None:
    made = exports(world)
    rules = raise_storm(faults, storm, IMPORT, 2)
    outcome = import_exports(cli, made)
    faults.clear()
    assert (outcome.code, outcome.err) == (0, "")
    assert unmet(rules) == []
    assert [e["status"] for e in outcome.result["exports"]] == ["imported", "imported"]
    assert_imported(world, made)


@pytest.mark.parametrize(
    ("step", "fault"),
    [
        pytest.param(s, f, id=f"{s.id}-{f.name}")
        for s, f in persistent_cases(IMPORT)
        if s.name not in SHARED_WITH_COMPACTION
    ],
)
def test_a_persistent_fault_fails_cleanly_and_a_rerun_resumes_exactly(
    world: Backup, faults: FaultInjector, cli: Any, step: Step, fault: Fault
) -> None:
    made = exports(world)
    rule = faults.inject(step.service, step.operation, fault, times=None, where=step.where)
    outcome = import_exports(cli, made)
    faults.clear()
    assert rule.struck > 0
    if step.name == "key schema describe":  # a clear "pass --key-schema" is the answer
        outcome.assert_one_line_error(2)
        assert "--key-schema" in outcome.err
    else:
        outcome.assert_one_line_error(1)
    assert_every_snapshot_whole(world)
    rerun = import_exports(cli, made)
    assert (rerun.code, rerun.err) == (0, "")
    assert_imported(world, made)


# Each GET step of the exports with one broken payload, reset and short in turn.
_GETS = [s for s in IMPORT if s.operation == "GetObject" and s.name != "manifest get"]
BODY_CASES = [
    pytest.param(s, f, id=f"{s.id}-{f.name}")
    for s, f in zip(_GETS, [BODY_RESET, BODY_SHORT] * len(_GETS), strict=False)
]


@pytest.mark.parametrize(("step", "fault"), BODY_CASES)
def test_a_get_whose_payload_breaks_once_is_read_again(
    world: Backup, faults: FaultInjector, cli: Any, step: Step, fault: Fault
) -> None:
    made = exports(world)
    rule = faults.inject(step.service, step.operation, fault, where=step.where)
    outcome = import_exports(cli, made)
    faults.clear()
    assert rule.struck == 1
    assert (outcome.code, outcome.err) == (0, "")
    assert_imported(world, made)
