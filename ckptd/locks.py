"""The per-container lock that keeps checkpoints, prunes and restores of one container apart.

flock is per open file, so two threads of the daemon (two targets on one container), the daemon
and a ``ckptd checkpoint`` or ``ckptd restore`` exclude each other the same way. A process must
not take a container's lock twice: the second open file would wait for the first for ever.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
