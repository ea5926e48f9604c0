"""Prometheus metrics, on a registry the caller owns (never the global one)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from ckptd import __version__
from ckptd.failures import FAILURE_REASONS

__all__ = ["FAILURE_REASONS", "Metrics"]

# From a small process on a fast disk (0.1 s) to a multi-GiB one through dockerd (minutes).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
# CRIU's frozen time: tens of milliseconds for a small process, seconds for many GiB.
FROZEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """ckptd's metrics, labelled by target and container."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["target", "container"]
        self.attempts = Counter(
            "ckptd_checkpoint_attempts",
            "Checkpoints ckptd started.",
            labels,
            registry=registry,
        )
        self.successes = Counter(
            "ckptd_checkpoint_successes",
            "Checkpoints the engine completed.",
            labels,
            registry=registry,
        )
        self.failures = Counter(
            "ckptd_checkpoint_failures",
            "Checkpoints that failed, by reason.",
            [*labels, "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "ckptd_checkpoint_duration_seconds",
            "Time the engine took to create a successful checkpoint.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "ckptd_last_success_timestamp_seconds",
            "Unix time of the last successful checkpoint (0: none since start).",
            labels,
            registry=registry,
        )
        self.last_attempt = Gauge(
            "ckptd_last_attempt_timestamp_seconds",
            "Unix time ckptd last started a checkpoint of the target (0: none since start).",
            labels,
            registry=registry,
        )
        self.last_failure = Gauge(
            "ckptd_last_failure_timestamp_seconds",
            "Unix time the last failed checkpoint run of the target ended (0: none since start).",
            labels,
            registry=registry,
        )
        self.expected_interval = Gauge(
            "ckptd_expected_interval_seconds",
            "Seconds from one scheduled checkpoint of the target to the next.",
            labels,
            registry=registry,
        )
        self.scheduled_since = Gauge(
            "ckptd_target_scheduled_timestamp_seconds",
            "Unix time this ckptd process began scheduling the target.",
            labels,
            registry=registry,
        )
        self.size = Gauge(
            "ckptd_checkpoint_size_bytes",
            "Bytes on disk of the target's last successful checkpoint.",
            labels,
            registry=registry,
        )
        self.retained = Gauge(
            "ckptd_retained_bytes",
            "Bytes on disk of ckptd's checkpoints of the target that exist now.",
            labels,
            registry=registry,
        )
        self.kept = Gauge(
            "ckptd_checkpoints",
            "ckptd's checkpoints of the target that exist now.",
            labels,
            registry=registry,
        )
        self.pruned = Counter(
            "ckptd_pruned",
            "Checkpoints deleted by retention.",
            labels,
            registry=registry,
        )
        self.frozen = Histogram(
            "ckptd_app_frozen_seconds",
            "How long CRIU kept the container's processes frozen, where the engine reports it.",
            labels,
            buckets=FROZEN_BUCKETS,
            registry=registry,
        )
        self.engine_up = Gauge(
            "ckptd_engine_up",
            "1 when the engine answered ckptd's last call to it, 0 when it could not be reached.",
            registry=registry,
        )
        self.budget_unmet = Gauge(
            "ckptd_retention_budget_unmet",
            "1 when a retention budget (max_total_size, min_free_disk) cannot be met without "
            "deleting a protected checkpoint.",
            labels,
            registry=registry,
        )
        self.restores = Counter(
            "ckptd_restores",
            "Restores ckptd ran (CLI, restore_on_start, drills), by result: ok or failed.",
            [*labels, "result"],
            registry=registry,
        )
        self.verify_last_success = Gauge(
            "ckptd_restore_verify_last_success_timestamp_seconds",
            "Unix time the last restore drill of the target passed (0: none since start).",
            labels,
            registry=registry,
        )
        self.verify_failures = Counter(
            "ckptd_restore_verify_failures",
            "Restore drills that failed (damaged checkpoint, restore failed, clone died, probe).",
            labels,
            registry=registry,
        )
        self.verify_duration = Histogram(
            "ckptd_restore_verify_duration_seconds",
            "Time a restore drill took, from checksum check to the clone's removal.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.build_info = Gauge(
            "ckptd_build_info",
            "Always 1; the version label says which ckptd is running.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(__version__).set(1)
        self._declared: set[tuple[str, str]] = set()

        # Set by the daemon at start-up and on each SIGHUP (the names Prometheus itself uses).
        self.reload_successful = Gauge(
            "ckptd_config_last_reload_successful",
            "1 when the last policy load (start or SIGHUP) succeeded, 0 when it was rejected.",
            registry=registry,
        )
        self.reload_success_time = Gauge(
            "ckptd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful policy load.",
            registry=registry,
        )

    def declare(self, targets: Iterable[tuple[str, str]]) -> None:
        """Create every series at 0 for each (target, container), so absence means no data."""
        for target, container in targets:
            for counter in (self.attempts, self.successes, self.pruned):
                counter.labels(target, container)

            for gauge in self._target_gauges():
                gauge.labels(target, container)

            for reason in FAILURE_REASONS:
                self.failures.labels(target, container, reason)

            self.duration.labels(target, container)
            self.frozen.labels(target, container)
            for result in ("ok", "failed"):
                self.restores.labels(target, container, result)
            self.verify_failures.labels(target, container)
            self.verify_last_success.labels(target, container)
            self.verify_duration.labels(target, container)
            if (target, container) not in self._declared:
                self.scheduled_since.labels(target, container).set_to_current_time()
                self._declared.add((target, container))

    def forget_others(self, targets: Iterable[tuple[str, str]]) -> None:
        """Remove the series of every declared (target, container) not in ``targets``.

        A target dropped from the policy would otherwise keep its last-success time for
        ever, and a staleness alert would fire for something nobody asks ckptd to do.
        """
        keep = set(targets)
        labelled = [m for m in vars(self).values() if isinstance(m, MetricWrapperBase)]
        for target, container in self._declared - keep:
            for metric in labelled:
                # A metric without these labels (engine_up, build_info) refuses; it has none.
                with suppress(ValueError):
                    metric.remove_by_labels({"target": target, "container": container})

        self._declared &= keep

    def _target_gauges(self) -> tuple[Gauge, ...]:
        """Return the per-target gauges that start at 0."""
        return (
            self.last_success,
            self.last_attempt,
            self.last_failure,
            self.expected_interval,
            self.size,
            self.retained,
            self.kept,
            self.budget_unmet,
        )
