"""`ckptd run`: schedule each target's checkpoints, serve metrics, stop and reload on signals."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry, start_http_server

from ckptd.backoff import Backoff
from ckptd.catalog import Catalog
from ckptd.checkpointer import Checkpointer
from ckptd.clockwatch import ClockWatch
from ckptd.control import ControlServer
from ckptd.discovery import Discovery
from ckptd.drill import Drill
from ckptd.engine import Engine
from ckptd.errors import CkptdError, PolicyError
from ckptd.failures import failure_reason
from ckptd.interval import expected_interval_seconds
from ckptd.locks import claim_state_dir
from ckptd.metrics import Metrics
from ckptd.notify import Notifier, arm_watchdog
from ckptd.policy import DaemonSettings, Policy, Target, load_policy, store_location
from ckptd.probe import EngineProbe
from ckptd.reconcile import Reconciler
from ckptd.restore import Restorer, restore_at_start
from ckptd.status import StatusBook
from ckptd.store import Store

log = structlog.get_logger("ckptd.daemon")

# How long start-up and reload wait for the first container listing of label selectors.
DISCOVERY_WAIT_S = 10.0


def job_key(target: Target) -> str:
    """Return the scheduler job id of a target, or of a selector's target bound to a container."""
    if target.selector is None:
        return target.name

    return f"{target.name}@{target.container}"


def changed_settings(running: DaemonSettings, loaded: DaemonSettings) -> list[str]:
    """Return the `daemon:` keys whose value differs between the two, in the policy's order."""
    return [
        key for key in DaemonSettings.model_fields if getattr(running, key) != getattr(loaded, key)
    ]


class Daemon:
    """The long-running service: one scheduler job per target, bounded concurrency."""

    def __init__(self, policy_path: Path, policy: Policy, engine: Engine) -> None:
        self.policy_path = policy_path
        self.policy = policy
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.catalog = Catalog(policy.daemon.state_dir)
        self.checkpointer = Checkpointer(engine, self.metrics, self.catalog, daemon=policy.daemon)
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
        self.notifier = Notifier()
        self.status = StatusBook()
        self.discovery: Discovery | None = None
        self.control: ControlServer | None = None
        # Job id -> the target it runs (for a selector, bound to one container).
        self._jobs: dict[str, Target] = {}
        self._sync_lock = threading.RLock()
        self.drill = Drill(engine, self.catalog, self.metrics)
        # Drill job id -> its target, beside the checkpoint jobs.
        self._drills: dict[str, Target] = {}

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit status."""
        settings = self.policy.daemon
        # Held until the process exits: the file object must stay referenced.
        self._state_lock = claim_state_dir(settings.state_dir)
        try:
            self.control = ControlServer(settings.control_socket, self._answer)
        except OSError as error:
            raise CkptdError(
                f"cannot listen on daemon.control_socket {settings.control_socket}: {error}"
            ) from error

        self._install_signal_handlers()
        self.probe.start()
        # Resolve what a crash left before any new checkpoint of those containers; each holds
        # its container's lock, so a job of that container waits for it, others do not.
        threading.Thread(target=self._reconcile, name="reconcile", daemon=True).start()
        threading.Thread(target=self._restore_on_start, name="restore", daemon=True).start()
        self._schedule(self.policy)
        self._loaded()
        # Serve only once every target's series exist and the engine was probed, so the first
        # scrape already sees them (at 0) rather than an empty or "engine down" page.
        try:
            start_http_server(settings.metrics_port, settings.metrics_host, registry=self.registry)
        except OSError as error:
            raise CkptdError(
                f"cannot serve metrics on daemon.metrics_address {settings.metrics_address}: "
                f"{error.strerror or error}; is another ckptd or service listening there, or is "
                "the address not one of this host's?"
            ) from error

        log.info("metrics_listening", address=settings.metrics_address)
        self.scheduler.start()
        arm_watchdog(self.scheduler, self.notifier)
        self.control.start()
        log.info("daemon_started", policy=str(self.policy_path), targets=len(self.policy.targets))
        self.notifier.ready(self._summary())

        clock = ClockWatch()
        while not self.stop_requested.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            jump = clock.check()
            if jump is not None:
                self._rearm_after_jump(jump)
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
        """Make the jobs match ``policy``: add, replace and remove only what changed."""
        self.policy = policy
        if self.discovery is None and any(t.selector for t in policy.targets):
            self.discovery = Discovery(
                Engine(self.checkpointer.engine.address), self._sync_jobs, self._selected
            )
            self.discovery.start()
            # READY=1 should mean the schedule is armed, discovered containers included.
            if not self.discovery.wait_connected(DISCOVERY_WAIT_S):
                log.warning("discovery_not_connected", waited_s=DISCOVERY_WAIT_S)

        self._sync_jobs()

    def _wanted_jobs(self) -> dict[str, Target]:
        """Return job id -> target for the policy and the containers discovered now."""
        jobs: dict[str, Target] = {}
        for target in self.policy.targets:
            if target.selector is None:
                jobs[job_key(target)] = target
                continue

            matched = self.discovery.matching(target.selector) if self.discovery else []
            jobs.update({job_key(bound): bound for bound in map(target.bound, matched)})

        return jobs

    def _sync_jobs(self) -> None:
        """Add, replace or remove jobs; a removed job's running checkpoint finishes undisturbed."""
        with self._sync_lock:
            wanted = self._wanted_jobs()
            self.metrics.forget_others([(t.name, t.container) for t in wanted.values()])
            for job_id in sorted(set(self._jobs) - set(wanted)):
                gone = self._jobs.pop(job_id)
                self.scheduler.remove_job(job_id)
                log.info("target_unscheduled", target=gone.name, container=gone.container)

            added = [(i, t) for i, t in wanted.items() if self._jobs.get(i) != t]
            for job_id, target in added:
                self.metrics.declare([(target.name, target.container)])
                self._set_expected_interval(target)
                self.scheduler.add_job(
                    self._job,
                    trigger=target.schedule.build_trigger(target.jitter),
                    args=[target],
                    id=job_id,
                    name=f"checkpoint {target.name} of {target.container}",
                    replace_existing=True,
                )
                self._jobs[job_id] = target
                log.info("target_scheduled", target=target.name, container=target.container)

            self._sync_drills(wanted)

        for _, target in added:
            self._take_inventory(target)

    def _sync_drills(self, wanted: dict[str, Target]) -> None:
        """Keep one restore-drill job per target with ``verify``, beside its checkpoint job."""
        drills = {f"{i}#verify": t for i, t in wanted.items() if t.verify is not None}
        for job_id in sorted(set(self._drills) - set(drills)):
            self._drills.pop(job_id)
            self.scheduler.remove_job(job_id)

        for job_id, target in drills.items():
            if self._drills.get(job_id) == target or target.verify is None:
                continue

            self.scheduler.add_job(
                self._drill_job,
                trigger=IntervalTrigger(
                    seconds=target.verify.every.total_seconds(), timezone="UTC"
                ),
                args=[target],
                id=job_id,
                name=f"restore drill {target.name} of {target.container}",
                replace_existing=True,
            )
            self._drills[job_id] = target

    def _drill_job(self, target: Target) -> None:
        root = store_location(self.policy.daemon, target)
        if self.stop_requested.is_set() or root is None:
            return

        with self._idle:
            self._in_flight += 1
        try:
            self.drill.run(target, Store(root))
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _restore_on_start(self) -> None:
        """Restore each ``restore_on_start`` target whose container exists but is stopped."""
        engine = self.checkpointer.engine
        for target in self.policy.targets:
            if not target.restore_on_start or not target.container:
                continue

            root = store_location(self.policy.daemon, target)
            restorer = Restorer(engine, None if root is None else Store(root), self.catalog)
            try:
                container = engine.container(target.container)
            except CkptdError as error:
                log.warning("restore_on_start_skipped", target=target.name, error=str(error))
                continue

            with self.checkpointer.container_lock(container):
                restore_at_start(restorer, target, self.metrics)

    def _take_inventory(self, target: Target) -> None:
        """Record the target's existing checkpoints (count, size, newest) for status and metrics."""
        # Times and sizes from the catalog, as retention and `list` read them.
        records = self.checkpointer.refresh(target)

        if records is None:
            return  # logged by refresh; the next run records what it finds

        sizes = [record.size_bytes for record in records]
        total = None if None in sizes else sum(size or 0 for size in sizes)
        newest = (records[0].name, records[0].created) if records else None
        self.status.record_inventory(target.name, target.container, len(records), total, newest)

    def _selected(self, labels: Mapping[str, str]) -> bool:
        """Return whether a selector of the running policy picks a container with ``labels``."""
        selectors = [target.selector for target in self.policy.targets if target.selector]
        return any(selector.matches(dict(labels)) for selector in selectors)

    def _loaded(self) -> None:
        self.metrics.reload_successful.set(1)
        self.metrics.reload_success_time.set(time.time())

    def _summary(self) -> str:
        """Return the one-line STATUS= for systemd."""
        with self._sync_lock:
            jobs = len(self._jobs)

        return f"{len(self.policy.targets)} target(s), {jobs} container(s) scheduled"

    def _answer(self, command: str) -> dict[str, Any]:
        """Answer a control-socket request."""
        if command != "status":
            return {"error": f"unknown command {command!r}; expected 'status'"}

        with self._sync_lock:
            jobs = dict(self._jobs)

        scheduled: dict[tuple[str, str], datetime | None] = {}
        for job_id, target in jobs.items():
            job = self.scheduler.get_job(job_id)
            scheduled[(target.name, target.container)] = job.next_run_time if job else None

        names = [target.name for target in self.policy.targets]
        answer = self.status.snapshot(names, scheduled, datetime.now(UTC))
        answer["policy"] = str(self.policy_path)
        answer["pid"] = os.getpid()
        return answer

    def _rearm_after_jump(self, jump_s: float) -> None:
        """Plan every job afresh from the new time: no catch-up burst, no stall after a jump."""
        with self._sync_lock:
            jobs = dict(self._jobs)
            for job_id, target in jobs.items():
                self.scheduler.reschedule_job(
                    job_id, trigger=target.schedule.build_trigger(target.jitter)
                )

        log.warning("clock_jumped", jump_s=round(jump_s, 1), rescheduled=len(jobs))

    def _reconcile(self) -> None:
        reconciler = Reconciler(
            self.checkpointer.engine,
            self.catalog,
            self.checkpointer.container_lock,
            store_for=self._store_of,
        )
        resolutions = reconciler.run()
        roots = {self._store_of(target.name) for target in self.policy.targets}
        stored = reconciler.complete_store_copies(sorted(r for r in roots if r is not None))
        log.info("reconcile_done", resolved=len(resolutions), store_copies=len(stored))

    def _store_of(self, target_name: str) -> Path | None:
        """Return where target ``target_name``'s checkpoints are stored (None: engine only)."""
        named = [target for target in self.policy.targets if target.name == target_name]
        return store_location(self.policy.daemon, named[0] if named else None)

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as error:
            self.metrics.reload_successful.set(0)
            problems = [problem.render() for problem in error.problems]
            log.error("reload_rejected", policy=str(self.policy_path), problems=problems)
            self.status.record_reload(problems, datetime.now(UTC))
            self.notifier.ready(f"policy reload rejected, previous policy kept; {self._summary()}")
            return

        if policy.daemon != self.policy.daemon:
            log.warning(
                "daemon_settings_need_restart",
                policy=str(self.policy_path),
                changed=[
                    f"daemon.{key}" for key in changed_settings(self.policy.daemon, policy.daemon)
                ],
            )
            # The running daemon keeps its listeners and pool; only the targets change.
            policy = policy.model_copy(update={"daemon": self.policy.daemon})

        self._schedule(policy)
        self._loaded()
        self.status.record_reload([], datetime.now(UTC))
        log.info("policy_reloaded", policy=str(self.policy_path), targets=len(policy.targets))
        self.notifier.ready(self._summary())

    def _set_expected_interval(self, target: Target, jitter: timedelta = timedelta(0)) -> None:
        seconds = expected_interval_seconds(target.schedule, datetime.now(UTC), jitter)
        self.metrics.expected_interval.labels(target.name, target.container).set(seconds)

    def _job(self, target: Target) -> None:
        if self.stop_requested.is_set():
            return

        # A crontab line's gaps differ (Friday to Monday); measure the one this run starts.
        self._set_expected_interval(target, target.jitter)

        if self.backoff.should_skip(job_key(target)):
            log.warning(
                "checkpoint_backed_off",
                target=target.name,
                failures_in_a_row=self.backoff.failures(job_key(target)),
            )
            return

        with self._idle:
            self._in_flight += 1
        try:
            log.info("checkpoint_starting", target=target.name, container=target.container)
            result = self.checkpointer.run(target)
            self.backoff.record(job_key(target), None)
        except CkptdError as error:
            # Recorded and logged by the checkpointer; the next run tries again.
            reason = failure_reason(error)
            self.backoff.record(job_key(target), reason)
            self.status.record_failure(
                target.name, target.container, reason, str(error), datetime.now(UTC)
            )
        else:
            self.status.record_success(
                target.name, target.container, result.checkpoint, datetime.now(UTC)
            )
            self._take_inventory(target)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _stop(self) -> int:
        """Stop scheduling, wait (bounded) for in-flight checkpoints, and return 0."""
        timeout = self.policy.daemon.stop_timeout.total_seconds()
        log.info("daemon_stopping", in_flight=self._in_flight, wait_s=timeout)
        self.notifier.stopping()
        self.scheduler.shutdown(wait=False)
        self.probe.stop()
        if self.discovery is not None:
            self.discovery.stop()

        if self.control is not None:
            self.control.close()

        with self._idle:
            finished = self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

        if not finished:
            # The engine finishes the dump on its own; waiting longer only delays the restart.
            log.warning("daemon_stopped_with_checkpoint_in_flight", in_flight=self._in_flight)
            os._exit(0)

        log.info("daemon_stopped")
        return 0
