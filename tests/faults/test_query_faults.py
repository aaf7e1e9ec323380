"""Faults at every step of `ddb-backup query`: the newest snapshot as it is, and the exact
state as of a time. Transient: the answer is exact. Persistent: one clear line, exit 1,
never an answer from part of the data."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from backup_lambda.ddbjson import Item
from tests.faults.conftest import Outcome, Times, history, iso
from tests.faults.injector import FEW_STORMS, STORMS, Fault, FaultInjector, Storm
from tests.faults.oracles import assert_whole, committed
from tests.faults.steps import QUERY_AS_OF, QUERY_NEWEST, Step, persistent_cases, raise_storm, unmet
from tests.jobs.restore.restore_fixtures import Backup
from tests.support import answered

# the newest snapshot: a full one, or a delta on it (merged on read); the state as of a time
MODES = {"newest": QUERY_NEWEST, "newest-delta": QUERY_NEWEST, "as-of": QUERY_AS_OF}
SQL = "SELECT __key_hash, __item FROM items"


def query(cli: Any, times: Times, mode: str) -> Outcome:
    when = ("--as-of", iso(times.as_of)) if mode == "as-of" else ()
    outcome: Outcome = cli("query", "--no-cache", "--format", "csv", *when, SQL)
    return outcome


def answer(outcome: Outcome) -> dict[str, Item]:
    rows = list(csv.reader(io.StringIO(outcome.out)))
    assert rows[0] == ["__key_hash", "__item"]
    return {digest: json.loads(item) for digest, item in rows[1:]}


def expected(world: Backup, times: Times, mode: str) -> dict[str, Item]:
    if mode == "as-of":
        return world.oracle(times.as_of)
    newest = committed(world)[-1]  # as it was built (its chain resolved)
    return assert_whole(world.s3, world.bucket, newest)


@pytest.mark.parametrize(
    ("storm", "mode"),
    [
        pytest.param(s, m, id=f"{m}-{s.name}")
        for m in MODES
        for s in (FEW_STORMS if m == "newest-delta" else STORMS)
        if not s.writes_only
    ],
)
def test_transient_faults_at_every_step_are_retried_and_the_answer_is_exact(
    world: Backup, faults: FaultInjector, cli: Any, storm: Storm, mode: str
) -> None:
    times = history(world, chain=mode == "newest-delta")
    rules = raise_storm(faults, storm, MODES[mode], 2)
    outcome = query(cli, times, mode)
    faults.clear()
    assert (outcome.code, answered(outcome.err)) == (0, "")
    assert unmet(rules) == []
    assert answer(outcome) == expected(world, times, mode)


@pytest.mark.parametrize(
    ("step", "fault"),
    [pytest.param(s, f, id=f"{s.id}-{f.name}") for s, f in persistent_cases(QUERY_NEWEST)],
)
def test_a_persistent_fault_fails_cleanly_with_no_partial_answer(
    world: Backup, faults: FaultInjector, cli: Any, step: Step, fault: Fault
) -> None:
    times = history(world)
    rule = faults.inject(step.service, step.operation, fault, times=None, where=step.where)
    outcome = query(cli, times, "newest")
    faults.clear()
    assert rule.struck > 0
    outcome.assert_one_line_error(1)
    assert outcome.out == ""
