"""The runc engine: checkpoints of Docker-managed containers taken by calling runc directly.

Docker's checkpoint call packs CRIU's images into containerd's content store and unpacks them
again while the container waits (1 GiB: 21-29 s, the app frozen 6.5-9.4 s); runc alone writes
the same images in about half a second. ckptd finds the runc binary and state folder that run
the container from what the engine reports (its init pid, then that pid's containerd shim and
bundle), checks that runc's own record names the same init pid, lets runc write the images
beside Docker's checkpoint folder and moves them in with one rename. Docker 20.10 lists a
checkpoint by its folder alone, so it lists, restores (`docker start --checkpoint`) and removes
these exactly as the ones it made.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog

from ckptd.criu import DumpStats, StatsFormatError, read_dump_stats
from ckptd.engine import CHECKPOINT_TIMEOUT_S, Engine, RuntimeFacts
from ckptd.errors import CheckpointFailedError, CkptdError
from ckptd.procs import parent_pid

log = structlog.get_logger("ckptd.runc")

# containerd's runc shim uses this state folder when its options name none.
SHIM_DEFAULT_ROOT = "/run/containerd/runc"
# runc looks CRIU up on PATH; a daemon started with a minimal PATH would miss /usr/local/sbin.
CRIU_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How many of CRIU's error lines a failure message quotes.
LOG_LINES = 5
# Staging and work folders in the container's folder; never a valid checkpoint name.
STAGING_PREFIX = ".ckptd-"


class RuncStateNotFoundError(CkptdError):
    """runc's state for a container could not be found and verified; says why."""

    def __init__(self, container: str, reason: str) -> None:
        self.container = container
        self.reason = reason
        super().__init__(f"runc state of container {container[:12]} not found: {reason}")


@dataclass(frozen=True)
class RuncContainer:
    """A container as runc knows it: its binary, its state root and Docker's checkpoint folder."""

    id: str
    binary: str
    root: Path
    checkpoint_dir: Path


def _shim_namespace(proc: Path, shim: int, bundle: Path) -> str:
    """Return the containerd namespace the shim serves (its -namespace argument).

    Without one, the bundle's parent folder: containerd lays bundles out as <namespace>/<id>.
    """
    args = (proc / str(shim) / "cmdline").read_bytes().split(b"\0")
    for flag, value in zip(args, args[1:], strict=False):
        if flag in (b"-namespace", b"--namespace"):
            return value.decode()

    return bundle.parent.name


@functools.lru_cache(maxsize=8)
def _is_runc(binary: str) -> bool:
    """True when ``binary --version`` says it is runc (crun, runsc... write other images)."""
    try:
        answer = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False

    return answer.stdout.startswith("runc version")


def locate(facts: RuntimeFacts, proc: Path = Path("/proc")) -> RuncContainer:
    """Return how to call runc on the container ``facts`` describes.

    Raises RuncStateNotFoundError when the container is not run by runc through a containerd
    shim of this host, or when runc's state does not name the engine's init pid.
    """
    if facts.pid <= 0:
        raise RuncStateNotFoundError(facts.id, "the engine reports no running init process")

    try:
        shim = parent_pid(facts.pid, proc)
        if shim is None:
            raise OSError(f"pid {facts.pid} has gone")

        bundle = Path(os.readlink(proc / str(shim) / "cwd"))
        options = json.loads((bundle / "options.json").read_text())
        namespace = _shim_namespace(proc, shim, bundle)
    except (OSError, ValueError, IndexError) as error:
        raise RuncStateNotFoundError(
            facts.id, f"no containerd shim bundle for pid {facts.pid}: {error}"
        ) from None

    binary = shutil.which(str(options.get("binary_name") or facts.runtime_path or "runc"))
    if binary is None or not _is_runc(binary):
        raise RuncStateNotFoundError(
            facts.id, f"runtime {facts.runtime!r} ({binary or 'not on PATH'}) is not runc"
        )

    root = Path(str(options.get("root") or SHIM_DEFAULT_ROOT), namespace)
    state_file = root / facts.id / "state.json"
    try:
        init_pid = json.loads(state_file.read_text()).get("init_process_pid")
    except (OSError, ValueError) as error:
        raise RuncStateNotFoundError(facts.id, f"cannot read {state_file}: {error}") from None

    if init_pid != facts.pid:
        raise RuncStateNotFoundError(
            facts.id, f"{state_file} names init pid {init_pid}, the engine {facts.pid}"
        )

    container_dir = Path(facts.root_dir, "containers", facts.id)
    if not container_dir.is_dir():
        raise RuncStateNotFoundError(facts.id, f"Docker's folder {container_dir} is missing")

    return RuncContainer(facts.id, binary, root, container_dir / "checkpoints")


def find(engine: Engine, container_id: str) -> RuncContainer | None:
    """Return the runc view of a container, or None (logged) when Docker's path must be used."""
    try:
        if not engine.is_local:
            raise RuncStateNotFoundError(container_id, "the engine is not on this host")

        return locate(engine.runtime_facts(container_id))
    except RuncStateNotFoundError as error:
        log.warning("runc_engine_fallback", container=container_id[:12], reason=error.reason)
        return None


def _criu_errors(work: Path) -> str:
    """Return the last error lines of CRIU's dump log, read before the folder goes."""
    try:
        lines = (work / "dump.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""

    errors = [line.strip() for line in lines if "Error" in line or "error" in line]
    return "; ".join(errors[-LOG_LINES:])


def remove_stale_staging(container_dir: Path) -> None:
    """Remove staging folders a killed ckptd left in ``container_dir``.

    Called with the container's lock held, so no other ckptd is writing one at the same time.
    """
    for stale in container_dir.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
        log.warning("runc_staging_removed", folder=str(stale))


def checkpoint(container: RuncContainer, name: str) -> DumpStats | None:
    """Checkpoint ``container`` as ``name``, leaving it running; return CRIU's statistics.

    The images are written to a hidden folder beside ``checkpoints/`` and renamed into it once
    complete, so Docker never lists a half-written checkpoint. Raises CheckpointFailedError
    with runc's and CRIU's reasons; nothing of a failed attempt is left behind.
    """
    parent = container.checkpoint_dir.parent
    remove_stale_staging(parent)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}.", dir=parent))
    work = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}work-{name}.", dir=parent))
    command = [
        container.binary,
        "--root",
        str(container.root),
        "checkpoint",
        "--leave-running",
        "--image-path",
        str(staging),
        "--work-path",
        str(work),
        container.id,
    ]
    try:
        _run(command, container.id, name, work)
        # Read only now: runc returns once CRIU has let the container run again.
        stats = _read_stats(work / "stats-dump")
        container.checkpoint_dir.mkdir(mode=0o700, exist_ok=True)
        staging.chmod(0o700)
        os.rename(staging, container.checkpoint_dir / name)
    except OSError as error:
        raise CheckpointFailedError(container.id, name, f"storing the images: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    return stats


def _run(command: list[str], container: str, name: str, work: Path) -> None:
    """Run runc; raise CheckpointFailedError with its and CRIU's messages when it fails."""
    env = {**os.environ, "PATH": CRIU_PATH}
    try:
        answer = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=CHECKPOINT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise CheckpointFailedError(
            container, name, f"no answer within {CHECKPOINT_TIMEOUT_S} s"
        ) from None

    if answer.returncode != 0:
        said = " ".join(answer.stderr.split())[-400:]
        criu = _criu_errors(work)
        reason = f"runc checkpoint exited {answer.returncode}: {said}"
        raise CheckpointFailedError(container, name, f"{reason}; CRIU: {criu}" if criu else reason)


def _read_stats(path: Path) -> DumpStats | None:
    """Return CRIU's statistics, or None (logged) when it wrote none that can be read."""
    try:
        return read_dump_stats(path)
    except StatsFormatError as error:
        log.warning("criu_stats_unreadable", error=str(error))
        return None
