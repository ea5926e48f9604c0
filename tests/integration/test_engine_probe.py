"""`ckptd_engine_up` from the background probe, against the real engine behind a socket that the
test can take away (the shared dockerd itself is never stopped)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ckptd.engine import Engine
from ckptd.metrics import Metrics
from ckptd.probe import EngineProbe

DOCKER_SOCKET = "/var/run/docker.sock"


class SocketRelay:
    """A Unix socket that relays every connection to dockerd's, until it is closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def open(self) -> None:
        """Listen on the path and relay connections in background threads."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening, cut every relayed connection and remove the socket file."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None

        for sock in self._open:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

        self._open.clear()
        self.path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return

            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(DOCKER_SOCKET)
            self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        return
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay(engine: None, tmp_path: Path) -> Iterator[SocketRelay]:
    """Return an open relay to the real engine, closed at the end."""
    if not os.path.exists(DOCKER_SOCKET):
        pytest.fail(f"{DOCKER_SOCKET} missing although the engine answers")

    relay = SocketRelay(tmp_path / "docker.sock")
    relay.open()
    try:
        yield relay
    finally:
        relay.close()


def test_probe_follows_the_engine_going_away_and_coming_back(relay: SocketRelay) -> None:
    registry = CollectorRegistry()
    probe = EngineProbe(Engine(f"unix://{relay.path}"), Metrics(registry))

    assert probe.probe()
    assert 1 == registry.get_sample_value("ckptd_engine_up")

    relay.close()
    assert not probe.probe()
    assert 0 == registry.get_sample_value("ckptd_engine_up")

    relay.open()
    assert probe.probe()
    assert 1 == registry.get_sample_value("ckptd_engine_up")


def wait_for_engine_up(registry: CollectorRegistry, expected: float) -> float | None:
    """Return ckptd_engine_up once it equals ``expected``, or its last value after 5 s."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        value = registry.get_sample_value("ckptd_engine_up")
        if value == expected:
            return value
        time.sleep(0.05)

    return registry.get_sample_value("ckptd_engine_up")


def test_probe_thread_keeps_the_gauge_current_until_stopped(relay: SocketRelay) -> None:
    registry = CollectorRegistry()
    probe = EngineProbe(Engine(f"unix://{relay.path}"), Metrics(registry), interval=0.1)
    probe.start()
    try:
        up = wait_for_engine_up(registry, 1)
        relay.close()
        down = wait_for_engine_up(registry, 0)
    finally:
        probe.stop()

    assert (1, 0) == (up, down)
