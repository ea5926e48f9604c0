"""One unit of ckptd's work: checkpoint a target's container, then prune its old checkpoints."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ckptd import runc
from ckptd.engine import ContainerInfo, Engine
from ckptd.errors import (
    CheckpointFailedError,
    CkptdError,
    ContainerNotFoundError,
    EngineNotReadyError,
)
from ckptd.metrics import Metrics
from ckptd.naming import checkpoints_of, make_checkpoint_name
from ckptd.policy import Target
from ckptd.retention import plan_prune

log = structlog.get_logger("ckptd.checkpointer")


def default_lock_dir() -> Path:
    """Return where per-container lock files live (shared by the daemon and the CLI)."""
    configured = os.environ.get("CKPTD_LOCK_DIR")
    if configured:
        return Path(configured)

    run = Path("/run/ckptd")
    if os.access("/run", os.W_OK) or run.is_dir():
        return run

    return Path(tempfile.gettempdir()) / "ckptd-locks"


def failure_reason(error: CkptdError) -> str:
    """Return the metric label for a failed checkpoint (one of metrics.FAILURE_REASONS)."""
    if isinstance(error, ContainerNotFoundError):
        return "container_not_found"

    if isinstance(error, EngineNotReadyError):
        return "engine_unavailable"

    if isinstance(error, CheckpointFailedError) and "no answer within" in error.reason:
        return "timeout"

    return "checkpoint_failed"


@dataclass
class CheckpointResult:
    """What one successful run did."""

    target: str
    container: str
    checkpoint: str
    duration_s: float
    size_bytes: int | None
    pruned: list[str] = field(default_factory=list)
    kept: int = 0
    engine: str = "docker"
    frozen_s: float | None = None


class Checkpointer:
    """Takes checkpoints for targets: names them, records metrics, prunes."""

    def __init__(
        self,
        engine: Engine,
        metrics: Metrics,
        lock_dir: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.lock_dir = lock_dir or default_lock_dir()
        self.clock = clock

    @contextmanager
    def _container_lock(self, container: ContainerInfo) -> Iterator[None]:
        """Hold an exclusive lock on the container, across threads and processes.

        flock is per open file, so two threads (two targets on one container) or the daemon
        and `ckptd checkpoint` exclude each other the same way.
        """
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / f"{container.id}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def run(self, target: Target) -> CheckpointResult:
        """Checkpoint ``target`` now and prune; raise CkptdError after recording the failure."""
        bound = log.bind(target=target.name, container=target.container)
        self.metrics.attempts.labels(target.name, target.container).inc()
        self.metrics.last_attempt.labels(target.name, target.container).set_to_current_time()
        try:
            result = self._checkpoint_and_prune(target)
        except CkptdError as error:
            reason = failure_reason(error)
            self.metrics.failures.labels(target.name, target.container, reason).inc()
            self.metrics.last_failure.labels(target.name, target.container).set_to_current_time()
            self._record_engine(reason)
            bound.error("checkpoint_failed", reason=reason, error=str(error))
            raise

        self.metrics.engine_up.set(1)

        bound.info(
            "checkpoint_done",
            checkpoint=result.checkpoint,
            duration_s=round(result.duration_s, 3),
            size_bytes=result.size_bytes,
            engine=result.engine,
            frozen_s=result.frozen_s,
            pruned=result.pruned,
            kept=result.kept,
        )
        return result

    def _record_engine(self, reason: str) -> None:
        """Set ckptd_engine_up from how a failed run ended."""
        if reason == "engine_unavailable":
            self.metrics.engine_up.set(0)
        elif reason != "timeout":
            # The engine answered, if only with a refusal; a timeout says nothing either way.
            self.metrics.engine_up.set(1)

    def _checkpoint_and_prune(self, target: Target) -> CheckpointResult:
        container = self.engine.container(target.container)
        with self._container_lock(container):
            existing = self.engine.list_checkpoints(container.id)
            name = make_checkpoint_name(target.name, self.clock(), existing)
            duration, engine, frozen = self._create(target, container, name)

        labels = (target.name, target.container)
        size = self.engine.checkpoint_size(container.id, name)
        if frozen is not None:
            self.metrics.frozen.labels(*labels).observe(frozen)

        self.metrics.successes.labels(*labels).inc()
        self.metrics.duration.labels(*labels).observe(duration)
        self.metrics.last_success.labels(*labels).set(time.time())
        if size is not None:
            self.metrics.size.labels(*labels).set(size)

        result = CheckpointResult(target.name, target.container, name, duration, size)
        result.engine, result.frozen_s = engine, frozen
        self._prune(target, container, newest_good=name, result=result)
        return result

    def _create(
        self, target: Target, container: ContainerInfo, name: str
    ) -> tuple[float, str, float | None]:
        """Create the checkpoint; return its duration, the engine used and CRIU's frozen time."""
        direct = runc.find(self.engine, container.id) if target.engine == "runc" else None
        started = time.monotonic()
        try:
            if direct is None:
                self.engine.create_checkpoint(container.id, name, target.leave_running)
                return time.monotonic() - started, "docker", None

            stats = runc.checkpoint(direct, name)
        except CheckpointFailedError:
            self._discard_partial(container, name)
            raise

        return time.monotonic() - started, "runc", None if stats is None else stats.frozen_s

    def _discard_partial(self, container: ContainerInfo, name: str) -> None:
        """Remove what a failed attempt left under its fresh name, so it never counts as good."""
        try:
            if name in self.engine.list_checkpoints(container.id):
                self.engine.delete_checkpoint(container.id, name)
                log.warning("partial_checkpoint_removed", container=container.name, checkpoint=name)
        except CkptdError as error:
            log.warning("partial_checkpoint_left", checkpoint=name, error=str(error))

    def _prune(
        self, target: Target, container: ContainerInfo, newest_good: str, result: CheckpointResult
    ) -> None:
        refs = checkpoints_of(target.name, self.engine.list_checkpoints(container.id))
        plan = plan_prune(refs, target.retention.keep_last, newest_good)
        labels = (target.name, target.container)

        for ref in plan.delete:
            try:
                self.engine.delete_checkpoint(container.id, ref.name)
            except CkptdError as error:
                log.warning(
                    "prune_failed", target=target.name, checkpoint=ref.name, error=str(error)
                )
                continue
            self.metrics.pruned.labels(*labels).inc()
            result.pruned.append(ref.name)
            log.info(
                "checkpoint_pruned",
                target=target.name,
                checkpoint=ref.name,
                reason=plan.reasons[ref.name],
            )

        result.kept = len(refs) - len(result.pruned)
        self.metrics.kept.labels(*labels).set(result.kept)
        kept = [ref.name for ref in refs if ref.name not in result.pruned]
        self._set_retained(target, container, kept)

    def _set_retained(self, target: Target, container: ContainerInfo, names: list[str]) -> None:
        """Set ckptd_retained_bytes to the size of ``names``, when the engine's disk is local."""
        sizes = [self.engine.checkpoint_size(container.id, name) for name in names]
        known = [size for size in sizes if size is not None]
        if len(known) == len(sizes):
            self.metrics.retained.labels(target.name, target.container).set(sum(known))

    def refresh(self, target: Target) -> None:
        """Set the target's gauges from what exists on the engine (at start-up and reload)."""
        labels = (target.name, target.container)
        try:
            container = self.engine.container(target.container)
            refs = checkpoints_of(target.name, self.engine.list_checkpoints(container.id))
        except CkptdError as error:
            self._record_engine(failure_reason(error))
            log.warning(
                "target_unavailable",
                target=target.name,
                container=target.container,
                error=str(error),
            )
            return

        self.metrics.engine_up.set(1)
        self.metrics.kept.labels(*labels).set(len(refs))
        self._set_retained(target, container, [ref.name for ref in refs])
        if refs:
            self.metrics.last_success.labels(*labels).set(refs[0].created.timestamp())
