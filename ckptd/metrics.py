"""Prometheus metrics, on a registry the caller owns (never the global one)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Failure reasons are a closed set so the label stays bounded; each starts at 0.
FAILURE_REASONS = ("container_not_found", "engine_unavailable", "checkpoint_failed", "timeout")

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
        self.size = Gauge(
            "ckptd_last_checkpoint_size_bytes",
            "Bytes on disk of the last successful checkpoint.",
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

    def declare(self, targets: Iterable[tuple[str, str]]) -> None:
        """Create every series at 0 for each (target, container), so absence means no data."""
        for target, container in targets:
            for counter in (self.attempts, self.successes, self.pruned):
                counter.labels(target, container)
            for gauge in (self.last_success, self.size, self.kept):
                gauge.labels(target, container)
            for reason in FAILURE_REASONS:
                self.failures.labels(target, container, reason)
            self.duration.labels(target, container)
            self.frozen.labels(target, container)
