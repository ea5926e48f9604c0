"""Which checkpoints to keep: a pure decision over names and rules, explained line by line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ckptd.naming import CheckpointRef


@dataclass(frozen=True)
class PrunePlan:
    """The outcome of planning: what stays, what goes, and why for each."""

    keep: list[CheckpointRef] = field(default_factory=list)
    delete: list[CheckpointRef] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def plan_prune(
    checkpoints: Sequence[CheckpointRef], keep_last: int | None, newest_good: str | None
) -> PrunePlan:
    """Return which of one target's checkpoints to keep under ``keep_last``.

    ``newest_good`` names the newest checkpoint known to have succeeded; it is kept whatever
    the rules say. With no rule (``keep_last`` None) everything is kept.
    """
    plan = PrunePlan()

    for rank, ref in enumerate(sorted(checkpoints, reverse=True), start=1):
        if ref.name == newest_good:
            plan.keep.append(ref)
            plan.reasons[ref.name] = "newest successful checkpoint"
        elif keep_last is None:
            plan.keep.append(ref)
            plan.reasons[ref.name] = "no retention rule"
        elif rank <= keep_last:
            plan.keep.append(ref)
            plan.reasons[ref.name] = f"keep_last {keep_last} (#{rank})"
        else:
            plan.delete.append(ref)
            plan.reasons[ref.name] = f"beyond keep_last {keep_last} (#{rank})"

    return plan
