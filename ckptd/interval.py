"""How far apart a target's scheduled checkpoints are, for `ckptd_expected_interval_seconds`.

Alert rules compare the time since the last good checkpoint with this figure, so it has to say
how long ckptd will wait for the next run from where it stands now: an interval schedule's
`every`, or for a crontab line the gap between the fire times around now (Friday's run of a
"mon-fri" line waits until Monday, three days, not one).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ckptd.policy import Schedule


def expected_interval_seconds(
    schedule: Schedule, now: datetime, jitter: timedelta = timedelta(0)
) -> float:
    """Return the seconds between the schedule's fire time at or just before ``now`` and the next.

    ``jitter`` is how late a run may start after its fire time: a job that calls this at its
    own start passes its target's jitter, so its own fire time counts as the first of the two.
    Called at scheduling time with no jitter, it is the gap between the next two fire times.
    """
    if schedule.every is not None:
        return schedule.every.total_seconds()

    trigger = schedule.build_trigger(timedelta(0))
    # A run starts up to the jitter (and a scheduling tick) after its fire time.
    since = now - jitter - timedelta(seconds=1)
    first = trigger.get_next_fire_time(None, since)
    second = None if first is None else trigger.get_next_fire_time(first, first)

    if first is None or second is None:
        return 0.0  # a schedule that never fires again has no interval to wait for

    # Subtracting two datetimes of one zone gives the wall-clock gap; the real one spans DST.
    return float(second.timestamp() - first.timestamp())
