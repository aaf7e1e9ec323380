"""Faults at every step of `ddb-backup restore`: a bulk load into a table it creates, and a
diff restore into a table holding other data.

Transient (botocore retries it): the restore succeeds and the target holds exactly the
state. Persistent: the restore fails with one line and exit status 1, and a rerun without
the fault converges: the target then holds exactly the state.
"""

from __future__ import annotations

from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from tests.faults.conftest import Outcome, Times, history, iso
from tests.faults.injector import (
    FEW_STORMS,
    STORMS,
    Fault,
    FaultInjector,
    Storm,
    scan_pages,
)
from tests.faults.steps import (
    BASE_FILES_HEAD,
    RESTORE_BULK,
    RESTORE_DIFF,
    STATE_READS,
    Step,
    persistent_cases,
    raise_storm,
    unmet,
)
from tests.jobs.restore.restore_fixtures import Backup, create_table, key_of, put_items

TRANSIENT = 2
SCAN_PAGE = 3  # items per Scan page: the target is read in several pages per segment


def target_of(world: Backup) -> str:
    return f"copy-of-{world.bucket}"


def diff_target(world: Backup, times: Times) -> str:
    """A target holding most of the state, one item changed, two missing, one extra."""
    target = target_of(world)
    create_table(world.dynamodb, target)
    items = list(world.oracle(times.as_of).values())
    changed = {**items[0], "status": {"S": "tampered"}}
    stray = {**key_of("p9", 99), "status": {"S": "stray"}}
    put_items(world.dynamodb, target, [changed, *items[1:-2], stray])
    return target


# bulk and diff on a full snapshot; chain: bulk from a full snapshot and a delta on it
MODES = {"bulk": RESTORE_BULK, "diff": RESTORE_DIFF, "chain": RESTORE_BULK}


def restore(cli: Any, world: Backup, times: Times, mode: str) -> Outcome:
    extra = ("--create-table", "--verify") if mode != "diff" else ()
    outcome: Outcome = cli(
        "restore", "--to", target_of(world), "--as-of", iso(times.as_of), "--json", *extra
    )
    return outcome


def prepare(world: Backup, faults: FaultInjector, mode: str) -> Times:
    times = history(world, chain=mode == "chain")
    faults.rewrites.append(scan_pages(SCAN_PAGE))
    if mode == "diff":
        diff_target(world, times)
    return times


def assert_exact(world: Backup, times: Times) -> dict[str, Item]:
    held = world.target_items(target_of(world))
    assert held == world.oracle(times.as_of)
    return held


@pytest.mark.parametrize(
    ("storm", "mode"),
    [pytest.param(s, m, id=f"{m}-{s.name}") for m in ("bulk", "diff") for s in STORMS]
    + [pytest.param(s, "chain", id=f"chain-{s.name}") for s in FEW_STORMS],
)
def test_transient_faults_at_every_step_are_retried_and_the_target_is_exact(
    world: Backup, faults: FaultInjector, cli: Any, storm: Storm, mode: str
) -> None:
    times = prepare(world, faults, mode)
    # WHEN the restore runs while every step fails twice in a row
    rules = raise_storm(faults, storm, MODES[mode], TRANSIENT)
    outcome = restore(cli, world, times, mode)
    faults.clear()
    # THEN every step met its faults, and the target holds exactly the state
    assert (outcome.code, outcome.err) == (0, "")
    assert unmet(rules) == []
    assert outcome.result["mode"] == ("diff" if mode == "diff" else "bulk")
    assert_exact(world, times)


# The state is read by the same code in both modes: its steps fail in the bulk restore.
CASES = [
    pytest.param(mode, step, fault, id=f"{mode}-{step.id}-{fault.name}")
    for mode, steps in MODES.items()
    for step, fault in persistent_cases(steps)
    if mode == "bulk" or (mode == "diff" and step not in (*STATE_READS, BASE_FILES_HEAD))
]


@pytest.mark.parametrize(("mode", "step", "fault"), CASES)
def test_a_persistent_fault_fails_cleanly_and_a_rerun_converges(
    world: Backup, faults: FaultInjector, cli: Any, mode: str, step: Step, fault: Fault
) -> None:
    times = prepare(world, faults, mode)
    rule = faults.inject(step.service, step.operation, fault, times=None, where=step.where)
    outcome = restore(cli, world, times, mode)
    faults.clear()
    assert rule.struck > 0
    outcome.assert_one_line_error(1)
    rerun = restore(cli, world, times, mode)
    assert (rerun.code, rerun.err) == (0, "")
    assert_exact(world, times)
