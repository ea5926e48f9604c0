"""The per-container lock that keeps checkpoints, prunes and restores of one container apart.

flock is per open file, so two threads of the daemon (two targets on one container), the daemon
and a ``ckptd checkpoint`` or ``ckptd restore`` exclude each other the same way. A process must
not take a container's lock twice: the second open file would wait for the first for ever.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ckptd.errors import CkptdError

DAEMON_LOCK = "daemon.lock"


@contextmanager
def container_lock(lock_dir: Path, container_id: str) -> Iterator[None]:
    """Hold the exclusive lock of container ``container_id`` (waiting for it) while inside."""
    lock_dir.mkdir(parents=True, exist_ok=True)

    with open(lock_dir / f"{container_id}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)

        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim_state_dir(state_dir: Path) -> IO[str]:
    """Return the open lock file that makes this process the one daemon of ``state_dir``.

    Two daemons on one catalog would schedule, prune and reconcile the same checkpoints. The
    lock lasts as long as the returned file stays open (until the process exits); raise
    CkptdError naming the other daemon's pid when it holds the lock.
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = open(state_dir / DAEMON_LOCK, "a+")  # noqa: SIM115 (the lock outlives this call)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise CkptdError(
            f"another ckptd daemon (pid {holder}) already uses daemon.state_dir {state_dir}; "
            "give each daemon a state folder of its own"
        ) from None

    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
