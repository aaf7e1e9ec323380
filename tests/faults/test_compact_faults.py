"""Faults at every step of `ddb-backup compact` (incremental, from a base snapshot).

Transient (botocore retries it): the run succeeds and its snapshot is exactly the state.
Persistent: the run fails with one line and exit status 1, no snapshot is visible for
its as-of (or, where the commit itself went through, a whole one), and a rerun without
the fault commits exactly the state.
"""

from __future__ import annotations

from typing import Any

import pytest

from compaction import catalog
from compaction.manifest import snapshot_id
from tests.faults.conftest import Outcome, history, iso
from tests.faults.injector import (
    FEW_STORMS,
    LOST_RESPONSE,
    STORMS,
    Fault,
    FaultInjector,
    Storm,
    ignore_if_none_match,
)
from tests.faults.oracles import assert_every_snapshot_whole, manifest_at, snapshot_items
from tests.faults.steps import COMPACT, Step, persistent_cases, raise_storm, unmet
from tests.jobs.restore.restore_fixtures import Backup

TRANSIENT = 2  # failures in a row per step: botocore makes up to 8 attempts
BEST_EFFORT = {"key schema describe"}  # the run goes on without it (the base's schema)
COMMITTED_BEFORE = {"commit race check"}  # fails after the manifest was written


def compact(cli: Any, as_of_us: int) -> Outcome:
    # --quiet: the history has changes after the as-of, which compact notes on stderr
    outcome: Outcome = cli("compact", "--as-of", iso(as_of_us), "--json", "--quiet")
    return outcome


def assert_exact(world: Backup, as_of_us: int) -> None:
    assert snapshot_items(world, as_of_us) == world.oracle(as_of_us)
    assert_every_snapshot_whole(world)


@pytest.mark.parametrize(
    ("storm", "delta"),
    [pytest.param(s, False, id=s.name) for s in STORMS]
    + [pytest.param(s, True, id=f"delta-on-a-chain-{s.name}") for s in FEW_STORMS],
)
def test_transient_faults_at_every_step_are_retried_and_the_snapshot_is_exact(
    world: Backup, faults: FaultInjector, cli: Any, storm: Storm, delta: bool
) -> None:
    # GIVEN a backup with a base snapshot (or a full one and a delta) and changes after it
    times = history(world, chain=delta)
    # WHEN compact runs while every step fails twice in a row
    rules = raise_storm(faults, storm, COMPACT, TRANSIENT)
    outcome = cli(
        "compact",
        "--as-of",
        iso(times.as_of),
        "--json",
        "--quiet",  # no note of the changes after the as-of (the history has some)
        *(["--delta"] if delta else []),
    )
    # THEN every step met its faults, and the run committed exactly the state
    assert (outcome.code, outcome.err) == (0, "")
    assert unmet(rules) == []
    assert outcome.result["created"] is True
    assert_exact(world, times.as_of)
    manifest = manifest_at(world, times.as_of)
    assert manifest is not None
    assert manifest.key_schema_source == "describe_table"  # DescribeTable was retried too
    assert (manifest.kind, manifest.depth) == (("delta", 2) if delta else ("full", 0))


@pytest.mark.parametrize(
    ("step", "fault"),
    [pytest.param(s, f, id=f"{s.id}-{f.name}") for s, f in persistent_cases(COMPACT)],
)
def test_a_persistent_fault_fails_cleanly_and_a_rerun_is_exact(
    world: Backup, faults: FaultInjector, cli: Any, step: Step, fault: Fault
) -> None:
    times = history(world)
    # WHEN this step fails on every attempt
    rule = faults.inject(step.service, step.operation, fault, times=None, where=step.where)
    outcome = compact(cli, times.as_of)
    faults.clear()
    assert rule.struck > 0
    if step.name in BEST_EFFORT:
        assert (outcome.code, outcome.err) == (0, "")
    else:
        # THEN one clear line, and no snapshot for the as-of unless its commit went through
        outcome.assert_one_line_error(1)
        if step.name not in COMMITTED_BEFORE:
            assert manifest_at(world, times.as_of) is None
    assert_every_snapshot_whole(world)
    # WHEN the fault is gone and compact runs again THEN the snapshot is exactly the state
    assert compact(cli, times.as_of).code == 0
    assert_exact(world, times.as_of)


# A lost answer at each write is in the LostResponse storm; here the commit alone, and
# answers lost for good at a data file and at the commit.
COMMIT = next(s for s in COMPACT if s.name == "manifest commit")
WRITES = [pytest.param(s, id=s.id) for s in COMPACT if s.name in {"parquet put", "manifest commit"}]


def test_a_commit_whose_answer_was_lost_once_is_the_runs_commit(
    world: Backup, faults: FaultInjector, cli: Any
) -> None:
    """S3 applied the PUT, the answer never came back; botocore sends it again and meets
    the manifest it wrote (If-None-Match): that is this run's commit, not a conflict."""
    times = history(world)
    rule = faults.inject("s3", "PutObject", LOST_RESPONSE, where=COMMIT.where)
    outcome = compact(cli, times.as_of)
    assert (outcome.code, outcome.err) == (0, "")
    assert rule.struck == 1
    assert_exact(world, times.as_of)


@pytest.mark.parametrize("step", WRITES)
def test_writes_whose_responses_are_always_lost_leave_no_half_snapshot(
    world: Backup, faults: FaultInjector, cli: Any, step: Step
) -> None:
    times = history(world)
    faults.inject(step.service, step.operation, LOST_RESPONSE, times=None, where=step.where)
    outcome = compact(cli, times.as_of)
    faults.clear()
    if outcome.code:
        outcome.assert_one_line_error(outcome.code)
    else:  # the manifest went through on the first attempt: the run may say so
        assert manifest_at(world, times.as_of) is not None
    assert_every_snapshot_whole(world)
    assert compact(cli, times.as_of).code == 0
    assert_exact(world, times.as_of)


# Each GET step once with each broken payload: one breaks once, the other for good.
_BODY = [(s, s.body_faults()) for s in COMPACT if s.body]
BODY_ONCE = [
    pytest.param(s, f[i % 2], id=f"{s.id}-{f[i % 2].name}") for i, (s, f) in enumerate(_BODY)
]
BODY_ALWAYS = [
    pytest.param(s, f[1 - i % 2], id=f"{s.id}-{f[1 - i % 2].name}")
    for i, (s, f) in enumerate(_BODY)
]


@pytest.mark.parametrize(("step", "fault"), BODY_ONCE)
def test_a_get_whose_payload_breaks_once_is_read_again(
    world: Backup, faults: FaultInjector, cli: Any, step: Step, fault: Fault
) -> None:
    """The connection drops while the body is read: botocore's retries are over by then,
    so the reader reads it again."""
    times = history(world)
    rule = faults.inject(step.service, step.operation, fault, where=step.where)
    outcome = compact(cli, times.as_of)
    assert rule.struck == 1
    assert (outcome.code, outcome.err) == (0, "")
    assert_exact(world, times.as_of)


@pytest.mark.parametrize(("step", "fault"), BODY_ALWAYS)
def test_a_get_whose_payload_always_breaks_fails_cleanly(
    world: Backup, faults: FaultInjector, cli: Any, step: Step, fault: Fault
) -> None:
    times = history(world)
    faults.inject(step.service, step.operation, fault, times=None, where=step.where)
    outcome = compact(cli, times.as_of)
    faults.clear()
    outcome.assert_one_line_error(1)
    assert manifest_at(world, times.as_of) is None
    assert compact(cli, times.as_of).code == 0
    assert_exact(world, times.as_of)


def test_a_lost_commit_answer_on_a_server_that_ignores_if_none_match_keeps_the_commit(
    world: Backup, faults: FaultInjector, cli: Any
) -> None:
    """On Ceph RGW 16 the retried PUT writes a second manifest version: the run must see
    that the oldest version is its own earlier attempt, not another run's commit."""
    times = history(world)
    faults.rewrites.append(ignore_if_none_match)
    faults.inject("s3", "PutObject", LOST_RESPONSE, where=COMMIT.where)
    outcome = compact(cli, times.as_of)
    faults.clear()
    assert (outcome.code, outcome.err) == (0, "")
    assert_exact(world, times.as_of)
    key = catalog.manifest_key("", "orders", snapshot_id(times.as_of))
    listing = world.s3.list_object_versions(Bucket=world.bucket, Prefix=key)
    assert len(listing["Versions"]) == 1  # the duplicate is withdrawn, the first kept
