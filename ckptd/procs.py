"""The processes of this host, read from /proc: what reconciling and restoring look for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def command_lines(proc: Path = Path("/proc")) -> Iterator[tuple[int, list[bytes]]]:
    """Yield (pid, argv) of every process still there when read; argv as /proc splits it."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue

        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            # Gone between the listing and the read, or a kernel thread we may not read.
            continue

        yield int(entry.name), argv


def parent_pid(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Return the parent of ``pid``, or None once it has gone (the name may hold ')')."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None

    return int(stat.rpartition(")")[2].split()[1])
