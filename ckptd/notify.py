"""systemd's notify protocol: tell the service manager when ckptd is ready, reloading, stopping.

A `Type=notify` unit gets ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace)
and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. Each message is one datagram of ``KEY=value``
lines. Without ``NOTIFY_SOCKET`` (a terminal, a container, a test) every call does nothing, so
the daemon never has to ask whether it runs under systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor

log = structlog.get_logger("ckptd.notify")

WATCHDOG_JOB_ID = "ckptd-watchdog"
SEND_TIMEOUT_S = 0.25
WATCHDOG_EXECUTOR = "watchdog"


def format_message(fields: Mapping[str, str | int]) -> bytes:
    """Return ``fields`` as one notify datagram; raise ValueError on a value with a newline."""
    lines: list[str] = []
    for key, value in fields.items():
        text = str(value)
        if "\n" in text:
            raise ValueError(f"notify field {key} must be one line, got {text!r}")

        lines.append(f"{key}={text}")

    return ("\n".join(lines) + "\n").encode()


def socket_address(name: str) -> str | bytes:
    """Return the address to send to for a ``NOTIFY_SOCKET`` value (``@`` = abstract)."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()

    return name


def monotonic_usec() -> int:
    """Return CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(environ: Mapping[str, str] | None = None) -> timedelta | None:
    """Return how often to ping the watchdog (half of WATCHDOG_USEC), or None when it is off.

    A WATCHDOG_PID naming another process means the watchdog is meant for that process.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None

    if pid and pid != str(os.getpid()):
        return None

    return timedelta(microseconds=int(usec) / 2)


class Notifier:
    """Sends notify messages to the socket in ``NOTIFY_SOCKET``; silent when there is none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(name) if name else None
        self.watchdog = watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message; return False (and log) when it could not be delivered."""
        if self.address is None:
            return False

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A listener that stops reading fills its queue; never let that block ckptd.
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendto(format_message(fields), self.address)
        except OSError as error:
            # systemd gone or restarting: the daemon's work matters more than telling it.
            log.warning("notify_failed", fields=sorted(fields), error=str(error))
            return False

        return True

    def ready(self, status: str) -> bool:
        """Say the daemon is ready (schedule armed), with a one-line status."""
        return self.send(READY=1, STATUS=status)

    def reloading(self) -> bool:
        """Say a reload started; READY=1 (`ready`) must follow when it ends."""
        return self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="reloading policy")

    def status(self, status: str) -> bool:
        """Update the one-line status `systemctl status` shows."""
        return self.send(STATUS=status)

    def stopping(self) -> bool:
        """Say the daemon is shutting down."""
        return self.send(STOPPING=1, STATUS="stopping")

    def ping(self) -> bool:
        """Tell the watchdog the daemon is alive."""
        return self.send(WATCHDOG=1)


def arm_watchdog(scheduler: Any, notifier: Notifier) -> bool:
    """Add the watchdog ping as a job of ``scheduler``; return False when no watchdog is set.

    The ping runs as an ordinary job, dispatched by the scheduler's own loop, so a scheduler
    whose loop hangs stops pinging and systemd restarts ckptd. It runs on an executor of its
    own (``WATCHDOG_EXECUTOR``) so that long checkpoints filling the main pool do not delay it.
    """
    if notifier.watchdog is None or not notifier.enabled:
        return False

    with suppress(ValueError):  # already added by an earlier call
        scheduler.add_executor(ThreadPoolExecutor(1), WATCHDOG_EXECUTOR)
    # Two lines per ping ("Running job", "executed successfully") would drown journald.
    logging.getLogger(f"apscheduler.executors.{WATCHDOG_EXECUTOR}").setLevel(logging.WARNING)

    scheduler.add_job(
        notifier.ping,
        trigger="interval",
        seconds=notifier.watchdog.total_seconds(),
        id=WATCHDOG_JOB_ID,
        name="systemd watchdog",
        executor=WATCHDOG_EXECUTOR,
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    return True
