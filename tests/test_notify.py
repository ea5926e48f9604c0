"""The notify protocol against a real Unix datagram socket, as systemd listens on one."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from ckptd.notify import (
    Notifier,
    arm_watchdog,
    format_message,
    socket_address,
    watchdog_interval,
)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a path, and the NOTIFY_SOCKET value naming it."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def receive(sock: socket.socket) -> dict[str, str]:
    """Return the next datagram's fields."""
    data = sock.recv(4096).decode()
    assert data.endswith("\n")
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_carries_status(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    assert Notifier({"NOTIFY_SOCKET": name}).ready("2 target(s) scheduled")
    assert {"READY": "1", "STATUS": "2 target(s) scheduled"} == receive(sock)


def test_reloading_carries_the_monotonic_clock(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notifier = Notifier({"NOTIFY_SOCKET": name})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    fields = receive(sock)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    assert "1" == fields["RELOADING"]
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_stopping_and_watchdog(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notifier = Notifier({"NOTIFY_SOCKET": name})
    notifier.stopping()
    notifier.ping()
    assert "1" == receive(sock)["STOPPING"]
    assert {"WATCHDOG": "1"} == receive(sock)


def test_abstract_socket_names() -> None:
    name = f"@ckptd-test-{uuid.uuid4().hex}"
    assert b"\0" + name[1:].encode() == socket_address(name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(socket_address(name))
        sock.settimeout(5)
        Notifier({"NOTIFY_SOCKET": name}).status("idle")
        assert {"STATUS": "idle"} == receive(sock)


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("ignored")


def test_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ping()


def test_a_status_must_be_one_line() -> None:
    with pytest.raises(ValueError, match="one line"):
        format_message({"STATUS": "two\nlines"})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    environ: dict[str, str], expected: float | None
) -> None:
    interval = watchdog_interval(environ)
    assert expected == (None if interval is None else interval.total_seconds())


def count_pings(sock: socket.socket, seconds: float) -> int:
    """Return how many WATCHDOG=1 datagrams arrive within ``seconds``."""
    pings = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            fields = receive(sock)
        except TimeoutError:
            break
        pings += fields.get("WATCHDOG") == "1"
    return pings


def test_the_scheduler_loop_drives_the_pings_and_a_hung_one_stops_them(
    listener: tuple[socket.socket, str],
) -> None:
    sock, name = listener
    notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
    scheduler = BackgroundScheduler(timezone="UTC")
    assert arm_watchdog(scheduler, notifier)
    scheduler.start()
    try:
        assert count_pings(sock, 1.0) >= 5

        # The scheduler's loop takes this lock to look for due jobs; holding it from another
        # thread hangs the loop exactly where a stuck job store would.
        hold = threading.Event()
        held = threading.Event()

        def hang() -> None:
            with scheduler._jobstores_lock:
                held.set()
                hold.wait(10)

        hanger = threading.Thread(target=hang)
        hanger.start()
        held.wait(5)
        count_pings(sock, 0.3)  # what was already dispatched before the hang
        assert 0 == count_pings(sock, 1.0)
        hold.set()
        hanger.join()
        assert count_pings(sock, 1.0) >= 3
    finally:
        scheduler.shutdown(wait=False)


def test_no_watchdog_job_without_watchdog_usec(listener: tuple[socket.socket, str]) -> None:
    _, name = listener
    scheduler = BackgroundScheduler(timezone="UTC")
    assert not arm_watchdog(scheduler, Notifier({"NOTIFY_SOCKET": name}))
    assert [] == scheduler.get_jobs()


def test_a_listener_that_stops_reading_does_not_block_the_sender(
    listener: tuple[socket.socket, str],
) -> None:
    _, name = listener
    notifier = Notifier({"NOTIFY_SOCKET": name})
    # The kernel queues only so many datagrams per socket (net.unix.max_dgram_qlen); past
    # that, a send must give up (and report it) instead of blocking the daemon.
    sent = 0
    while notifier.ping():
        sent += 1
        assert sent < 10_000
