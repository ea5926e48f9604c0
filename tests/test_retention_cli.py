"""The dry-run table and JSON of `ckptd prune`, from a plan (no engine needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ckptd.policy import Target
from ckptd.retention import CheckpointRecord, Origin, plan_retention
from ckptd.retention_cli import _report, render_report

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
MiB = 1024**2


def test_the_table_explains_every_checkpoint() -> None:
    target = Target.model_validate(
        {
            "name": "solver",
            "container": "cpp-solver",
            "schedule": {"every": 300},
            "retention": {"keep_within": "2h", "max_total_size": "3MiB"},
        }
    )
    records = [
        CheckpointRecord("ckptd-solver-20261204T113000Z", NOW - timedelta(minutes=30), 2 * MiB),
        CheckpointRecord("ckptd-solver-20261204T110000Z", NOW - timedelta(hours=1), 2 * MiB),
        CheckpointRecord(
            "ckptd-solver-20261201T000000Z", NOW - timedelta(days=3, hours=12), MiB, True
        ),
        CheckpointRecord("ckptd-solver-20261130T000000Z", NOW - timedelta(days=4, hours=12), MiB),
        CheckpointRecord("by-hand", NOW - timedelta(days=5), None, origin=Origin.FOREIGN),
    ]
    plan = plan_retention(records, target.retention, NOW)

    table = render_report(_report(target, plan, [], dry_run=True))

    assert [
        "target solver (container cpp-solver): keep within 2h, at most 3MiB; 3MiB kept",
        "CHECKPOINT                     TIME (UTC)            SIZE  ACTION   WHY",
        "ckptd-solver-20261204T113000Z  2026-12-04 11:30:00Z  2MiB  kept     within 2h, "
        "newest good",
        "ckptd-solver-20261204T110000Z  2026-12-04 11:00:00Z  2MiB  deleted  over size budget "
        "(rules: within 2h)",
        "ckptd-solver-20261201T000000Z  2026-12-01 00:00:00Z  1MiB  kept     pinned",
        "ckptd-solver-20261130T000000Z  2026-11-30 00:00:00Z  1MiB  deleted  no rule keeps it",
        "by-hand                        2026-11-29 12:00:00Z  ?     kept     not ckptd's",
    ] == table.splitlines()


def test_an_applied_plan_lists_what_it_deleted() -> None:
    target = Target.model_validate({"name": "t", "container": "c", "schedule": {"every": 60}})
    plan = plan_retention([], {}, NOW)

    report = _report(target, plan, ["ckptd-t-20261204T110000Z"], dry_run=False)

    assert "deleted ckptd-t-20261204T110000Z" == render_report(report).splitlines()[-1]
    assert ["ckptd-t-20261204T110000Z"] == report["deleted"]


def test_the_table_shows_times_to_the_second() -> None:
    # Checkpoints the engine made carry the engine's sub-second creation time.
    target = Target.model_validate({"name": "t", "container": "c", "schedule": {"every": 60}})
    made = NOW - timedelta(minutes=5, microseconds=123456)
    plan = plan_retention([CheckpointRecord("ckptd-t-20261204T115459Z", made, MiB)], {}, NOW)

    table = render_report(_report(target, plan, [], dry_run=True))

    assert "ckptd-t-20261204T115459Z  2026-12-04 11:54:59Z  1MiB" in table
    assert "123456" not in table
