"""The daemon's control socket: a local Unix socket only root can open, for `ckptd status`.

One request per connection: the client sends a command word and a newline, the daemon answers
with one JSON document and closes. The socket is mode 0600 inside a folder of mode 0700, so
file permissions, not a password, decide who may ask.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ckptd.errors import CkptdError

log = structlog.get_logger("ckptd.control")

Handler = Callable[[str], dict[str, Any]]
MAX_REQUEST = 256
CLIENT_TIMEOUT_S = 10.0


class DaemonNotRunningError(CkptdError):
    """No daemon answers on the control socket."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        super().__init__(
            f"the ckptd daemon is not running (nothing answers on {path}: {why}); "
            "start it with `systemctl start ckptd` or `ckptd run`"
        )


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handler: Handler


class _Request(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        command = self.rfile.readline(MAX_REQUEST).decode(errors="replace").strip()
        try:
            answer = server.handler(command)
        except Exception as error:  # a bad request must never take the daemon down
            log.exception("control_request_failed", command=command)
            answer = {"error": f"{type(error).__name__}: {error}"}

        self.wfile.write(json.dumps(answer).encode() + b"\n")


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's folder (0700) if missing; remove a stale socket left at ``path``.

    Raises CkptdError when ``path`` is not a socket or a live daemon still answers on it.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)

    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise CkptdError(f"{path} exists and is not a socket; refusing to replace it")

        if _answers(path):
            raise CkptdError(
                f"another ckptd daemon already answers on {path}; stop it, or give this one "
                "its own daemon.control_socket"
            )

        path.unlink()


def _answers(path: Path) -> bool:
    """True when something accepts connections on the socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
        except OSError:
            return False

    return True


class ControlServer:
    """Serves ``handler(command)`` on ``path`` from a background thread."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        prepare_socket_dir(path)
        self._server = _Server(str(path), _Request)
        self._server.handler = handler
        os.chmod(path, 0o600)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ckptd-control", daemon=True
        )

    def start(self) -> None:
        """Start answering requests."""
        self._thread.start()
        log.info("control_listening", socket=str(self.path))

    def close(self) -> None:
        """Stop answering and remove the socket file."""
        self._server.shutdown()
        self._server.server_close()
        if self.path.exists():
            self.path.unlink()


def query(path: Path, command: str) -> dict[str, Any]:
    """Ask the daemon at ``path``; raise DaemonNotRunningError when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CLIENT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise DaemonNotRunningError(path, error.strerror or str(error)) from error
        except PermissionError as error:
            raise CkptdError(
                f"permission denied on {path}: only root may ask the daemon; try sudo"
            ) from error

        data = b""
        try:
            sock.sendall(command.encode() + b"\n")
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError as error:
            raise CkptdError(
                f"the daemon on {path} did not answer within {CLIENT_TIMEOUT_S:.0f} s"
            ) from error

    answer: dict[str, Any] = json.loads(data)
    if "error" in answer:
        raise CkptdError(f"the daemon could not answer {command!r}: {answer['error']}")

    return answer
