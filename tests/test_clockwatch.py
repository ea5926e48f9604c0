"""Telling a wall-clock jump from time passing."""

from __future__ import annotations

from ckptd.clockwatch import JUMP_THRESHOLD_S, ClockWatch


def test_time_passing_is_no_jump_and_steps_either_way_are() -> None:
    wall, mono = [1000.0], [5.0]
    watch = ClockWatch(lambda: wall[0], lambda: mono[0])

    wall[0] += 60
    mono[0] += 60
    assert watch.check() is None

    wall[0] += 86_400 + 1
    mono[0] += 1
    assert 86_400 == watch.check()

    wall[0] -= 3 * 86_400
    mono[0] += 1
    assert -3 * 86_400 - 1 == watch.check()

    wall[0] += JUMP_THRESHOLD_S / 2
    assert watch.check() is None
