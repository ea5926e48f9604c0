"""Backoff: the first failure retried at once, then runs skipped in doubling numbers."""

from __future__ import annotations

from ckptd.backoff import MAX_BACKOFF_S, Backoff


def runs(backoff: Backoff, count: int) -> list[bool]:
    """Return, for ``count`` scheduled runs, whether each would run (a failure each time)."""
    taken = []
    for _ in range(count):
        skip = backoff.should_skip("t")
        taken.append(not skip)
        if not skip:
            backoff.record("t", "criu_failed")

    return taken


def test_repeated_failures_skip_one_then_three_then_seven_runs() -> None:
    taken = runs(Backoff(lambda: 0.0), 16)

    assert [True, True, False, True, False, False, False, True] == taken[:8]
    assert [0, 1, 3, 7, 15] == [n for n, ran in enumerate(taken) if ran]


def test_a_success_or_an_engine_outage_resets_the_backoff() -> None:
    backoff = Backoff(lambda: 0.0)
    runs(backoff, 4)
    backoff.record("t", None)
    assert not backoff.should_skip("t")

    runs(backoff, 4)
    backoff.record("t", "engine_unavailable")
    assert 0 == backoff.failures("t")


def test_the_backoff_ends_after_its_time_cap() -> None:
    now = [0.0]
    backoff = Backoff(lambda: now[0])
    runs(backoff, 2)
    now[0] = MAX_BACKOFF_S + 1

    assert not backoff.should_skip("t")
