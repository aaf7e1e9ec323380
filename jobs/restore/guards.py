"""What a restore must not do without the user saying so (DESIGN.md: restores are guarded).

Pure decisions over the counts of a dry pass; the restorer asks them before any write.
Each refusal is a RefusedError (exit 2) whose message says what the restore would do and
names the flag that allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from backup_lambda.errors import RefusedError
from backup_lambda.layout import format_time_us

DEFAULT_MAX_DELETE_PERCENT = 10.0


@dataclass(frozen=True)
class Plan:
    """What a restore would do to its target (the counts of the dry pass)."""

    target_items: int  # items in the whole target before the restore
    puts: int
    deletes: int
    unchanged: int
    added: int  # of `puts`, the keys the target does not hold yet

    @property
    def items_after(self) -> int:
        return self.target_items - self.deletes + self.added

    def describe(self) -> str:
        return (
            f"put {self.puts}, delete {self.deletes}, unchanged {self.unchanged} "
            f"(the target holds {self.target_items} items, {self.items_after} after)"
        )


def refuse_source_as_target(source: str, target: str, in_place: bool) -> None:
    """Restoring into the source table itself rewrites the live table."""
    if source == target and not in_place:
        raise RefusedError(
            f"--to {target!r} is the source table itself: the restore would rewrite the live "
            "table; add --in-place to do that (the plan is printed before any write), or "
            "restore into another table"
        )


def refuse_before_history(source: str, as_of_us: int, has_history: bool) -> None:
    """An as-of before the first backed-up change: the state is empty by mistake."""
    if not has_history:
        raise RefusedError(
            f"no backed-up change of {source!r} at or before {format_time_us(as_of_us)}: the "
            "backup starts later, so the state then is empty; check --as-of, or add "
            "--allow-empty if an empty state is what you mean"
        )


def big_delete_reasons(plan: Plan, max_delete_percent: float) -> list[str]:
    """Why this plan needs --yes (empty: it does not)."""
    reasons = []
    if plan.target_items and plan.items_after == 0:
        reasons.append(f"it would leave the target empty (all {plan.target_items} items deleted)")
    elif plan.target_items and plan.deletes * 100 > max_delete_percent * plan.target_items:
        share = plan.deletes * 100 / plan.target_items
        reasons.append(
            f"it would delete {plan.deletes} of the target's {plan.target_items} items "
            f"({share:.1f}%, more than --max-delete-percent {max_delete_percent:g})"
        )
    return reasons


def refuse_big_delete(target: str, plan: Plan, max_delete_percent: float, yes: bool) -> None:
    reasons = big_delete_reasons(plan, max_delete_percent)
    if reasons and not yes:
        raise RefusedError(
            f"restore into {target!r} not started: {'; '.join(reasons)}; the plan: "
            f"{plan.describe()}; add --yes to go ahead (--dry-run shows the plan)"
        )
