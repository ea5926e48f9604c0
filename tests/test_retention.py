"""The retention planner: each rule, the floor, the size budget, and properties over all of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptd.errors import PolicyError
from ckptd.retention import CheckpointRecord, Origin, RetentionPlan, plan_retention

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
GiB = 1024**3


def record(name: str, created: datetime, size: int | None = None, **flags: Any) -> CheckpointRecord:
    return CheckpointRecord(name, created, size, **flags)


def hourly_records(count: int, size: int | None = None) -> list[CheckpointRecord]:
    """Return `count` checkpoints an hour apart, the newest an hour before NOW, newest first."""
    return [record(f"c{i:03d}", NOW - timedelta(hours=i + 1), size) for i in range(count)]


def kept(plan: RetentionPlan) -> list[str]:
    return [decision.name for decision in plan.keep]


def reasons(plan: RetentionPlan) -> dict[str, tuple[str, ...]]:
    return {decision.name: decision.reasons for decision in plan.decisions()}


# --- one rule at a time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "keep_last", "kept_count"),
    [(0, 3, 0), (2, 3, 2), (3, 3, 3), (5, 3, 3), (5, 1, 1), (5, "unlimited", 5)],
)
def test_keep_last_keeps_the_newest(count: int, keep_last: Any, kept_count: int) -> None:
    records = hourly_records(count)

    plan = plan_retention(records, {"keep_last": keep_last}, NOW)

    assert [r.name for r in records[:kept_count]] == kept(plan)
    assert count == len(plan.keep) + len(plan.delete)


def test_no_rules_keep_everything() -> None:
    plan = plan_retention(hourly_records(4), {}, NOW)

    assert [] == plan.delete
    assert {("no rules",), ("no rules", "newest good")} == set(reasons(plan).values())


@pytest.mark.parametrize(
    ("rule", "step", "expected"),
    [
        # 12:00:00, 11:59:40, 11:59:20, 11:59:00, 11:58:40
        ("keep_minutely", timedelta(seconds=20), ["c000", "c001", "c004"]),
        # 12:00, 11:35, 11:10, 10:45
        ("keep_hourly", timedelta(minutes=25), ["c000", "c001", "c003"]),
        # Dec 4 12:00, Dec 4 02:00, Dec 3 16:00, Dec 3 06:00, Dec 2 20:00
        ("keep_daily", timedelta(hours=10), ["c000", "c002", "c004"]),
        # Fri Dec 4, Tue Dec 1, Sat Nov 28, Wed Nov 25, Sun Nov 22
        ("keep_weekly", timedelta(days=3), ["c000", "c002", "c004"]),
        # Dec 4, Nov 22, Nov 10, Oct 29
        ("keep_monthly", timedelta(days=12), ["c000", "c001", "c003"]),
        # 2026-12-04, 2026-07-07, 2026-02-07, 2025-09-10, 2025-04-13, 2024-11-14
        ("keep_yearly", timedelta(days=150), ["c000", "c003", "c005"]),
    ],
)
def test_bucket_rules_keep_the_newest_of_each_bucket(
    rule: str, step: timedelta, expected: list[str]
) -> None:
    # NOW is Friday 2026-12-04 12:00 UTC; times step back from it.
    records = [record(f"c{i:03d}", NOW - i * step) for i in range(12)]

    plan = plan_retention(records, {rule: 3}, NOW)

    assert expected == kept(plan)
    assert rule.removeprefix("keep_") == plan.keep[1].reasons[0]


def test_weeks_are_iso_weeks_from_monday() -> None:
    sunday = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    monday = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    records = [record("sunday", sunday), record("monday", monday)]

    plan = plan_retention(records, {"keep_weekly": 1}, NOW)

    assert ["monday"] == kept(plan)


def test_a_count_left_at_the_end_keeps_the_oldest_too() -> None:
    records = [record("a", NOW - timedelta(hours=2)), record("b", NOW - timedelta(hours=3))]

    plan = plan_retention(records, {"keep_daily": 5}, NOW)

    assert ["a", "b"] == kept(plan)
    assert ("oldest daily",) == reasons(plan)["b"]


def test_keep_within_counts_back_from_the_newest_not_from_now() -> None:
    # The schedule stopped a year ago: keep_within still keeps the last two days of it.
    newest = NOW - timedelta(days=365)
    records = [record(f"c{i}", newest - timedelta(hours=12 * i)) for i in range(6)]

    plan = plan_retention(records, {"keep_within": "2d"}, NOW)

    assert ["c0", "c1", "c2", "c3"] == kept(plan)
    assert ("within 2d",) == reasons(plan)["c3"]
    assert ("no rule keeps it",) == reasons(plan)["c4"]


def test_keep_within_months_are_calendar_months() -> None:
    newest = datetime(2026, 3, 31, tzinfo=UTC)
    # Restic counts 1mo before March 31st as "February 31st", which rolls over to March 3rd.
    inside = record("inside", datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC))
    outside = record("outside", datetime(2026, 3, 3, tzinfo=UTC))

    plan = plan_retention([record("newest", newest), inside, outside], {"keep_within": "1mo"}, NOW)

    assert ["newest", "inside"] == kept(plan)


def test_keep_within_daily_keeps_one_per_day_inside_the_span() -> None:
    # Dec 4 11:00, 03:00; Dec 3 19:00, 11:00, 03:00; Dec 2 19:00; then 11:00, just outside.
    records = [record(f"c{i}", NOW - timedelta(hours=1 + 8 * i)) for i in range(12)]

    plan = plan_retention(records, {"keep_within_daily": "2d"}, NOW)

    assert ["c0", "c2", "c5"] == kept(plan)
    assert ("daily within 2d",) == reasons(plan)["c5"]


def test_keep_within_daily_keeps_the_oldest_when_all_are_within() -> None:
    records = [record(f"c{i}", NOW - timedelta(hours=1 + 8 * i)) for i in range(5)]

    plan = plan_retention(records, {"keep_within_daily": "1w"}, NOW)

    assert ["c0", "c2", "c4"] == kept(plan)
    assert ("oldest daily within 1w",) == reasons(plan)["c4"]


def test_rules_combine_with_or_and_every_match_is_named() -> None:
    records = hourly_records(30)

    plan = plan_retention(records, {"keep_last": 2, "keep_daily": 2}, NOW)

    assert ("last", "daily", "newest good") == reasons(plan)["c000"]
    assert ("last",) == reasons(plan)["c001"]
    assert "daily" in reasons(plan)[kept(plan)[-1]]


def test_buckets_follow_the_policy_time_zone() -> None:
    # 23:30 UTC is already the next day in Berlin.
    late = record("late", datetime(2026, 12, 2, 23, 30, tzinfo=UTC))
    early = record("early", datetime(2026, 12, 2, 22, 30, tzinfo=UTC))
    settings_utc = {"keep_daily": 5}
    settings_berlin = {"keep_daily": 5, "timezone": "Europe/Berlin"}

    assert ("daily",) == reasons(plan_retention([late, early], settings_berlin, NOW))["early"]
    assert ("oldest daily",) == reasons(plan_retention([late, early], settings_utc, NOW))["early"]


def test_the_repeated_hour_at_the_end_of_daylight_saving_is_two_hours() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 00:30 and 01:30 UTC are both 02:30 local.
    first = record("first", datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    second = record("second", datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    settings_berlin = {"keep_hourly": 2, "timezone": "Europe/Berlin"}

    plan = plan_retention([first, second], settings_berlin, NOW)

    assert {"second": ("hourly", "newest good"), "first": ("hourly",)} == reasons(plan)


def test_a_day_across_daylight_saving_is_a_calendar_day() -> None:
    # The day after the clocks go back has 25 hours; "1d" reaches back the same local time.
    newest = datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # 00:00 CET on the 26th
    inside = record("inside", datetime(2026, 10, 24, 22, 0, 1, tzinfo=UTC))  # 00:00:01 CEST
    settings_berlin = {"keep_within": "1d", "timezone": "Europe/Berlin"}

    plan = plan_retention([record("newest", newest), inside], settings_berlin, NOW)

    assert ["newest", "inside"] == kept(plan)


def test_bad_settings_are_a_policy_error_with_key_paths() -> None:
    with pytest.raises(PolicyError) as caught:
        plan_retention([], {"keep_daily": 0, "keep_within": "1y2m", "weekly": 3}, NOW)

    locations = {problem.location for problem in caught.value.problems}
    assert {"retention.keep_daily", "retention.keep_within", "retention.weekly"} == locations


# --- the floor -------------------------------------------------------------------------------


def test_the_floor_outlasts_every_rule() -> None:
    records = [
        record("new", NOW - timedelta(hours=1)),
        record("writing", NOW - timedelta(minutes=1), in_progress=True),
        record("future", NOW + timedelta(days=30)),
        record("pinned", NOW - timedelta(days=50), pinned=True),
        record("theirs", NOW - timedelta(days=60), origin=Origin.OTHER_TARGET),
        record("manual", NOW - timedelta(days=70), origin=Origin.FOREIGN),
        record("old", NOW - timedelta(days=80)),
    ]

    plan = plan_retention(records, {"keep_last": 1}, NOW)

    assert ["old"] == [decision.name for decision in plan.delete]
    assert {
        # Outside the rules until its time comes: keep_last 1 goes to "new".
        "future": ("future-dated",),
        "writing": ("being written",),
        "new": ("last", "newest good"),
        "pinned": ("pinned",),
        "theirs": ("other target",),
        "manual": ("not ckptd's",),
        "old": ("no rule keeps it",),
    } == reasons(plan)


def test_the_newest_good_ignores_checkpoints_being_written() -> None:
    records = [
        record("writing", NOW - timedelta(minutes=1), in_progress=True),
        record("good", NOW - timedelta(hours=1)),
    ]

    plan = plan_retention(records, {"keep_within": "1h"}, NOW)

    assert ("within 1h", "newest good") == reasons(plan)["good"]


def test_the_newest_good_of_a_target_with_a_store_is_the_newest_with_a_store_copy() -> None:
    records = [
        record("unstored", NOW - timedelta(minutes=1), unstored=True),
        record("stored", NOW - timedelta(hours=1)),
        record("older", NOW - timedelta(hours=2)),
    ]

    plan = plan_retention(records, {"keep_last": 1}, NOW)

    assert ["unstored", "stored"] == kept(plan)
    assert ("newest good",) == reasons(plan)["stored"]
    assert ("last",) == reasons(plan)["unstored"]


def test_without_any_store_copy_the_newest_is_the_newest_good() -> None:
    records = [
        record("new", NOW - timedelta(minutes=1), unstored=True),
        record("old", NOW - timedelta(hours=1), unstored=True),
    ]

    plan = plan_retention(records, {"keep_within": "1m"}, NOW)

    assert ["new"] == kept(plan)
    assert ("within 1m", "newest good") == reasons(plan)["new"]


# --- the size budget -------------------------------------------------------------------------


def test_the_size_budget_deletes_the_oldest_kept_until_the_rest_fits() -> None:
    records = hourly_records(6, size=GiB)

    plan = plan_retention(records, {"keep_last": 5, "max_total_size": "3GiB"}, NOW)

    assert ["c000", "c001", "c002"] == kept(plan)
    assert ("over size budget",) == reasons(plan)["c003"]
    assert ("no rule keeps it",) == reasons(plan)["c005"]
    assert ("last",) == next(d.rules for d in plan.delete if d.name == "c003")
    assert [] == plan.unmet


def test_a_budget_the_floor_breaks_is_reported_not_forced() -> None:
    records = [
        record("new", NOW - timedelta(hours=1), 2 * GiB),
        record("pinned", NOW - timedelta(hours=2), 2 * GiB, pinned=True),
        record("old", NOW - timedelta(hours=3), 2 * GiB),
    ]

    plan = plan_retention(records, {"max_total_size": "1GiB"}, NOW)

    assert ["new", "pinned"] == kept(plan)
    assert ["max_total_size 1GiB: 4GiB kept, the rest is protected"] == plan.unmet


def test_the_size_budget_counts_only_the_targets_own_checkpoints() -> None:
    records = [
        record("new", NOW - timedelta(hours=1), GiB),
        record("theirs", NOW - timedelta(hours=2), 5 * GiB, origin=Origin.OTHER_TARGET),
        record("old", NOW - timedelta(hours=3), GiB),
    ]

    plan = plan_retention(records, {"max_total_size": "2GiB"}, NOW)

    assert [] == plan.delete


# --- properties ------------------------------------------------------------------------------

COUNTS = st.one_of(st.integers(min_value=1, max_value=6), st.just("unlimited"))
SPANS = st.sampled_from(["30m", "5h", "1d", "3d", "2w", "1mo", "1y2mo3d", "36h"])
RULES = st.fixed_dictionaries(
    {},
    optional={
        **{
            name: COUNTS
            for name in (
                "keep_last",
                "keep_minutely",
                "keep_hourly",
                "keep_daily",
                "keep_weekly",
                "keep_monthly",
                "keep_yearly",
            )
        },
        **{
            name: SPANS
            for name in (
                "keep_within",
                "keep_within_hourly",
                "keep_within_daily",
                "keep_within_weekly",
                "keep_within_monthly",
                "keep_within_yearly",
            )
        },
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
        "max_total_size": st.integers(min_value=0, max_value=40),
    },
)


@st.composite
def record_lists(draw: st.DrawFn, future: bool = True) -> list[CheckpointRecord]:
    """Return up to 40 of a target's checkpoints, hours to years old, some flagged."""
    offsets = draw(
        st.lists(
            st.integers(min_value=-48 if future else 1, max_value=3 * 365 * 24 * 60), max_size=40
        )
    )
    return [
        record(
            f"c{index:02d}",
            NOW - timedelta(minutes=offset),
            draw(st.integers(min_value=0, max_value=8)),
            pinned=draw(st.booleans()) and draw(st.booleans()),
            in_progress=draw(st.integers(min_value=0, max_value=9)) == 0,
        )
        for index, offset in enumerate(offsets)
    ]


@settings(max_examples=150, deadline=None)
@given(record_lists(), RULES, st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_input_order(
    records: list[CheckpointRecord], rules: dict[str, Any], shuffler: Any
) -> None:
    shuffled = list(records)
    shuffler.shuffle(shuffled)

    assert plan_retention(records, rules, NOW) == plan_retention(shuffled, rules, NOW)


@settings(max_examples=150, deadline=None)
@given(record_lists(), RULES)
def test_applying_a_plan_then_planning_again_deletes_nothing_more(
    records: list[CheckpointRecord], rules: dict[str, Any]
) -> None:
    first = plan_retention(records, rules, NOW)

    second = plan_retention([d.record for d in first.keep], rules, NOW)

    assert [] == second.delete


@settings(max_examples=150, deadline=None)
@given(record_lists(), RULES)
def test_the_newest_good_checkpoint_survives_every_rule_set(
    records: list[CheckpointRecord], rules: dict[str, Any]
) -> None:
    good = [r for r in records if not r.in_progress and r.created <= NOW]

    plan = plan_retention(records, rules, NOW)

    if good:
        newest = max(good, key=lambda r: (r.created, r.name))
        assert newest.name in kept(plan)

    deleted = {d.name for d in plan.delete}
    assert not any(r.name in deleted for r in records if r.pinned or r.in_progress)


@settings(max_examples=150, deadline=None)
@given(record_lists(future=False), st.integers(min_value=1, max_value=50))
def test_keep_last_n_keeps_exactly_min_n_count(records: list[CheckpointRecord], n: int) -> None:
    plain = [CheckpointRecord(r.name, r.created) for r in records]

    plan = plan_retention(plain, {"keep_last": n}, NOW)

    assert min(n, len(plain)) == len(plan.keep)


def test_a_clock_that_went_back_costs_no_checkpoint_of_the_real_timeline() -> None:
    # Made while the clock ran a day ahead, then the clock was set right.
    ahead = [record(f"ahead{i}", NOW + timedelta(days=1, hours=i)) for i in range(3)]
    real = hourly_records(5)

    plan = plan_retention(ahead + real, {"keep_last": 3, "keep_within": "2h"}, NOW)

    assert ["ahead2", "ahead1", "ahead0", "c000", "c001", "c002"] == kept(plan)
    assert ("within 2h", "last", "newest good") == reasons(plan)["c000"]
