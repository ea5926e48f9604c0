"""Restore drills: prove a target's newest checkpoint restores, in a clone nobody uses.

A drill restores the newest stored checkpoint into a new container with networking disabled,
checks that it keeps running for ``run_for`` and that the probe (when given) succeeds inside it,
then removes the clone and everything it left. The result goes beside the store entry (retention
keeps the newest verified checkpoint), into the catalog and into the metrics.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import structlog

from ckptd.catalog import Catalog
from ckptd.engine import Engine, EngineCalls
from ckptd.errors import CkptdError, ContainerNotFoundError
from ckptd.metrics import Metrics
from ckptd.policy import Target, Verify
from ckptd.restore import Restorer, RestoreRequest, failure_of
from ckptd.store import Store, StoreEntry

log = structlog.get_logger("ckptd.drill")

POLL_S = 0.5
RESTORE_TIMEOUT_S = 300.0
PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DrillResult:
    """How one drill ended."""

    ok: bool
    checkpoint: str
    reason: str
    detail: str
    seconds: float


class DrillFailedError(CkptdError):
    """The clone did not keep running, or the probe failed."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class Drill:
    """Runs restore drills on one engine."""

    def __init__(self, engine: Engine, catalog: Catalog, metrics: Metrics) -> None:
        self.engine = engine
        self.calls = EngineCalls(engine)
        self.catalog = catalog
        self.metrics = metrics

    def run(self, target: Target, store: Store) -> DrillResult:
        """Drill ``target``'s newest stored checkpoint; return the result (never raises)."""
        assert target.verify is not None
        started = time.monotonic()
        labels = (target.name, target.container)
        entry: StoreEntry | None = None
        restore_id: int | None = None

        try:
            entry = store.find(self._container_key(target), "latest")
            restore_id = self.catalog.begin_restore(
                target.name, entry.container_id, entry.container_name, entry.checkpoint, "drill"
            )
            result = self._drill(target.verify, store, entry, started)
        except CkptdError as error:
            result = DrillResult(
                False, entry.checkpoint if entry else "", failure_of(error), str(error), 0.0
            )

            if entry is None:
                log.error(
                    "drill_failed", target=target.name, reason="none_stored", error=str(error)
                )
                self.metrics.verify_failures.labels(*labels).inc()
                return result

            if isinstance(error, DrillFailedError):
                result = DrillResult(False, entry.checkpoint, error.reason, str(error), 0.0)

        seconds = time.monotonic() - started

        if restore_id is not None:
            outcome, reason = ("ok", None) if result.ok else ("failed", result.reason)
            self.catalog.finish_restore(restore_id, outcome, reason, result.detail)

        store.mark_verified(entry, result.ok, result.detail)
        self.metrics.verify_duration.labels(*labels).observe(seconds)
        self.metrics.restores.labels(*labels, "ok" if result.ok else "failed").inc()

        if result.ok:
            self.metrics.verify_last_success.labels(*labels).set(time.time())
            log.info(
                "drill_passed", target=target.name, checkpoint=entry.checkpoint, seconds=seconds
            )
        else:
            self.metrics.verify_failures.labels(*labels).inc()
            log.error(
                "drill_failed",
                target=target.name,
                checkpoint=entry.checkpoint,
                reason=result.reason,
                error=result.detail,
            )

        return DrillResult(result.ok, result.checkpoint, result.reason, result.detail, seconds)

    def _container_key(self, target: Target) -> str:
        """Return the id of the target's container, or its name once it is gone."""
        try:
            return self.engine.container(target.container).id
        except ContainerNotFoundError:
            return target.container

    def _drill(
        self, verify: Verify, store: Store, entry: StoreEntry, started: float
    ) -> DrillResult:
        """Restore into a clone, watch it, probe it, remove it."""
        clone = f"{entry.container_name}-drill-{uuid.uuid4().hex[:8]}"
        request = RestoreRequest(
            entry.container_id,
            entry.checkpoint,
            into=clone,
            timeout_s=RESTORE_TIMEOUT_S,
            network_mode="none",
            isolated=True,
            origin="drill",
        )

        try:
            Restorer(self.engine, store).restore(request)
            self._watch(clone, verify.run_for.total_seconds())

            if verify.probe:
                self._probe(clone, verify.probe)
        finally:
            self._remove(clone)

        detail = f"clone ran {verify.run_for.total_seconds():g} s" + (
            " and passed the probe" if verify.probe else ""
        )
        return DrillResult(True, entry.checkpoint, "", detail, time.monotonic() - started)

    def _watch(self, clone: str, run_for: float) -> None:
        """Raise DrillFailedError when the clone stops within ``run_for`` seconds."""
        deadline = time.monotonic() + run_for
        while time.monotonic() < deadline:
            state = self.calls.inspect(clone)["State"]

            if not state["Running"]:
                raise DrillFailedError(
                    "clone_died",
                    f"the restored clone stopped after the restore (exit code "
                    f"{state.get('ExitCode')}, {state.get('Error') or 'no error'})",
                )

            time.sleep(POLL_S)

    def _probe(self, clone: str, probe: list[str]) -> None:
        """Raise DrillFailedError unless ``probe`` exits 0 inside the clone."""
        result = self.calls.exec(clone, probe, PROBE_TIMEOUT_S)

        if result.timed_out or result.exit_code != 0:
            problem = "timed out" if result.timed_out else f"exited with {result.exit_code}"
            raise DrillFailedError(
                "probe_failed", f"probe {probe!r} {problem}: {result.output.strip()[-200:]}"
            )

    def _remove(self, clone: str) -> None:
        """Remove the clone with its writable layer and anonymous volumes."""
        try:
            self.calls.remove(clone)
        except ContainerNotFoundError:
            return
        except CkptdError as error:
            log.warning("drill_clone_left", clone=clone, error=str(error))
