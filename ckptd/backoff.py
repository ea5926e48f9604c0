"""Backing off a target whose checkpoints keep failing, so a broken container is not hammered.

The first failure is retried on the next scheduled run; after that each further failure in a
row doubles the number of runs skipped, up to a cap in runs and in time. Counting runs rather
than wall-clock time keeps the backoff unaffected by clock jumps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Reasons that say nothing about the container: waiting longer would not help them.
NO_BACKOFF = frozenset({"engine_unavailable", "container_not_running", "container_not_found"})
MAX_SKIPPED_RUNS = 15
MAX_BACKOFF_S = 3600.0


@dataclass
class _State:
    failures: int = 0
    skipped: int = 0
    failed_at: float = 0.0


class Backoff:
    """Per-target record of failures in a row; says which scheduled runs to skip."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._states: dict[str, _State] = {}
        self._monotonic = monotonic

    def should_skip(self, target: str) -> bool:
        """Return True when this scheduled run of ``target`` is to be skipped (and count it)."""
        state = self._states.get(target)

        if state is None or state.failures < 2:
            return False

        allowed = min(2 ** (state.failures - 1) - 1, MAX_SKIPPED_RUNS)

        if state.skipped >= allowed or self._monotonic() - state.failed_at >= MAX_BACKOFF_S:
            return False

        state.skipped += 1

        return True

    def record(self, target: str, reason: str | None) -> None:
        """Record the outcome of a run: ``reason`` None for success, else the failure reason."""
        if reason is None or reason in NO_BACKOFF:
            self._states.pop(target, None)

            return

        state = self._states.setdefault(target, _State())
        state.failures += 1
        state.skipped = 0
        state.failed_at = self._monotonic()

    def failures(self, target: str) -> int:
        """Return how many runs of ``target`` failed in a row."""
        state = self._states.get(target)

        return 0 if state is None else state.failures
