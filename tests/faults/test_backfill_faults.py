"""Faults at every step of `ddb-backup backfill`.

Transient: the backfill succeeds and the state it stored is exactly the source table's.
Persistent: one clear line, exit status 1; a rerun (replays are harmless) completes it.
"""

from __future__ import annotations

from typing import Any

import pytest

from compaction.compactor import CompactionConfig, Compactor
from tests.faults.conftest import Outcome
from tests.faults.injector import STORMS, Fault, FaultInjector, Storm, scan_pages
from tests.faults.oracles import assert_whole
from tests.faults.steps import BACKFILL, Step, persistent_cases, raise_storm, unmet
from tests.jobs.restore.restore_fixtures import (
    Backup,
    create_table,
    key_of,
    now_us,
    put_items,
    table_items,
)

SCAN_PAGE = 4


def source_of(world: Backup) -> str:
    """A source table with a stream (backfill's precondition) and a dozen items."""
    name = f"src-{world.bucket}"
    create_table(
        world.dynamodb,
        name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    items = [{**key_of(f"p{i % 3}", i), "n": {"N": str(i)}} for i in range(12)]
    put_items(world.dynamodb, name, items)
    return name


def backfill(cli: Any, table: str) -> Outcome:
    outcome: Outcome = cli("backfill", "--segments", "2", "--json", table=table)
    return outcome


def assert_backed_up(world: Backup, table: str) -> None:
    """A snapshot of the backup now holds exactly the source table's items."""
    as_of = now_us()
    compactor = Compactor(world.s3, world.bucket, table, config=CompactionConfig(full=True))
    manifest = compactor.run(as_of).manifest
    assert assert_whole(world.s3, world.bucket, manifest) == table_items(world.dynamodb, table)


@pytest.fixture
def source(world: Backup, faults: FaultInjector) -> str:
    faults.rewrites.append(scan_pages(SCAN_PAGE))
    return source_of(world)


@pytest.mark.parametrize("storm", STORMS, ids=lambda s: s.name)
def test_transient_faults_at_every_step_are_retried_and_the_backup_is_exact(
    world: Backup, faults: FaultInjector, cli: Any, source: str, storm: Storm
) -> None:
    rules = raise_storm(faults, storm, BACKFILL, 2)
    outcome = backfill(cli, source)
    faults.clear()
    assert (outcome.code, outcome.err) == (0, "")
    assert unmet(rules) == []
    assert outcome.result["items"] == 12
    assert_backed_up(world, source)


@pytest.mark.parametrize(
    ("step", "fault"),
    [pytest.param(s, f, id=f"{s.id}-{f.name}") for s, f in persistent_cases(BACKFILL)],
)
def test_a_persistent_fault_fails_cleanly_and_a_rerun_completes_the_backup(
    world: Backup, faults: FaultInjector, cli: Any, source: str, step: Step, fault: Fault
) -> None:
    rule = faults.inject(step.service, step.operation, fault, times=None, where=step.where)
    outcome = backfill(cli, source)
    faults.clear()
    assert rule.struck > 0
    outcome.assert_one_line_error(1)
    rerun = backfill(cli, source)
    assert (rerun.code, rerun.err) == (0, "")
    assert_backed_up(world, source)
