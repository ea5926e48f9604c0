"""The pruning decision: keep_last, the newest good checkpoint, and explanations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ckptd.naming import CheckpointRef, make_checkpoint_name, parse_checkpoint_name
from ckptd.retention import plan_prune

START = datetime(2026, 12, 1, tzinfo=UTC)


def refs(count: int) -> list[CheckpointRef]:
    """Return ``count`` checkpoints a minute apart, oldest first."""
    out = []
    for i in range(count):
        ref = parse_checkpoint_name(make_checkpoint_name("t", START + timedelta(minutes=i), []))
        assert ref is not None
        out.append(ref)
    return out


@pytest.mark.parametrize(
    ("count", "keep_last", "deleted"),
    [
        (0, 3, []),
        (2, 3, []),
        (3, 3, []),
        (5, 3, [1, 0]),
        (5, 1, [3, 2, 1, 0]),
    ],
)
def test_keep_last_deletes_the_oldest(count: int, keep_last: int, deleted: list[int]) -> None:
    all_refs = refs(count)

    plan = plan_prune(all_refs, keep_last, newest_good=None)

    assert [all_refs[i].name for i in deleted] == [ref.name for ref in plan.delete]
    assert count == len(plan.keep) + len(plan.delete)


def test_no_rule_keeps_everything() -> None:
    plan = plan_prune(refs(4), None, newest_good=None)

    assert [] == plan.delete
    assert {"no retention rule"} == set(plan.reasons.values())


def test_newest_good_is_kept_even_when_rules_would_drop_it() -> None:
    # Newer names than the good one exist (e.g. a partial one left by a crash).
    all_refs = refs(4)
    good = all_refs[1]

    plan = plan_prune(all_refs, 1, newest_good=good.name)

    assert good in plan.keep
    assert "newest successful checkpoint" == plan.reasons[good.name]


def test_every_checkpoint_is_explained() -> None:
    all_refs = refs(5)

    plan = plan_prune(all_refs, 2, newest_good=all_refs[-1].name)

    assert {ref.name for ref in all_refs} == set(plan.reasons)
    assert "beyond keep_last 2 (#5)" == plan.reasons[all_refs[0].name]
