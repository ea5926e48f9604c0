"""`ckptd_expected_interval_seconds`: the gap to the next scheduled run, from the schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ckptd.interval import expected_interval_seconds
from ckptd.policy import Schedule

THURSDAY_NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def schedule(**fields: object) -> Schedule:
    """Return a validated schedule from policy-file fields."""
    return Schedule.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"every": "2s"}, 2.0),
        ({"every": "5m"}, 300.0),
        ({"every": "1d"}, 86400.0),
        ({"cron": "*/15 * * * *"}, 900.0),
        ({"cron": "0 3 * * *"}, 86400.0),
        # Thursday noon: the next two runs are Friday and Monday.
        ({"cron": "0 9 * * mon-fri"}, 3 * 86400.0),
    ],
)
def test_expected_interval_from_the_schedule(fields: dict[str, object], expected: float) -> None:
    assert expected == expected_interval_seconds(schedule(**fields), THURSDAY_NOON)


def test_weekday_cron_on_a_wednesday_is_one_day() -> None:
    wednesday = THURSDAY_NOON - timedelta(days=1)

    assert 86400.0 == expected_interval_seconds(schedule(cron="0 9 * * mon-fri"), wednesday)


def test_a_run_started_within_its_jitter_measures_the_gap_it_starts() -> None:
    friday_run = datetime(2026, 12, 4, 9, 0, 20, tzinfo=UTC)
    weekdays = schedule(cron="0 9 * * mon-fri")

    assert 3 * 86400.0 == expected_interval_seconds(weekdays, friday_run, timedelta(seconds=30))


def test_cron_across_a_daylight_saving_change_follows_the_wall_clock() -> None:
    # Europe/Berlin moves from CET to CEST on 2026-03-29: that day is 23 hours long.
    night_before = datetime(2026, 3, 28, 1, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    nightly = schedule(cron="30 3 * * *", timezone="Europe/Berlin")

    assert 23 * 3600.0 == expected_interval_seconds(nightly, night_before)
