"""Disposable Docker engines for tests that must stop, kill or misconfigure one.

The shared dockerd and containerd of the machine are never touched: each `DisposableEngine`
runs its own containerd (own root, state and sockets) and its own dockerd (own data root, exec
root, API socket, pid file and config file), all under one short temporary folder that is
removed when the engine is closed. Its dockerd gets a bridge of its own (never ``docker0``,
which the shared engine owns: a dockerd started with ``--bridge=none`` deletes ``docker0``
on start-up) and no iptables rules; containers on it may still use `--network none`.

Typical use::

    with disposable_engine(experimental=False) as engine:
        engine.docker("version")
        subprocess.run([...], env=engine.env())

`kill_dockerd()` / `start_dockerd()` let a fault test take the engine away and bring it back
while containerd (and so the containers) keep running, as on a real host; whether dockerd then
keeps or stops them is its `live-restore` setting (``live_restore=True``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ckptd.procs import command_lines

# A Unix socket path may be at most 107 bytes, and containerd's shims add to it; pytest's
# tmp_path is too long, so the engine lives under a short folder of its own.
ROOT_PREFIX = "/tmp/ckde-"
START_TIMEOUT_S = 60.0

_CONTAINERD_CONFIG = """\
version = 2
root = "{root}/containerd-root"
state = "{root}/containerd-state"
# Kubernetes' CRI plugin would open a streaming port and look for CNI; dockerd needs neither.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd-opt"
"""


class DisposableEngine:
    """A containerd + dockerd pair of the test's own, under ``root``."""

    def __init__(self, root: Path, experimental: bool = True, live_restore: bool = False) -> None:
        self.root = root
        self.experimental = experimental
        # Without live restore (dockerd's default), a dockerd that starts again stops the
        # containers it left running; with it, they keep running across the restart.
        self.live_restore = live_restore
        self.socket = root / "docker.sock"
        self.containerd_socket = root / "containerd.sock"
        self._containerd: subprocess.Popen[bytes] | None = None
        self._dockerd: subprocess.Popen[bytes] | None = None
        # Interface names are at most 15 bytes; the temporary folder's suffix is unique.
        self.bridge = "ck" + root.name.removeprefix("ckde-")[:13]

    @property
    def host(self) -> str:
        """Return the engine's address in DOCKER_HOST form."""
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        """Return dockerd's --data-root (containers/<id>/checkpoints live under it)."""
        return self.root / "data"

    def env(self, **extra: str) -> dict[str, str]:
        """Return os.environ with DOCKER_HOST pointing at this engine (for ckptd and docker)."""
        return {**os.environ, "DOCKER_HOST": self.host, **extra}

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; return its completed process."""
        return subprocess.run(
            ["docker", "-H", self.host, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def start(self) -> None:
        """Start containerd and dockerd; return once the API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        _add_bridge(self.bridge)
        self._start_containerd()
        self.start_dockerd()

    def _start_containerd(self) -> None:
        config = self.root / "containerd.toml"
        config.write_text(_CONTAINERD_CONFIG.format(root=self.root))
        log = (self.root / "containerd.log").open("ab")
        self._containerd = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        _wait_until(self.containerd_socket.exists, self._containerd, "containerd socket")

    def start_dockerd(self) -> None:
        """Start (or start again) dockerd on the running containerd; wait for its API."""
        config = self.root / "daemon.json"
        config.write_text(
            json.dumps({"experimental": self.experimental, "live-restore": self.live_restore})
        )
        log = (self.root / "dockerd.log").open("ab")
        self._dockerd = subprocess.Popen(
            [
                "dockerd",
                f"--config-file={config}",
                f"--data-root={self.data_root}",
                f"--exec-root={self.root / 'exec'}",
                f"--host={self.host}",
                f"--pidfile={self.root / 'dockerd.pid'}",
                f"--containerd={self.containerd_socket}",
                # The shared engine owns docker0 and the iptables chains; stay off both.
                # Not --bridge=none: dockerd then deletes docker0 from under the shared engine.
                f"--bridge={self.bridge}",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        _wait_until(self._api_answers, self._dockerd, "dockerd API")

    def _api_answers(self) -> bool:
        if not self.socket.exists():
            return False

        return self.docker("version", check=False, timeout=10).returncode == 0

    @property
    def dockerd_pid(self) -> int | None:
        """Return dockerd's pid while it runs, else None."""
        if self._dockerd is None or self._dockerd.poll() is not None:
            return None

        return self._dockerd.pid

    def stop_dockerd(self, timeout: float = 30) -> None:
        """Stop dockerd cleanly (SIGTERM); its containers keep running under containerd."""
        self._end(self._dockerd, signal.SIGTERM, timeout)

    def kill_dockerd(self) -> None:
        """Kill dockerd at once (SIGKILL), as a crash would."""
        self._end(self._dockerd, signal.SIGKILL, 10)

    @staticmethod
    def _end(process: subprocess.Popen[bytes] | None, signum: int, timeout: float) -> None:
        if process is None or process.poll() is not None:
            return

        process.send_signal(signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def load_image(self, image: str) -> None:
        """Copy ``image`` from the shared engine into this one (no registry is reachable)."""
        with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
            subprocess.run(
                ["docker", "-H", self.host, "load", "-q"],
                stdin=save.stdout,
                check=True,
                capture_output=True,
                timeout=120,
            )
        if save.returncode != 0:
            raise RuntimeError(f"docker save {image} failed with {save.returncode}")

    def close(self) -> None:
        """Remove every container, stop both daemons, unmount and delete ``root``."""
        if self.dockerd_pid is None and self._containerd and self._containerd.poll() is None:
            with suppress(RuntimeError, subprocess.SubprocessError):
                self.start_dockerd()

        if self.dockerd_pid is not None:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)

        self.stop_dockerd()
        self._end(self._containerd, signal.SIGTERM, 30)
        self._kill_leftover_shims()
        _unmount_below(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)

    def _kill_leftover_shims(self) -> None:
        """End containerd shims that still serve this engine (they name its socket)."""
        address = str(self.containerd_socket)
        for pid, argv in command_lines():
            if b"containerd-shim" in argv[0] and address.encode() in argv:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def dockerd_log(self) -> str:
        """Return what dockerd printed so far (for assertion messages)."""
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    """Wait until ``ready()`` is true, failing at once if ``process`` exits first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")

        if ready():
            return

        time.sleep(0.2)

    raise RuntimeError(f"{what} not ready within {START_TIMEOUT_S} s")


def _add_bridge(name: str) -> None:
    """Create bridge ``name`` with a free 10.x.y.1/24 address, for one disposable dockerd."""
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    while True:
        network = ipaddress.ip_network(
            f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
        )
        if f" {network.network_address + 1}/" not in used:
            break

    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(
        ["ip", "addr", "add", f"{network.network_address + 1}/24", "dev", name], check=True
    )
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


def _unmount_below(root: Path) -> None:
    """Unmount every mount point under ``root``, deepest first."""
    prefix = str(root) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]

    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextmanager
def disposable_engine(
    experimental: bool = True, live_restore: bool = False
) -> Iterator[DisposableEngine]:
    """Yield a started disposable engine; close it (and delete everything it made) afterwards."""
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
    engine = DisposableEngine(root, experimental, live_restore)
    try:
        engine.start()
        yield engine
    finally:
        engine.close()
