"""Noticing when the wall clock jumps (NTP step, a VM resumed, an operator's `date -s`).

The scheduler plans runs in wall-clock time. After a jump forward it would see every run as
overdue, after a jump back it would wait until the clock catches up (hours, days). Comparing
the wall clock with the monotonic clock, which never jumps, tells a jump from time passing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Seconds of disagreement taken as a jump rather than drift or a slow loop.
JUMP_THRESHOLD_S = 5.0


class ClockWatch:
    """Compares wall-clock and monotonic time between calls to `check`."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._last = (wall(), monotonic())

    def check(self) -> float | None:
        """Return how far the wall clock jumped since the last call (seconds), or None."""
        wall, mono = self._wall(), self._monotonic()
        jump = (wall - self._last[0]) - (mono - self._last[1])
        self._last = (wall, mono)

        return jump if abs(jump) >= JUMP_THRESHOLD_S else None
