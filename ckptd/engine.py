"""The one module that talks to the Docker engine; it turns the SDK's errors into ckptd's.

docker-py has no checkpoint methods, so the Engine API's checkpoint endpoints
(``/containers/{id}/checkpoints``) are called through its low-level ``APIClient``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import requests
import urllib3
from docker.errors import APIError, DockerException, NotFound
from docker.utils import kwargs_from_env

from ckptd.errors import (
    CheckpointFailedError,
    ContainerNotFoundError,
    EngineError,
    EngineNotReadyError,
)
from ckptd.naming import CHECKPOINT_NAME, CONTAINER_REF

# A CRIU dump of a large process through dockerd takes tens of seconds (21-29 s for 1 GiB
# measured here); the SDK's default 60 s would abort a healthy but big checkpoint.
CHECKPOINT_TIMEOUT_S = 900
API_TIMEOUT_S = 30

EXPERIMENTAL_HINT = (
    'add {"experimental": true} to /etc/docker/daemon.json and restart dockerd '
    "(scripts/setup-engine.sh does both)"
)
LIVE_RESTORE_HINT = (
    "dockerd forgets a container's runtime options when it restarts with live-restore, and "
    "cannot checkpoint that container until it is restarted"
)
# Engine messages that mean CRIU itself is missing, too old or unusable on this kernel (rather
# than CRIU refusing one container, whose own log says why): only these get CRIU_HINT.
CRIU_SETUP_SIGNS = (
    "executable file not found",
    "criu: not found",
    "unexpected rt vdso",
    "can't get 1:16 opt",
    "criu version",
)
CRIU_HINT = (
    "CRIU >= 4.2 must be installed where runc finds it and `criu check` must pass "
    "(scripts/setup-engine.sh builds it when Debian's is older)"
)


@dataclass(frozen=True)
class ContainerInfo:
    """What ckptd needs to know of one container."""

    id: str
    name: str
    running: bool
    image: str = ""
    # "no", "always", "unless-stopped" or "on-failure" (Docker's HostConfig.RestartPolicy.Name).
    restart_policy: str = "no"
    auto_remove: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeFacts:
    """What the engine says about how a running container is run, for calling runc directly."""

    id: str
    pid: int
    runtime: str
    runtime_path: str | None
    root_dir: str


@dataclass(frozen=True)
class EngineStatus:
    """The engine's answer to "can you checkpoint?"."""

    version: str
    api_version: str
    experimental: bool
    root_dir: str
    criu: str | None


# What discovery listens to: "start" adds a container, the others take it away.
CONTAINER_EVENTS = ("start", "die", "destroy")


@dataclass(frozen=True)
class ContainerEvent:
    """One container event: what happened, to which container, and its labels."""

    action: str
    id: str
    name: str
    labels: Mapping[str, str]


class ContainerEvents:
    """An open event stream; iterate it for ContainerEvent, `close()` it from any thread."""

    def __init__(self, stream: Any, address: str) -> None:
        self._stream = stream
        self._address = address

    def __iter__(self) -> Iterator[ContainerEvent]:
        """Yield events until the stream ends; raise EngineNotReadyError when it breaks."""
        try:
            for raw in self._stream:
                actor = raw.get("Actor") or {}
                attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
                name = attributes.pop("name", "")
                # The remaining attributes are the container's labels plus these two.
                attributes.pop("image", None)
                attributes.pop("exitCode", None)
                yield ContainerEvent(
                    str(raw.get("Action") or raw.get("status")),
                    str(actor.get("ID") or raw.get("id")),
                    name,
                    attributes,
                )
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            DockerException,
            OSError,
            ValueError,
        ) as error:
            raise EngineNotReadyError(
                f"event stream from the Docker engine at {self._address} broke: {error}"
            ) from error

    def close(self) -> None:
        """End the stream; a thread iterating it stops."""
        self._stream.close()


def _explain(error: APIError) -> str:
    """Return the engine's own reason, with a hint when it points at a known set-up fault."""
    reason = str(error.explanation or error)
    lowered = reason.lower()
    if "experimental" in lowered:
        return f"{reason}; {EXPERIMENTAL_HINT}"

    if "criu" in lowered and any(sign in lowered for sign in CRIU_SETUP_SIGNS):
        return f"{reason}; {CRIU_HINT}"

    if "invalid task checkpoint option" in lowered:
        return f"{reason}; {LIVE_RESTORE_HINT}"

    return reason


def _check_container_ref(ref: str) -> None:
    """Raise ContainerNotFoundError for a ``ref`` no container can have."""
    if not CONTAINER_REF.fullmatch(ref):
        raise ContainerNotFoundError(ref)


def _check_checkpoint_name(container: str, name: str) -> None:
    """Raise CheckpointFailedError for a checkpoint ``name`` Docker would not accept."""
    if not CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointFailedError(container, name, "not a valid checkpoint name")


class Engine:
    """A connection to one Docker engine, from the usual DOCKER_HOST environment."""

    def __init__(self, base_url: str | None = None) -> None:
        kwargs: dict[str, Any] = dict(kwargs_from_env())
        if base_url:
            kwargs["base_url"] = base_url
        # The SDK rewrites a socket address to http+docker://localhost; keep what was asked for.
        self._address = str(kwargs.get("base_url") or "unix:///var/run/docker.sock")

        try:
            self.api = docker.APIClient(timeout=API_TIMEOUT_S, **kwargs)
        except DockerException as error:
            raise EngineNotReadyError(
                f"cannot reach the Docker engine at {self._address} ({error}); is dockerd running?"
            ) from error

        # The checkpoint endpoints have no public SDK method; these request helpers of the
        # low-level client are what its own methods use, but they are untyped.
        self._raw: Any = self.api
        self._root_dir: str | None = None

    @property
    def address(self) -> str:
        """Return the engine's address as configured, e.g. unix:///var/run/docker.sock."""
        return self._address

    @contextmanager
    def _translated(self, container: str | None = None) -> Iterator[None]:
        """Turn SDK and transport errors into ckptd's errors."""
        try:
            yield
        except NotFound as error:
            if container is None:
                raise EngineError(_explain(error)) from error
            raise ContainerNotFoundError(container) from error
        except APIError as error:
            raise EngineError(_explain(error)) from error
        except (requests.ConnectionError, DockerException) as error:
            raise EngineNotReadyError(
                f"cannot reach the Docker engine at {self._address}: {error}; is dockerd running?"
            ) from error

    def status(self) -> EngineStatus:
        """Return the engine's version and checkpoint readiness; raise when unreachable."""
        with self._translated():
            version = self.api.version()
            info = self.api.info()

        criu = shutil.which("criu", path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin")
        self._root_dir = str(info.get("DockerRootDir", "/var/lib/docker"))
        return EngineStatus(
            version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            experimental=bool(version.get("Experimental") or info.get("ExperimentalBuild")),
            root_dir=self._root_dir,
            criu=criu,
        )

    def ping(self) -> None:
        """Return once the engine answers its cheapest call; raise EngineNotReadyError if not."""
        with self._translated():
            self.api.ping()

    def require_ready(self) -> EngineStatus:
        """Return the status, or raise EngineNotReadyError saying what to fix."""
        status = self.status()
        if not status.experimental:
            raise EngineNotReadyError(
                f"dockerd {status.version} runs without experimental features, "
                f"so it cannot checkpoint: {EXPERIMENTAL_HINT}"
            )

        # runc runs CRIU from the engine host's PATH; a remote engine cannot be checked from here.
        if self.is_local and status.criu is None:
            raise EngineNotReadyError(
                f"dockerd {status.version} is experimental but no criu binary was found: "
                + CRIU_HINT
            )

        return status

    @property
    def is_local(self) -> bool:
        """True when the engine listens on a Unix socket of this host."""
        return self._address.startswith("unix://")

    def container(self, ref: str) -> ContainerInfo:
        """Return the container named (or with the id) ``ref``."""
        _check_container_ref(ref)
        with self._translated(ref):
            data = self.api.inspect_container(ref)

        host = data.get("HostConfig") or {}
        return ContainerInfo(
            id=str(data["Id"]),
            name=str(data["Name"]).lstrip("/"),
            running=bool(data["State"]["Running"]),
            image=str((data.get("Config") or {}).get("Image") or data.get("Image") or ""),
            restart_policy=str((host.get("RestartPolicy") or {}).get("Name") or "no"),
            auto_remove=bool(host.get("AutoRemove")),
        )

    def runtime_facts(self, ref: str) -> RuntimeFacts:
        """Return the init pid, OCI runtime and data root of container ``ref``."""
        with self._translated(ref):
            data = self.api.inspect_container(ref)
            info = self.api.info()

        runtime = str(data.get("HostConfig", {}).get("Runtime") or info.get("DefaultRuntime", ""))
        described = (info.get("Runtimes") or {}).get(runtime) or {}
        self._root_dir = str(info.get("DockerRootDir", "/var/lib/docker"))
        return RuntimeFacts(
            id=str(data["Id"]),
            pid=int(data["State"].get("Pid") or 0),
            runtime=runtime,
            runtime_path=described.get("path"),
            root_dir=self._root_dir,
        )

    def containers(self) -> list[ContainerInfo]:
        """Return every container, running or not."""
        with self._translated():
            rows = self.api.containers(all=True)

        return [_container_info(row) for row in rows]

    def info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return the engine's ``/version`` and ``/info`` answers, for `ckptd doctor`."""
        with self._translated():
            return dict(self.api.version()), dict(self.api.info())

    def running_containers(self) -> list[ContainerInfo]:
        """Return the running containers with their labels."""
        with self._translated():
            rows = self.api.containers(filters={"status": "running"})

        return [_container_info(row) for row in rows]

    def container_events(self) -> ContainerEvents:
        """Open the engine's event stream of container start, stop and removal."""
        with self._translated():
            stream = self.api.events(
                decode=True, filters={"type": "container", "event": list(CONTAINER_EVENTS)}
            )

        return ContainerEvents(stream, self._address)

    def list_checkpoints(self, container: str) -> list[str]:
        """Return the names of ``container``'s checkpoints (the engine tells nothing more)."""
        _check_container_ref(container)
        with self._translated(container):
            url = self._raw._url("/containers/{0}/checkpoints", container)
            rows = self._raw._result(self._raw._get(url), json=True)

        return [str(row["Name"]) for row in rows or []]

    def create_checkpoint(self, container: str, name: str, leave_running: bool) -> None:
        """Checkpoint ``container`` as ``name``; raise CheckpointFailedError with the reason."""
        _check_container_ref(container)
        _check_checkpoint_name(container, name)
        body = {"CheckpointID": name, "Exit": not leave_running}
        try:
            with self._translated(container):
                url = self._raw._url("/containers/{0}/checkpoints", container)
                response = self._raw._post_json(url, data=body, timeout=CHECKPOINT_TIMEOUT_S)
                self._raw._raise_for_status(response)
        except EngineNotReadyError:
            raise
        except ContainerNotFoundError:
            raise
        except EngineError as error:
            raise CheckpointFailedError(container, name, str(error)) from error
        except requests.Timeout as error:
            raise CheckpointFailedError(
                container, name, f"no answer within {CHECKPOINT_TIMEOUT_S} s"
            ) from error

    def delete_checkpoint(self, container: str, name: str) -> None:
        """Delete checkpoint ``name`` of ``container``."""
        _check_container_ref(container)
        _check_checkpoint_name(container, name)
        with self._translated(container):
            url = self._raw._url("/containers/{0}/checkpoints/{1}", container, name)
            self._raw._raise_for_status(self._raw._delete(url))

    def checkpoint_dir(self, container_id: str, name: str) -> Path | None:
        """Return the folder the engine keeps checkpoint ``name`` in, or None when not local."""
        if self._root_dir is None:
            self.status()

        folder = Path(str(self._root_dir), "containers", container_id, "checkpoints", name)
        # Both parts come from the engine or ckptd's own naming; a name that would climb out
        # of the container's checkpoint folder is not one of its checkpoints.
        if folder.parent.resolve() != folder.resolve().parent or not folder.is_dir():
            return None

        return folder

    def checkpoint_size(self, container_id: str, name: str) -> int | None:
        """Return the bytes a checkpoint takes on disk, or None when its folder is not local."""
        folder = self.checkpoint_dir(container_id, name)
        if folder is None:
            return None

        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    def checkpoint_modified(self, container_id: str, name: str) -> datetime | None:
        """Return when a checkpoint's folder last changed, or None when it is not local."""
        folder = self.checkpoint_dir(container_id, name)
        if folder is None:
            return None

        return datetime.fromtimestamp(folder.stat().st_mtime, UTC)

    def free_bytes(self, container_id: str) -> int | None:
        """Return the bytes free on the filesystem holding a container's checkpoints.

        Returns None when that folder is not on this host (a remote engine).
        """
        if self._root_dir is None:
            self.status()

        container_dir = Path(str(self._root_dir), "containers", container_id)
        for candidate in (container_dir / "checkpoints", container_dir):
            if candidate.is_dir():
                usage = os.statvfs(candidate)
                return usage.f_bavail * usage.f_frsize

        return None


@dataclass(frozen=True)
class ExecResult:
    """How a command run inside a container ended."""

    exit_code: int | None
    output: str
    timed_out: bool
    # The command's process on the engine's host, while it still runs (0: ended or unknown).
    pid: int = 0


class EngineCalls:
    """The Engine API calls a store, a restore and a hook need, on top of ``Engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._raw: Any = engine.api

    def inspect(self, ref: str) -> dict[str, Any]:
        """Return the engine's whole description of container ``ref``."""
        with self.engine._translated(ref):
            return dict(self.engine.api.inspect_container(ref))

    def versions(self) -> dict[str, str]:
        """Return the versions of the engine and of its containerd and runc."""
        with self.engine._translated():
            version = self.engine.api.version()

        found = {"engine": str(version.get("Version", "?"))}
        for component in version.get("Components") or []:
            name = str(component.get("Name", "")).lower()
            if name in ("containerd", "runc"):
                found[name] = str(component.get("Version", "?"))

        return found

    def container_folder(self, data: dict[str, Any]) -> Path:
        """Return the engine's folder of the container ``data`` describes (inspect output)."""
        # The engine names files of the container's own folder; its parent is that folder.
        for key in ("HostnamePath", "ResolvConfPath", "LogPath"):
            if data.get(key):
                return Path(str(data[key])).parent

        root = self.engine.status().root_dir
        return Path(root, "containers", str(data["Id"]))

    def changes(self, container: str) -> list[dict[str, Any]]:
        """Return the writable layer's changes: Path and Kind (0 changed, 1 added, 2 deleted)."""
        with self.engine._translated(container):
            rows = self.engine.api.diff(container)

        return [dict(row) for row in rows or []]

    def get_archive(self, container: str, path: str) -> tuple[Iterator[bytes], dict[str, Any]]:
        """Return a tar stream of ``path`` in the container and the path's stat."""
        with self.engine._translated(container):
            stream, stat = self.engine.api.get_archive(container, path)

        return stream, dict(stat)

    def put_archive(self, container: str, data: bytes) -> None:
        """Unpack the tar ``data`` at / in the container (running or not)."""
        with self.engine._translated(container):
            if not self.engine.api.put_archive(container, "/", data):
                raise EngineError(f"the engine refused the archive for container {container!r}")

    def create(self, name: str, config: dict[str, Any]) -> str:
        """Create a container from a create body (Config plus HostConfig); return its id."""
        with self.engine._translated():
            url = self._raw._url("/containers/create")
            response = self._raw._post_json(url, data=config, params={"name": name})
            result = self._raw._result(response, json=True)

        return str(result["Id"])

    def start(self, container: str, checkpoint: str | None, timeout_s: float) -> None:
        """Start the container, from ``checkpoint`` when given; raise requests.Timeout on a hang."""
        params = {"checkpoint": checkpoint} if checkpoint else {}
        with self.engine._translated(container):
            url = self._raw._url("/containers/{0}/start", container)
            response = self._raw._post(url, params=params, timeout=timeout_s)
            self._raw._raise_for_status(response)

    def stop(self, container: str, timeout_s: int = 10) -> None:
        """Stop the container (SIGTERM, then SIGKILL after ``timeout_s``)."""
        with self.engine._translated(container):
            self.engine.api.stop(container, timeout=timeout_s)

    def remove(self, container: str) -> None:
        """Remove the container and its anonymous volumes, stopping it first if it runs."""
        with self.engine._translated(container):
            self.engine.api.remove_container(container, v=True, force=True)

    def exec(self, container: str, command: list[str], timeout_s: float) -> ExecResult:
        """Run ``command`` (no shell) inside the container; give up after ``timeout_s``.

        The SDK reads an exec's output with socket timeouts disabled, so the read runs in a
        thread that is waited for; on a timeout the process's host pid is returned for killing.
        """
        with self.engine._translated(container):
            exec_id = self.engine.api.exec_create(container, command)["Id"]

        answer: dict[str, Any] = {}

        def read() -> None:
            try:
                answer["output"] = self.engine.api.exec_start(exec_id)
            except (APIError, DockerException, requests.RequestException) as error:
                answer["error"] = error

        reader = threading.Thread(target=read, name="ckptd-exec", daemon=True)
        reader.start()
        reader.join(timeout_s)
        with self.engine._translated(container):
            state = self.engine.api.exec_inspect(exec_id)

        if reader.is_alive():
            pid = int(state.get("Pid") or 0) if state.get("Running") else 0
            return ExecResult(None, "", timed_out=True, pid=pid)

        if "error" in answer:
            raise EngineError(f"exec {command!r} in {container!r} failed: {answer['error']}")

        output = bytes(answer.get("output") or b"")
        return ExecResult(state.get("ExitCode"), output.decode(errors="replace"), False)


def _container_info(row: dict[str, Any]) -> ContainerInfo:
    # A listing filtered on status=running reports State "running" too, so one reading serves.
    return ContainerInfo(
        id=str(row["Id"]),
        name=str((row.get("Names") or ["/" + row["Id"][:12]])[0]).lstrip("/"),
        running=row.get("State") == "running",
        labels={str(k): str(v) for k, v in (row.get("Labels") or {}).items()},
    )
