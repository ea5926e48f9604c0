"""Resolving what a crash left behind: attempts still marked ``in_progress`` at start-up.

ckptd writes ``in_progress`` before it asks the engine, so after ckptd or dockerd died in the
middle of a checkpoint the catalog says which ones to look at. Each is resolved under the
container's lock: kept as good when the engine finished it, deleted when it is incomplete,
closed as failed when nothing of it exists. A finished one of a target with a store is kept as
good only once its store copy is made: until then it stays ``in_progress``, which retention keeps
but never counts as the newest good one, and the next start tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import structlog

from ckptd.catalog import Attempt, Catalog
from ckptd.engine import ContainerInfo, Engine, EngineCalls
from ckptd.errors import CkptdError, ContainerNotFoundError
from ckptd.procs import command_lines
from ckptd.store import MANIFEST, Store

log = structlog.get_logger("ckptd.reconcile")

# Docker 20.10 unpacks a finished dump from containerd's content store into the checkpoint
# folder in name order; these files come first, last and in between, so a folder holding all of
# them was unpacked to the end. A folder missing one is incomplete.
_REQUIRED_FILES = ("descriptors.json", "inventory.img", "pstree.img")
_LAST_FILE_GLOB = "utsns-*.img"
# How long a folder must stay unchanged, with no runc or CRIU process working on the container,
# before an incomplete one is taken to be abandoned rather than still being written.
IDLE_S = 10.0
MAX_WAIT_S = 900.0
POLL_S = 1.0


@dataclass(frozen=True)
class Resolution:
    """What reconciling one attempt decided."""

    attempt_id: int
    checkpoint: str | None
    outcome: str


def is_complete(folder: Path) -> bool:
    """Return True when a checkpoint folder holds a whole CRIU image set as Docker unpacks it."""
    if not all((folder / name).is_file() for name in _REQUIRED_FILES):
        return False

    return any(folder.glob(_LAST_FILE_GLOB))


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Return each file's name, size and mtime, to tell whether the folder is still changing."""
    try:
        entries = [(p.name, p.stat()) for p in folder.iterdir()]
    except OSError:
        return ()

    return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in entries))


def _engine_dumping(container_id: str) -> bool:
    """Return True while a runc or CRIU process of this host names the container."""
    for _pid, argv in command_lines():
        program = Path(argv[0].decode(errors="replace")).name

        if program in ("runc", "criu") and any(container_id.encode() in arg for arg in argv):
            return True

    return False


class Reconciler:
    """Resolves the ``in_progress`` attempts a crash left in the catalog."""

    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        lock: Callable[[ContainerInfo], AbstractContextManager[None]],
        idle_s: float = IDLE_S,
        store_for: Callable[[str], Path | None] = lambda target: None,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.lock = lock
        self.idle_s = idle_s
        # Where a target's checkpoints are stored (None: in the engine only).
        self.store_for = store_for

    def run(self) -> list[Resolution]:
        """Resolve every attempt left ``in_progress``; return what was decided for each."""
        resolutions = []

        for attempt in self.catalog.in_progress():
            try:
                resolutions.append(self._resolve(attempt))
            except CkptdError as error:
                # The engine may be down now; the attempt stays in_progress for the next start.
                log.warning("reconcile_deferred", attempt=attempt.id, error=str(error))

        return resolutions

    def complete_store_copies(self, roots: Iterable[Path]) -> list[str]:
        """Finish the store copies a crash cut short; return the checkpoints now stored.

        ckptd records a checkpoint as good before it copies it to the store, so one killed in
        between leaves a good checkpoint with only a ``.partial`` entry, which no restore reads.
        """
        done: list[str] = []

        for root in roots:
            for partial in sorted(root.glob("*/*.partial")):
                try:
                    if self._complete_partial(Store(root), partial):
                        done.append(partial.name.removesuffix(".partial"))
                except CkptdError as error:
                    log.warning("store_copy_deferred", entry=str(partial), error=str(error))

        return done

    def _complete_partial(self, store: Store, partial: Path) -> bool:
        """Make the entry ``partial`` was to become, when its checkpoint is good and whole."""
        container_id, name = partial.parent.name, partial.name.removesuffix(".partial")

        if self.catalog.names(container_id).get(name) != "ok":
            return False

        container = self.engine.container(container_id)
        target = next(
            (
                r.target
                for r in self.catalog.checkpoints(container_id=container_id)
                if r.name == name
            ),
            "",
        )

        with self.lock(container):
            if (store.folder(container_id, name) / MANIFEST).is_file():
                return False

            folder = self.engine.checkpoint_dir(container_id, name)

            if folder is None or not is_complete(folder):
                return False

            calls = EngineCalls(self.engine)
            # The dump's own time was lost with the process that measured it.
            store.save(calls, calls.inspect(container_id), name, target, 0.0)

        log.info("reconciled_store_copy", checkpoint=name, target=target)
        return True

    def _resolve(self, attempt: Attempt) -> Resolution:
        name = attempt.checkpoint

        try:
            container = self.engine.container(attempt.container_id or attempt.container_name)
        except ContainerNotFoundError:
            return self._close(attempt, "failed", "container removed before the attempt ended")

        if name is None:
            return self._close(attempt, "failed", "ckptd stopped before naming a checkpoint")

        with self.lock(container):
            # The lock may have been held by a live `ckptd checkpoint` that has finished since.
            current = self.catalog.attempt(attempt.id)

            if current is not None and current.result != "in_progress":
                return Resolution(attempt.id, name, current.result)

            return self._resolve_locked(attempt, container, name)

    def _resolve_locked(self, attempt: Attempt, container: ContainerInfo, name: str) -> Resolution:
        if name not in self.engine.list_checkpoints(container.id):
            return self._close(attempt, "failed", "interrupted; the engine has no such checkpoint")

        folder = self.engine.checkpoint_dir(container.id, name)

        if folder is not None and self._wait_for_complete(container.id, folder):
            stored = self._store_copy(attempt, container, name)
            size = self.engine.checkpoint_size(container.id, name)
            message = "the engine finished it while ckptd was down; checked at start-up"
            self.catalog.finish_attempt(
                attempt.id,
                "ok",
                size_bytes=size,
                message=message + ("; stored" if stored else ""),
            )
            log.info("reconciled_complete", checkpoint=name, size_bytes=size, stored=stored)

            return Resolution(attempt.id, name, "ok")

        self.engine.delete_checkpoint(container.id, name)
        self.catalog.mark_deleted(container.id, name)
        log.warning("reconciled_incomplete_removed", checkpoint=name)

        return self._close(
            attempt, "incomplete", "interrupted; the incomplete checkpoint was removed"
        )

    def _store_copy(self, attempt: Attempt, container: ContainerInfo, name: str) -> bool:
        """Make the store's copy of a finished checkpoint; return False when none is kept.

        Raises StoreError or EngineError when the copy cannot be made: the attempt then stays
        ``in_progress``, so it is neither counted as good nor deleted.
        """
        root = self.store_for(attempt.target)

        if root is None:
            return False

        store = Store(root)

        if (store.folder(container.id, name) / MANIFEST).is_file():
            return True

        calls = EngineCalls(self.engine)

        try:
            # The dump's own time was lost with the process that measured it.
            store.save(calls, calls.inspect(container.id), name, attempt.target, 0.0)
        except CkptdError as error:
            log.error("reconcile_store_failed", checkpoint=name, error=str(error))
            raise

        return True

    def _wait_for_complete(self, container_id: str, folder: Path) -> bool:
        """Wait while the engine may still be writing ``folder``; return True once complete."""
        deadline = time.monotonic() + MAX_WAIT_S
        last = _fingerprint(folder)
        quiet_since = time.monotonic()

        while time.monotonic() < deadline:
            if is_complete(folder):
                return True

            now = _fingerprint(folder)

            if now != last or _engine_dumping(container_id):
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= self.idle_s:
                return False

            time.sleep(POLL_S)

        return is_complete(folder)

    def _close(self, attempt: Attempt, result: str, message: str) -> Resolution:
        reason = "cancelled"
        self.catalog.finish_attempt(attempt.id, result, reason=reason, message=message)
        log.info("reconciled", attempt=attempt.id, checkpoint=attempt.checkpoint, result=result)

        return Resolution(attempt.id, attempt.checkpoint, result)
