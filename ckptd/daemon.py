"""`ckptd run`: schedule each target's checkpoints, serve metrics, stop and reload on signals."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry, start_http_server

from ckptd.backoff import Backoff
from ckptd.catalog import Catalog
from ckptd.checkpointer import Checkpointer
from ckptd.engine import Engine
from ckptd.errors import CkptdError, PolicyError
from ckptd.failures import failure_reason
from ckptd.interval import expected_interval_seconds
from ckptd.metrics import Metrics
from ckptd.policy import Policy, Target, load_policy
from ckptd.probe import EngineProbe
from ckptd.reconcile import Reconciler

log = structlog.get_logger("ckptd.daemon")


class Daemon:
    """The long-running service: one scheduler job per target, bounded concurrency."""

    def __init__(self, policy_path: Path, policy: Policy, engine: Engine) -> None:
        self.policy_path = policy_path
        self.policy = policy
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.catalog = Catalog(policy.daemon.state_dir)
        self.checkpointer = Checkpointer(engine, self.metrics, self.catalog)
        self.backoff = Backoff()
        self.probe = EngineProbe(engine, self.metrics)
        self.stop_requested = threading.Event()
        self.reload_requested = threading.Event()
        self._wake = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(policy.daemon.max_concurrent)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status."""
        settings = self.policy.daemon
        start_http_server(settings.metrics_port, settings.metrics_host, registry=self.registry)
        log.info("metrics_listening", address=settings.metrics_address)

        self._install_signal_handlers()
        self.probe.start()
        # Resolve what a crash left before any new checkpoint of those containers; each holds
        # its container's lock, so a job of that container waits for it, others do not.
        threading.Thread(target=self._reconcile, name="reconcile", daemon=True).start()
        self._schedule(self.policy)
        self.scheduler.start()
        log.info("daemon_started", policy=str(self.policy_path), targets=len(self.policy.targets))

        while not self.stop_requested.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()

        return self._stop()

    def _install_signal_handlers(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self.stop_requested.set()
            self._wake.set()

        def on_reload(signum: int, _frame: FrameType | None) -> None:
            self.reload_requested.set()
            self._wake.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_reload)

    def _schedule(self, policy: Policy) -> None:
        """Replace all jobs with one per target of ``policy``."""
        self.scheduler.remove_all_jobs()
        pairs = [(t.name, t.container) for t in policy.targets]
        self.metrics.forget_others(pairs)
        self.metrics.declare(pairs)

        for target in policy.targets:
            self._set_expected_interval(target)
            self.checkpointer.refresh(target)
            self.scheduler.add_job(
                self._job,
                trigger=target.schedule.build_trigger(target.jitter),
                args=[target],
                id=target.name,
                name=f"checkpoint {target.name}",
            )
            log.info("target_scheduled", target=target.name, container=target.container)

    def _reconcile(self) -> None:
        reconciler = Reconciler(
            self.checkpointer.engine, self.catalog, self.checkpointer.container_lock
        )
        resolutions = reconciler.run()
        log.info("reconcile_done", resolved=len(resolutions))

    def _reload(self) -> None:
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as error:
            log.error("reload_rejected", policy=str(self.policy_path), problems=str(error))
            return

        if policy.daemon != self.policy.daemon:
            log.warning("daemon_settings_need_restart", policy=str(self.policy_path))

        self.policy = policy
        self._schedule(policy)
        log.info("policy_reloaded", policy=str(self.policy_path), targets=len(policy.targets))

    def _set_expected_interval(self, target: Target, jitter: timedelta = timedelta(0)) -> None:
        seconds = expected_interval_seconds(target.schedule, datetime.now(UTC), jitter)
        self.metrics.expected_interval.labels(target.name, target.container).set(seconds)

    def _job(self, target: Target) -> None:
        if self.stop_requested.is_set():
            return

        # A crontab line's gaps differ (Friday to Monday); measure the one this run starts.
        self._set_expected_interval(target, target.jitter)

        if self.backoff.should_skip(target.name):
            log.warning(
                "checkpoint_backed_off",
                target=target.name,
                failures_in_a_row=self.backoff.failures(target.name),
            )
            return

        with self._idle:
            self._in_flight += 1
        try:
            self.checkpointer.run(target)
            self.backoff.record(target.name, None)
        except CkptdError as error:
            # Recorded and logged by the checkpointer; the next run tries again.
            self.backoff.record(target.name, failure_reason(error))
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _stop(self) -> int:
        """Stop scheduling, wait (bounded) for in-flight checkpoints, and return 0."""
        timeout = self.policy.daemon.stop_timeout.total_seconds()
        log.info("daemon_stopping", in_flight=self._in_flight, wait_s=timeout)
        self.scheduler.shutdown(wait=False)
        self.probe.stop()

        with self._idle:
            finished = self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

        if not finished:
            # The engine finishes the dump on its own; waiting longer only delays the restart.
            log.warning("daemon_stopped_with_checkpoint_in_flight", in_flight=self._in_flight)
            os._exit(0)

        log.info("daemon_stopped")
        return 0
