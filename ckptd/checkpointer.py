"""One unit of ckptd's work: checkpoint a target's container, then prune its old checkpoints."""

from __future__ import annotations

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
from ckptd.catalog import Catalog, CheckpointRecord
from ckptd.engine import ContainerInfo, Engine, EngineCalls
from ckptd.errors import (
    CheckpointFailedError,
    CkptdError,
    ContainerNotRunningError,
    DiskSpaceError,
    EngineError,
    UnsafeExitError,
)
from ckptd.failures import failure_reason, read_criu_excerpt
from ckptd.hooks import run_hooks
from ckptd.inventory import target_checkpoints
from ckptd.locks import container_lock
from ckptd.metrics import Metrics
from ckptd.naming import make_checkpoint_name
from ckptd.policy import DaemonSettings, Target, store_location
from ckptd.pruner import PruneOutcome, Pruner
from ckptd.retention import Origin
from ckptd.store import Store, StoreError

log = structlog.get_logger("ckptd.checkpointer")

# Back-to-back checkpoints of one container sometimes fail with "content sha256:...: already
# exists" in containerd's store (about 1 in 5 with no gap, none seen with a 1 s gap).
CONTENT_RACE_ATTEMPTS = 3
CONTENT_RACE_PAUSE_S = 1.5

__all__ = ["CheckpointResult", "Checkpointer", "default_lock_dir", "failure_reason"]


def default_lock_dir() -> Path:
    """Return where per-container lock files live (shared by the daemon and the CLI)."""
    configured = os.environ.get("CKPTD_LOCK_DIR")
    if configured:
        return Path(configured)

    run = Path("/run/ckptd")
    if os.access("/run", os.W_OK) or run.is_dir():
        return run

    return Path(tempfile.gettempdir()) / "ckptd-locks"


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
        catalog: Catalog,
        lock_dir: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        daemon: DaemonSettings | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.catalog = catalog
        self.lock_dir = lock_dir or default_lock_dir()
        self.clock = clock
        self.daemon = daemon or DaemonSettings()
        self.pruner = Pruner(engine, metrics, catalog, self.daemon)
        self.calls = EngineCalls(engine)

    @contextmanager
    def container_lock(self, container: ContainerInfo) -> Iterator[None]:
        """Hold an exclusive lock on the container, across threads and processes.

        flock is per open file, so two threads (two targets on one container) or the daemon
        and `ckptd checkpoint` exclude each other the same way.
        """
        with container_lock(self.lock_dir, container.id):
            yield

    def run(self, target: Target, origin: str = "schedule") -> CheckpointResult:
        """Checkpoint ``target`` now and prune; raise CkptdError after recording the failure.

        ``origin`` says who asked ("schedule", "cli") and is kept in the catalog.
        """
        bound = log.bind(target=target.name, container=target.container)
        self.metrics.attempts.labels(target.name, target.container).inc()
        self.metrics.last_attempt.labels(target.name, target.container).set_to_current_time()
        try:
            result = self._checkpoint_and_prune(target, origin)
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

    def _checkpoint_and_prune(self, target: Target, origin: str) -> CheckpointResult:
        try:
            container = self._runnable_container(target)
        except ContainerNotRunningError:
            # Perhaps a restore holds the lock and has stopped it for a moment: once the lock is
            # ours, the container's state is the one that counts.
            container = self._locked_runnable(target, origin)
        except CkptdError as error:
            self._record_unrunnable(target, error, origin)
            raise

        with self.container_lock(container):
            existing = self.engine.list_checkpoints(container.id)
            self._sweep_leftovers(container, existing)
            self._make_room(target, container, origin)
            existing = self.engine.list_checkpoints(container.id)
            name, duration, size, engine, frozen = self._create_with_hooks(
                target, container, existing, origin
            )
            self._store(target, container, name, duration)

        labels = (target.name, target.container)
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

    def _locked_runnable(self, target: Target, origin: str) -> ContainerInfo:
        """Return the target's container once it runs after the holder of its lock is done."""
        try:
            with self.container_lock(self.engine.container(target.container)):
                return self._runnable_container(target)
        except CkptdError as error:
            self._record_unrunnable(target, error, origin)
            raise

    def _record_unrunnable(self, target: Target, error: CkptdError, origin: str) -> None:
        """Record the failure of a run whose container could not be checkpointed at all."""
        self.catalog.record_failure(
            target.name, "", target.container, failure_reason(error), str(error), origin
        )

    def _make_room(self, target: Target, container: ContainerInfo, origin: str) -> None:
        """Prune what the rules let go until the disk has room; record a disk_space failure."""
        try:
            self.pruner.make_room(target, container, self.clock())
        except DiskSpaceError as error:
            self.catalog.record_failure(
                target.name, container.id, container.name, "disk_space", str(error), origin
            )
            raise

    def _runnable_container(self, target: Target) -> ContainerInfo:
        """Return the target's container, or raise why it cannot be checkpointed now."""
        container = self.engine.container(target.container)
        if not container.running:
            raise ContainerNotRunningError(container.name)

        if not target.leave_running:
            why = unsafe_exit_reason(container)
            if why is not None:
                raise UnsafeExitError(target.name, container.name, why)

        return container

    def _create_with_hooks(
        self, target: Target, container: ContainerInfo, existing: list[str], origin: str
    ) -> tuple[str, float, int | None, str, float | None]:
        """Run the target's pre hooks, create the checkpoint, then its post hooks."""
        if target.hooks is None:
            return self._create(target, container, existing, origin)

        try:
            run_hooks(self.calls, container.id, target.hooks, "pre")
        except CkptdError as error:
            self.catalog.record_failure(
                target.name, container.id, container.name, "hook_failed", str(error), origin
            )
            raise

        try:
            return self._create(target, container, existing, origin)
        finally:
            # Also after a failed dump: an app that quiesced must be let go again.
            if target.leave_running:
                self._post_hooks(target, container)

    def _post_hooks(self, target: Target, container: ContainerInfo) -> None:
        """Run the post hooks; their failure is logged, never the checkpoint's outcome."""
        assert target.hooks is not None
        try:
            run_hooks(self.calls, container.id, target.hooks, "post")
        except CkptdError as error:
            log.warning("post_hooks_failed", target=target.name, error=str(error))

    def _store(self, target: Target, container: ContainerInfo, name: str, dump_s: float) -> None:
        """Keep the new checkpoint in the target's store; the app already runs again."""
        root = store_location(self.daemon, target)
        if root is None:
            return

        try:
            data = self.calls.inspect(container.id)
            Store(root).save(self.calls, data, name, target.name, dump_s)
        except (StoreError, EngineError) as error:
            # The checkpoint stays good in the engine's folder; only the store's copy is missing.
            log.error("checkpoint_store_failed", checkpoint=name, error=str(error))

    def _create(
        self, target: Target, container: ContainerInfo, existing: list[str], origin: str
    ) -> tuple[str, float, int | None, str, float | None]:
        """Create one checkpoint, retrying a content-store race under a new name.

        Return its name, how long the engine took, its size, the engine used and CRIU's frozen
        time.
        """
        taken = set(existing)
        for attempt in range(1, CONTENT_RACE_ATTEMPTS + 1):
            when = self.clock()
            name = make_checkpoint_name(target.name, when, taken)
            taken.add(name)
            attempt_id = self.catalog.begin_attempt(
                target.name, container.id, container.name, container.image, name, origin, when
            )
            started = time.monotonic()
            try:
                engine, frozen = self._engine_create(target, container, name)
            except CkptdError as error:
                reason = self._record_failure(attempt_id, container, name, error, started)
                if reason != "content_race" or attempt == CONTENT_RACE_ATTEMPTS:
                    raise

                log.warning(
                    "checkpoint_retried", target=target.name, checkpoint=name, reason=reason
                )
                time.sleep(CONTENT_RACE_PAUSE_S)
                continue

            duration = time.monotonic() - started
            size = self.engine.checkpoint_size(container.id, name)
            self.catalog.finish_attempt(attempt_id, "ok", size_bytes=size, duration_s=duration)
            return name, duration, size, engine, frozen

        raise AssertionError("the last attempt either returns or raises")

    def _engine_create(
        self, target: Target, container: ContainerInfo, name: str
    ) -> tuple[str, float | None]:
        """Ask the engine for the checkpoint; return the engine used and CRIU's frozen time."""
        direct = runc.find(self.engine, container.id) if target.engine == "runc" else None
        if direct is None:
            self.engine.create_checkpoint(container.id, name, target.leave_running)
            return "docker", None

        stats = runc.checkpoint(direct, name)
        return "runc", None if stats is None else stats.frozen_s

    def _record_failure(
        self,
        attempt_id: int,
        container: ContainerInfo,
        name: str,
        error: CkptdError,
        started: float,
    ) -> str:
        """Copy CRIU's log at once, remove what the attempt left, record it; return the reason."""
        if isinstance(error, CheckpointFailedError):
            error.criu_log = read_criu_excerpt(error.reason)

        reason = failure_reason(error)
        self._discard_partial(container, name)
        self.catalog.finish_attempt(
            attempt_id,
            "failed",
            reason=reason,
            message=str(error),
            criu_log=getattr(error, "criu_log", None),
            duration_s=time.monotonic() - started,
        )
        return reason

    def _sweep_leftovers(self, container: ContainerInfo, existing: list[str]) -> None:
        """Delete what failed attempts left on the engine when it could not be removed then.

        Called under the container's lock, so none of them is still being written by ckptd.
        """
        recorded = self.catalog.names(container.id)
        for name in [n for n in existing if recorded.get(n) in ("failed", "incomplete")]:
            try:
                self.engine.delete_checkpoint(container.id, name)
            except CkptdError as error:
                log.warning("partial_checkpoint_left", checkpoint=name, error=str(error))
                continue

            self.catalog.mark_deleted(container.id, name)
            existing.remove(name)
            log.info("partial_checkpoint_removed", container=container.name, checkpoint=name)

    def _discard_partial(self, container: ContainerInfo, name: str) -> None:
        """Remove what a failed attempt left under its fresh name, so it never counts as good.

        Docker usually removes the folder itself, but not when it was killed or ran out of disk
        halfway; when the engine cannot be reached now, the next run sweeps it.
        """
        try:
            if name in self.engine.list_checkpoints(container.id):
                self.engine.delete_checkpoint(container.id, name)
                self.catalog.mark_deleted(container.id, name)
                log.warning("partial_checkpoint_removed", container=container.name, checkpoint=name)
        except CkptdError as error:
            log.warning("partial_checkpoint_left", checkpoint=name, error=str(error))

    def records(self, target: Target, container: ContainerInfo) -> list[CheckpointRecord]:
        """Return the target's good checkpoints that exist now, newest first, from the catalog."""
        return target_checkpoints(
            self.catalog,
            target.name,
            container,
            self.engine.list_checkpoints(container.id),
            lambda name: self.engine.checkpoint_size(container.id, name),
        )

    def _prune(
        self, target: Target, container: ContainerInfo, newest_good: str, result: CheckpointResult
    ) -> None:
        with self.container_lock(container):
            plan = self.pruner.plan(target, container, self.clock())
            if newest_good not in {decision.name for decision in plan.keep}:
                # The planner keeps the newest good checkpoint it can see; this one was just
                # made, so its absence means the clock and the name disagree: delete nothing.
                log.error("prune_skipped", target=target.name, checkpoint=newest_good)
                return

            outcome = self.pruner.apply(target, container, plan)

        result.pruned = outcome.deleted
        result.kept = self._report_kept(target, outcome)

    def prune(self, target: Target) -> PruneOutcome:
        """Apply `target`'s retention now, under the container's lock; return what it did."""
        container = self.engine.container(target.container)
        with self.container_lock(container):
            plan = self.pruner.plan(target, container, self.clock())
            outcome = self.pruner.apply(target, container, plan)

        self._report_kept(target, outcome)
        return outcome

    def _report_kept(self, target: Target, outcome: PruneOutcome) -> int:
        """Set the kept-count and retained-bytes gauges from what `outcome` left; return count."""
        gone = set(outcome.deleted)
        left = [
            d.record
            for d in outcome.plan.decisions()
            if d.record.origin is Origin.TARGET and not d.record.in_progress and d.name not in gone
        ]
        labels = (target.name, target.container)
        self.metrics.kept.labels(*labels).set(len(left))
        sizes = [record.size_bytes for record in left]
        if None not in sizes:
            self.metrics.retained.labels(*labels).set(sum(size or 0 for size in sizes))

        return len(left)

    def _set_retained(self, target: Target, records: list[CheckpointRecord]) -> None:
        """Set ckptd_retained_bytes from the catalog's sizes, when every size is known."""
        sizes = [record.size_bytes for record in records]
        known = [size for size in sizes if size is not None]
        if len(known) == len(sizes):
            self.metrics.retained.labels(target.name, target.container).set(sum(known))

    def refresh(self, target: Target) -> list[CheckpointRecord] | None:
        """Set the target's gauges from what exists on the engine; return the records read.

        Returns None, after logging it, when the container or the engine cannot be read.
        """
        labels = (target.name, target.container)
        try:
            container = self.engine.container(target.container)
            records = self.records(target, container)
        except CkptdError as error:
            self._record_engine(failure_reason(error))
            log.warning(
                "target_unavailable",
                target=target.name,
                container=target.container,
                error=str(error),
            )
            return None

        self.metrics.engine_up.set(1)
        self.metrics.kept.labels(*labels).set(len(records))
        self._set_retained(target, records)
        if records:
            self.metrics.last_success.labels(*labels).set(records[0].created.timestamp())

        return records


def unsafe_exit_reason(container: ContainerInfo) -> str | None:
    """Return why stopping ``container`` after its checkpoint would lose it, or None if safe."""
    if container.auto_remove:
        return (
            "it was started with --rm (auto-remove), so the engine deletes it and its "
            "checkpoints as soon as the checkpoint stops it"
        )

    if container.restart_policy not in ("", "no"):
        return (
            f"its restart policy {container.restart_policy!r} would start it again fresh "
            "right after the checkpoint stops it; use leave_running: true or restart policy no"
        )

    return None
