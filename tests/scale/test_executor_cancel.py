"""A unit task that fails stops the run: no further unit starts."""

from __future__ import annotations

import threading
import time

import pytest

from compaction.executor import ThreadUnitExecutor


def test_a_failing_unit_starts_no_further_units() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def unit(n: int) -> int:
        with lock:
            started.append(n)
        if n == 0:
            raise RuntimeError("unit 0 failed")
        return n

    with pytest.raises(RuntimeError, match="unit 0 failed"):
        list(ThreadUnitExecutor(1).map(unit, range(20)))
    assert started[0] == 0
    assert len(started) <= 2  # the one thread may have picked up unit 1 meanwhile


def test_a_later_unit_failing_starts_nothing_while_an_earlier_one_runs() -> None:
    started: list[int] = []

    def unit(n: int) -> int:
        started.append(n)
        if n == 0:
            time.sleep(0.5)  # slow, but it ends well
        if n == 1:
            raise RuntimeError("unit 1 failed")
        return n

    with pytest.raises(RuntimeError, match="unit 1 failed"):
        list(ThreadUnitExecutor(2).map(unit, range(20)))
    assert sorted(started[:2]) == [0, 1]
    assert len(started) <= 3  # waiting for unit 0 in order would have run all 20


def test_results_come_in_the_order_of_the_units() -> None:
    assert list(ThreadUnitExecutor(4).map(lambda n: n * n, range(10))) == [n * n for n in range(10)]
    assert ThreadUnitExecutor(0).concurrency == 1
    assert ThreadUnitExecutor(3).concurrency == 3
