"""A compaction counts the stored changes newer than its as-of (`compact` says "N changes
are newer than the as-of"): each change once, replays and late writes included."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compaction.helpers import BESIDE, ITEMS, ONLY, SimClock, Store, compact


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"k{i}"}}


@pytest.mark.parametrize("store", [ITEMS, BESIDE, ONLY], indirect=True)
def test_newer_changes_are_counted_once_each(
    s3_client: Any, store: Store, sim_clock: SimClock
) -> None:
    for i in range(3):
        store.put(key(i), {"v": {"N": "1"}}, event_s=1 + i)
    late = store.put(key(0), {"v": {"N": "2"}}, event_s=12, name="MODIFY")
    store.put(key(3), {"v": {"N": "1"}}, event_s=13)
    store.write(late, 14)  # a replay of a newer change: still one change
    store.put(key(1), {"v": {"N": "3"}}, event_s=9, write_s=15, name="MODIFY")  # late, older
    result = compact(s3_client, sim_clock, as_of_s=10, run_s=20)
    assert result.manifest.counts.items == 3
    assert result.newer_changes == 2  # k0 at 12, k3 at 13; not the late change at 9
    # an incremental run on it counts what is newer than its own as-of
    store.put(key(4), {"v": {"N": "1"}}, event_s=30)
    again = compact(s3_client, sim_clock, as_of_s=20, run_s=40)
    assert again.newer_changes == 1
    assert compact(s3_client, sim_clock, as_of_s=35, run_s=41).newer_changes == 0
