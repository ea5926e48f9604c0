"""Restore a container from a stored checkpoint: in place, or into a new container.

Docker restores only from the container's own ``checkpoints/`` folder, so a verified store entry
is staged there under a throwaway name (hard links: near free), the container's writable-layer
changes of the dump are put back, and ``start?checkpoint=`` is called with a timeout. A restore
that hangs (CRIU blocked on a damaged image) is ended by killing CRIU and runc for that
container. Afterwards the staged folder and the copy containerd unpacks (and never removes) are
deleted, whatever the outcome.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests
import structlog

from ckptd.catalog import Catalog
from ckptd.engine import Engine, EngineCalls
from ckptd.errors import CkptdError, ContainerNotFoundError, EngineError
from ckptd.metrics import Metrics
from ckptd.naming import parse_checkpoint_name
from ckptd.policy import Target
from ckptd.procs import command_lines, parent_pid
from ckptd.store import (
    IMAGES,
    ROOTFS,
    DamagedCheckpointError,
    Staging,
    Store,
    StoreEntry,
    link_or_copy,
)

log = structlog.get_logger("ckptd.restore")

# containerd unpacks each checkpoint it restores into a ctrd-checkpoint* folder of its TMPDIR
# and leaves it there; ckptd removes the one its restore made.
CONTAINERD_TMP = Path(os.environ.get("CKPTD_CONTAINERD_TMP", "/tmp"))
STAGING_PREFIX = "ckptd_restore_"
CONFIRM_S = 5.0


class RestoreError(CkptdError):
    """A restore that was refused or failed; ``reason`` is a short fixed word for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass
class RestoreResult:
    """What one restore did and how long each part took."""

    container: str
    container_id: str
    checkpoint: str
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    staging: str = ""
    pid: int = 0


@dataclass(frozen=True)
class RestoreRequest:
    """Which checkpoint to restore where."""

    container: str
    checkpoint: str = "latest"
    force: bool = False
    into: str | None = None
    timeout_s: float = 300.0
    # Drills restore with networking disabled ("none"); None keeps the dumped container's.
    network_mode: str | None = None
    # A drill's clone: no labels, no restart policy, the original's mounts read-only.
    isolated: bool = False
    # The policy's target, for the catalog ("" when restoring a container by name).
    target: str = ""
    # Why: "cli", "restore_on_start" or "drill" (the catalog's mode column says which).
    origin: str = "cli"


def _no_progress(message: str) -> None:
    """Report nothing (the default when not on a terminal)."""


class Restorer:
    """Restores containers from one store on one engine."""

    def __init__(
        self,
        engine: Engine,
        store: Store | None,
        catalog: Catalog | None = None,
        progress: Callable[[str], None] = _no_progress,
    ) -> None:
        self.engine = engine
        self.calls = EngineCalls(engine)
        self.store = store
        self.catalog = catalog
        self.progress = progress

    def restore(self, request: RestoreRequest) -> RestoreResult:
        """Restore as ``request`` says; return the result or raise RestoreError/CkptdError.

        The catalog gets the restore as in progress before anything changes, then its outcome.
        Without a store (``store: engine``) the checkpoint is restored from the engine's own
        folder, in place only and without checksums (the engine keeps none).
        """
        mode = (
            request.origin if request.origin != "cli" else ("into" if request.into else "in_place")
        )
        run: Callable[[], RestoreResult]

        if self.store is None:
            data = self.calls.inspect(request.container)
            checkpoint = self._engine_checkpoint(data, request)
            ident = (request.target, str(data["Id"]), str(data["Name"]).lstrip("/"), checkpoint)
            run = partial(self._restore_engine, request, data, checkpoint)
        else:
            entry = self._entry(request)
            target = request.target or str(entry.manifest.get("target", ""))
            name = request.into or entry.container_name
            ident = (target, entry.container_id, name, entry.checkpoint)
            run = partial(self._restore, request, entry)

        restore_id = None

        if self.catalog is not None:
            restore_id = self.catalog.begin_restore(*ident, mode)

        try:
            result = run()
        except CkptdError as error:
            if self.catalog is not None and restore_id is not None:
                reason = failure_of(error)
                self.catalog.finish_restore(restore_id, "failed", reason, str(error))
            raise

        if self.catalog is not None and restore_id is not None:
            self.catalog.finish_restore(restore_id, "ok", message=f"pid {result.pid}")

        return result

    def _engine_checkpoint(self, data: dict[str, Any], request: RestoreRequest) -> str:
        """Return the engine checkpoint the request names ("latest": the target's newest)."""
        names = self.engine.list_checkpoints(str(data["Id"]))

        if request.into:
            raise RestoreError("refused", "--into needs a store; this target has store: engine")

        if request.checkpoint != "latest":
            if request.checkpoint not in names:
                raise RestoreError(
                    "not_found", f"container {request.container!r} has no {request.checkpoint!r}"
                )

            return request.checkpoint

        refs = [r for r in map(parse_checkpoint_name, names) if r is not None]
        refs = [r for r in refs if not request.target or r.target == request.target]

        if not refs:
            raise RestoreError("not_found", f"container {request.container!r} has no checkpoint")

        return max(refs).name

    def _restore_engine(
        self, request: RestoreRequest, data: dict[str, Any], checkpoint: str
    ) -> RestoreResult:
        """Restore in place from the engine's own folder; return what it took."""
        started = time.monotonic()
        name = str(data["Name"]).lstrip("/")
        result = RestoreResult(name, str(data["Id"]), checkpoint, staging="none")
        data = self._stopped(request, data, name)
        folder = self.calls.container_folder(data) / "checkpoints" / checkpoint
        files = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
        unpacked_before = _unpacked_folders()

        try:
            self.progress(f"restoring {checkpoint} from the engine's folder")
            phase = time.monotonic()
            self._start(result.container_id, checkpoint, request.timeout_s)
            result.phases["engine_s"] = time.monotonic() - phase
            result.pid = self._confirm(result.container_id, data["State"].get("StartedAt"))
        finally:
            _remove_unpacked(unpacked_before, files)

        result.seconds = time.monotonic() - started
        log.info("restore_done", container=name, checkpoint=checkpoint, seconds=result.seconds)
        return result

    def _restore(self, request: RestoreRequest, entry: StoreEntry) -> RestoreResult:
        """Verify, prepare, stage, start and confirm; return what it took."""
        assert self.store is not None
        started = time.monotonic()
        result = RestoreResult(request.into or entry.container_name, "", entry.checkpoint)

        self.progress(f"verifying checksums of {entry.checkpoint}")
        result.phases["verify_s"] = self.store.require_intact(entry)

        try:
            data = self._prepare(request, entry, result)
            result.container_id = str(data["Id"])
            self._restore_into(request, entry, data, result)
        except CkptdError as error:
            if request.into and result.container_id:
                note = self._discard(result.container_id)
                raise RestoreError(failure_of(error), f"{error}; {note}") from error
            raise
        except BaseException:
            # Whatever went wrong (an interrupt, a bug), a half-made clone is never left behind.
            if request.into and result.container_id:
                self._discard(result.container_id)
            raise

        result.seconds = time.monotonic() - started
        log.info(
            "restore_done",
            container=result.container,
            checkpoint=result.checkpoint,
            seconds=round(result.seconds, 3),
            staging=result.staging,
            **{k: round(v, 4) for k, v in result.phases.items()},
        )
        return result

    def _entry(self, request: RestoreRequest) -> StoreEntry:
        """Return the store entry to restore: of the live container's id, else by name."""
        assert self.store is not None

        try:
            live = self.engine.container(request.container)
        except ContainerNotFoundError:
            return self.store.find(request.container, request.checkpoint)

        try:
            return self.store.find(live.id, request.checkpoint)
        except CkptdError:
            return self.store.find(request.container, request.checkpoint)

    def _prepare(
        self, request: RestoreRequest, entry: StoreEntry, result: RestoreResult
    ) -> dict[str, Any]:
        """Return the inspect data of the container to restore into, stopped and ready."""
        if request.into:
            self.progress(f"creating container {request.into}")
            body = create_body(entry, request.network_mode, request.isolated)
            # Known at once, so that a failure from here on removes the new container.
            result.container_id = self.calls.create(request.into, body)
            return self.calls.inspect(result.container_id)

        return self._stopped(request, self.calls.inspect(request.container), result.container)

    def _stopped(self, request: RestoreRequest, data: dict[str, Any], name: str) -> dict[str, Any]:
        """Return the container's inspect data once it is stopped (with --force) or refuse."""
        if data["State"]["Running"]:
            if not request.force:
                raise RestoreError(
                    "running",
                    f"container {name!r} is running; stop it first or pass --force "
                    "(the engine would answer success and restore nothing)",
                )

            self.progress(f"stopping container {name}")
            self.calls.stop(str(data["Id"]))
            data = self.calls.inspect(str(data["Id"]))

        return data

    def _restore_into(
        self,
        request: RestoreRequest,
        entry: StoreEntry,
        data: dict[str, Any],
        result: RestoreResult,
    ) -> None:
        """Put the files back, stage the images, start from them and confirm a new process."""
        container_id = str(data["Id"])
        rootfs = entry.path / ROOTFS

        if rootfs.is_file() and rootfs.stat().st_size > 0:
            self.progress("putting back the files the container had at the dump")
            phase = time.monotonic()
            self.calls.put_archive(container_id, rootfs.read_bytes())
            result.phases["files_s"] = time.monotonic() - phase

        staged_name = STAGING_PREFIX + uuid.uuid4().hex[:12]
        staged = self.calls.container_folder(data) / "checkpoints" / staged_name
        unpacked_before = _unpacked_folders()

        try:
            staging = link_or_copy(entry.path / IMAGES, staged)
            result.staging = staging.method
            result.phases["staging_s"] = staging.seconds
            self.progress(f"restoring {entry.checkpoint} ({staging.method} staging)")
            phase = time.monotonic()
            self._start(container_id, staged_name, request.timeout_s, bool(request.into))
            result.phases["engine_s"] = time.monotonic() - phase
            result.pid = self._confirm(container_id, data["State"].get("StartedAt"))
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            _remove_unpacked(unpacked_before, staging_files(entry))

    def _start(self, container_id: str, staged: str, timeout_s: float, into: bool = False) -> None:
        """Ask the engine to restore; end the restore when it does not answer in time.

        ``into``: the container is a new one, which the caller removes after a failure (so the
        message does not call it stopped).
        """
        try:
            self.calls.start(container_id, staged, timeout_s)
        except requests.exceptions.ReadTimeout as error:
            ended = end_hung_restore(container_id)
            self._settle(container_id)
            raise RestoreError(
                "timeout",
                f"the restore did not finish within {timeout_s:g} s and was ended "
                f"({ended or 'no CRIU or runc process found on this host'})"
                + ("" if into else "; the container is stopped"),
            ) from error
        except EngineError as error:
            raise RestoreError(
                "restore_failed", f"the engine failed the restore: {error}"
            ) from error

    def _settle(self, container_id: str) -> None:
        """Wait until the engine gave up the ended restore; stop the container if it runs."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = self.calls.inspect(container_id)["State"]

            if state["Running"]:
                self.calls.stop(container_id)
                return

            if state["Status"] in ("created", "exited", "dead"):
                return

            time.sleep(0.2)

    def _confirm(self, container_id: str, started_before: str | None) -> int:
        """Return the new process's pid, or raise when no new process runs."""
        deadline = time.monotonic() + CONFIRM_S
        while True:
            state = self.calls.inspect(container_id)["State"]
            fresh = state.get("StartedAt") != started_before

            if state["Running"] and state.get("Pid") and fresh:
                return int(state["Pid"])

            if time.monotonic() > deadline or (fresh and not state["Running"]):
                raise RestoreError(
                    "no_process",
                    f"the engine reported success but no restored process runs "
                    f"(status {state['Status']}, exit code {state.get('ExitCode')})",
                )

            time.sleep(0.1)

    def _discard(self, container_id: str) -> str:
        """Remove a container this restore created and could not restore into; say how it went."""
        try:
            self.calls.remove(container_id)
        except CkptdError as error:
            log.warning("restore_container_left", container=container_id, error=str(error))
            return f"the new container {container_id[:12]} could not be removed: {error}"

        return "the new container was removed"


def failure_of(error: CkptdError) -> str:
    """Return the short reason a restore failed with (for the catalog and the log)."""
    if isinstance(error, RestoreError):
        return error.reason

    if isinstance(error, DamagedCheckpointError):
        return "damaged"

    return "restore_failed"


def create_body(
    entry: StoreEntry, network_mode: str | None, isolated: bool = False
) -> dict[str, Any]:
    """Return the create body for a new container like the dumped one (same image by id).

    An ``isolated`` clone (a drill's) gets no labels (so no label selector checkpoints it), no
    restart policy, and the original's bind mounts and volumes read-only: it must never write
    into the data the original works on.
    """
    container = entry.manifest["container"]
    body: dict[str, Any] = copy.deepcopy(container["config"])
    body["Image"] = container["image_id"]
    host_config: dict[str, Any] = copy.deepcopy(container["host_config"])
    # A clone the engine deleted on exit would take its logs (the drill's evidence) with it.
    host_config["AutoRemove"] = False

    if network_mode is not None:
        host_config["NetworkMode"] = network_mode

    if isolated:
        # Nor may it fight the original for host ports.
        host_config.pop("PortBindings", None)
        body["Labels"] = {}
        host_config["RestartPolicy"] = {"Name": "no"}
        host_config["Binds"] = [_read_only(bind) for bind in host_config.get("Binds") or []]

        for mount in host_config.get("Mounts") or []:
            mount["ReadOnly"] = True

    body["HostConfig"] = host_config
    return body


def _read_only(bind: str) -> str:
    """Return a "source:target[:options]" bind with "ro" in place of "rw"."""
    parts = bind.split(":")

    if len(parts) == 2:
        return f"{bind}:ro"

    options = [o for o in parts[2].split(",") if o not in ("rw", "ro")]
    return ":".join([*parts[:2], ",".join(["ro", *options])])


def staging_files(entry: StoreEntry) -> dict[str, int]:
    """Return name -> size of the entry's CRIU files (what an unpacked copy holds)."""
    prefix = IMAGES + "/"
    return {
        str(f["path"]).removeprefix(prefix): int(f["size"])
        for f in entry.manifest["files"]
        if str(f["path"]).startswith(prefix)
    }


def _unpacked_folders() -> set[Path]:
    """Return containerd's unpacked checkpoint folders that exist now."""
    try:
        return set(CONTAINERD_TMP.glob("ctrd-checkpoint*"))
    except OSError:
        return set()


def _remove_unpacked(before: set[Path], files: dict[str, int]) -> None:
    """Remove containerd's copy of this restore: new since ``before`` and holding our files."""
    for folder in _unpacked_folders() - before:
        try:
            found = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
        except OSError:
            continue

        # Other restores on the engine unpack too; only an exact match of names and sizes is ours.
        if found and all(files.get(name) == size for name, size in found.items()):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("restore_copy_removed", folder=str(folder))


def _processes() -> list[tuple[int, int, list[str]]]:
    """Return (pid, parent pid, argv) of every process on this host."""
    found: list[tuple[int, int, list[str]]] = []

    for pid, argv in command_lines():
        parent = parent_pid(pid)

        if parent is not None:
            found.append((pid, parent, [a.decode(errors="replace") for a in argv if a]))

    return found


def end_hung_restore(container_id: str) -> str:
    """Kill the runc restore of ``container_id`` and its CRIU; return what was killed."""
    processes = _processes()
    runcs = [
        pid
        for pid, _parent, argv in processes
        if argv and Path(argv[0]).name == "runc" and "restore" in argv and container_id in argv
    ]
    children = [pid for pid, parent, _argv in processes if parent in runcs]
    killed: list[str] = []

    # CRIU first: runc then reports the failure upwards and the engine cleans up its task.
    for pid, kind in [(p, "criu") for p in children] + [(p, "runc") for p in runcs]:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{kind} {pid}")
        except ProcessLookupError:
            continue

        if kind == "criu":
            time.sleep(0.5)

    log.warning("restore_hang_ended", container=container_id, killed=killed)
    return ", ".join(killed)


def entry_staging(entry: StoreEntry, folder: Path) -> Staging:
    """Stage the entry's CRIU files into ``folder`` (used by benchmarks); return the cost."""
    return link_or_copy(entry.path / IMAGES, folder)


def restore_at_start(restorer: Restorer, target: Target, metrics: Metrics) -> RestoreResult | None:
    """Restore the target's container when it exists but is stopped (``restore_on_start``).

    Uses the newest checkpoint whose drill passed, else the newest stored one (its checksums are
    checked either way). Returns None when there was nothing to do or the restore failed (logged
    and counted; the daemon goes on).
    """
    try:
        container = restorer.engine.container(target.container)
    except CkptdError as error:
        log.warning("restore_on_start_skipped", target=target.name, error=str(error))
        return None

    if container.running:
        return None

    verified = None if restorer.store is None else restorer.store.newest_verified(container.id)
    checkpoint = "latest" if verified is None else verified.checkpoint
    request = RestoreRequest(
        target.container, checkpoint, target=target.name, origin="restore_on_start"
    )
    labels = (target.name, target.container)

    try:
        result = restorer.restore(request)
    except CkptdError as error:
        metrics.restores.labels(*labels, "failed").inc()
        log.error("restore_on_start_failed", target=target.name, error=str(error))
        return None

    metrics.restores.labels(*labels, "ok").inc()
    log.info(
        "restored_on_start",
        target=target.name,
        checkpoint=result.checkpoint,
        verified=verified is not None,
        seconds=round(result.seconds, 3),
    )
    return result
