"""ckptd's metrics on a fresh registry: names, series at 0, and series of dropped targets."""

from __future__ import annotations

import subprocess
import time

from prometheus_client import CollectorRegistry, generate_latest

from ckptd import __version__
from ckptd.metrics import FAILURE_REASONS, Metrics
from tests.tools import require_tool

PAIR = {"target": "solver", "container": "cpp-solver"}


def fresh() -> tuple[CollectorRegistry, Metrics]:
    """Return a new registry and ckptd's metrics on it."""
    registry = CollectorRegistry()
    return registry, Metrics(registry)


def test_every_per_target_series_exists_at_zero_once_declared() -> None:
    registry, metrics = fresh()
    metrics.declare([("solver", "cpp-solver")])

    for name in (
        "ckptd_checkpoint_attempts_total",
        "ckptd_checkpoint_successes_total",
        "ckptd_pruned_total",
        "ckptd_last_success_timestamp_seconds",
        "ckptd_last_attempt_timestamp_seconds",
        "ckptd_last_failure_timestamp_seconds",
        "ckptd_expected_interval_seconds",
        "ckptd_checkpoint_size_bytes",
        "ckptd_retained_bytes",
        "ckptd_checkpoints",
        "ckptd_checkpoint_duration_seconds_count",
    ):
        assert 0 == registry.get_sample_value(name, PAIR), name

    for reason in FAILURE_REASONS:
        labels = {**PAIR, "reason": reason}
        assert 0 == registry.get_sample_value("ckptd_checkpoint_failures_total", labels)


def test_the_old_size_name_is_gone() -> None:
    registry, metrics = fresh()
    metrics.declare([("solver", "cpp-solver")])

    assert b"ckptd_last_checkpoint_size_bytes" not in generate_latest(registry)


def test_build_info_carries_the_version() -> None:
    registry, _ = fresh()

    assert 1 == registry.get_sample_value("ckptd_build_info", {"version": __version__})


def test_scheduled_since_is_set_once_and_kept_across_declarations() -> None:
    registry, metrics = fresh()
    before = time.time()
    metrics.declare([("solver", "cpp-solver")])
    first = registry.get_sample_value("ckptd_target_scheduled_timestamp_seconds", PAIR)
    metrics.declare([("solver", "cpp-solver")])

    assert first is not None
    assert before <= first <= time.time()
    assert first == registry.get_sample_value("ckptd_target_scheduled_timestamp_seconds", PAIR)


def test_forget_others_removes_every_series_of_a_dropped_target_only() -> None:
    registry, metrics = fresh()
    metrics.declare([("solver", "cpp-solver"), ("web", "cpp-web")])
    metrics.engine_up.set(1)
    metrics.forget_others([("web", "cpp-web")])
    text = generate_latest(registry).decode()

    assert 'target="solver"' not in text
    assert 0 == registry.get_sample_value(
        "ckptd_checkpoint_attempts_total", {"target": "web", "container": "cpp-web"}
    )
    assert 1 == registry.get_sample_value("ckptd_engine_up")


def test_a_target_declared_again_after_being_dropped_starts_afresh() -> None:
    registry, metrics = fresh()
    metrics.declare([("solver", "cpp-solver")])
    metrics.last_success.labels("solver", "cpp-solver").set(123)
    metrics.forget_others([])
    metrics.declare([("solver", "cpp-solver")])

    assert 0 == registry.get_sample_value("ckptd_last_success_timestamp_seconds", PAIR)


def test_promtool_accepts_the_exposition() -> None:
    registry, metrics = fresh()
    metrics.declare([("solver", "cpp-solver")])

    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"],
        input=generate_latest(registry).decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 0 == result.returncode, result.stdout + result.stderr
