"""Fixtures on the real Docker engine with CRIU, driving ckptd as a user does.

Engine tests fail, never skip, when CI=true and the engine is missing: a CI run that
silently skipped them would prove nothing.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("CKPTD_TEST_IMAGE", "ckptd-example-app:latest")
# The installed console script, as an operator runs it.
CKPTD = [str(Path(sys.executable).with_name("ckptd"))]
# The example app's journal file in `journal_app`, and its step lines.
JOURNAL = "/journal.log"
STEP = re.compile(r"step=(\d+) ")


def docker(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; return its completed process."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def free_port() -> int:
    """Return a loopback TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def engine() -> None:
    """Ensure the engine answers and can checkpoint; fail in CI, skip elsewhere, when it can't."""
    try:
        answer = docker("version", "--format", "{{.Server.Experimental}}", check=False, timeout=20)
        problem = None if answer.stdout.strip() == "true" else (answer.stderr or answer.stdout)
    except (FileNotFoundError, subprocess.TimeoutExpired) as error:
        problem = str(error)

    if problem is None:
        return

    message = f"Docker engine with experimental features unavailable: {problem.strip()}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (run scripts/setup-engine.sh)")
    pytest.skip(message + " (run `make test`, which sets it up)")


@pytest.fixture(scope="session")
def app_image(engine: None) -> str:
    """Return the example app's image, building it when absent."""
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        subprocess.run(["bash", str(ROOT / "examples/cpp-app/build.sh")], check=True)

    return IMAGE


@dataclass
class AppContainer:
    """A running example app container and a reader of its output."""

    name: str

    def logs(self) -> list[str]:
        """Return every line the app printed, across restores."""
        return docker("logs", self.name).stdout.splitlines()

    def steps(self, lines: list[str] | None = None) -> list[int]:
        """Return the step counters printed, in order."""
        found = (re.match(r"step=(\d+)", line) for line in lines or self.logs())
        return [int(m[1]) for m in found if m]

    def startups(self, lines: list[str] | None = None) -> int:
        """Return how many start-up lines the app printed."""
        return sum(line.startswith("startup:") for line in lines or self.logs())

    def wait_for_steps(self, count: int, timeout: float = 60) -> list[str]:
        """Wait until ``count`` lines have been printed in all; return the lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.logs()
            if len(lines) >= count and self.steps(lines):
                return lines
            time.sleep(0.2)
        raise AssertionError(f"{self.name} printed fewer than {count} lines in {timeout}s")

    def checkpoints(self) -> list[str]:
        """Return the names of the container's checkpoints."""
        out = docker("checkpoint", "ls", self.name).stdout.splitlines()
        return [line.strip() for line in out[1:] if line.strip()]


@contextmanager
def started_app(image: str, prefix: str, *options: str) -> Iterator[AppContainer]:
    """Run the example app as ``<prefix>-<random>``, yield it once it steps, then remove it."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, *options, image)
    container = AppContainer(name)
    try:
        container.wait_for_steps(3)
        yield container
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture
def app(app_image: str) -> Iterator[AppContainer]:
    """Start the example app (short start-up) and wait until it works."""
    env = ["-e", "STARTUP_SECONDS=2", "-e", "TABLE_MB=16", "-e", "STEP_MS=200"]
    with started_app(app_image, "ckptd-it", *env) as container:
        yield container


@pytest.fixture
def journal_app(app_image: str) -> Iterator[AppContainer]:
    """Start the example app with a growing, read-write journal file and no network."""
    env = ["-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=8", "-e", "STEP_MS=200"]
    journal = ["-e", f"JOURNAL_FILE={JOURNAL}"]
    with started_app(app_image, "store", "--network", "none", *env, *journal) as container:
        yield container
        docker("rm", "-f", f"{container.name}-clone", check=False)


def write_policy(path: Path, container: str, port: int, **target: object) -> Path:
    """Write a one-target policy; extra keyword arguments override target keys (as YAML).

    The daemon's state (catalog) goes to a ``state`` folder beside the policy, never to the
    machine's /var/lib/ckptd.
    """
    fields = {"schedule": "{every: 2s}", "retention": "{keep_last: 3}", **target}
    lines = [
        "daemon:",
        f"  metrics_address: 127.0.0.1:{port}",
        "  stop_timeout: 60s",
        f"  state_dir: {path.parent / 'state'}",
        # Each test's daemon gets its own control socket; the default one is the host's.
        f"  control_socket: {path.parent / 'control.sock'}",
        "targets:",
        "  - name: it",
        f"    container: {container}",
        *(f"    {key}: {value}" for key, value in fields.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_ckptd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a ckptd command to completion."""
    return subprocess.run(
        [*CKPTD, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of the daemon's /metrics, keyed by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(metrics: dict, name: str, container: str, **labels: str) -> float:
    """Return one sample of target ``it``."""
    key = tuple(sorted({"target": "it", "container": container, **labels}.items()))
    return metrics[(name, key)]


def wait_for_metrics(port: int, process: subprocess.Popen[str], timeout: float = 20) -> dict:
    """Return the first successful scrape, failing if the daemon dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ckptd exited with {process.returncode}"
        try:
            return scrape(port)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no /metrics on port {port} within {timeout}s")


def store_policy(tmp_path: Path, app: AppContainer, port: int = 0, **target: object) -> Path:
    """Write a policy whose store is under the test's folder."""
    policy = write_policy(tmp_path / "policy.yaml", app.name, port or free_port(), **target)
    text = policy.read_text().replace("daemon:\n", f"daemon:\n  store: {tmp_path / 'store'}\n")
    policy.write_text(text)
    return policy


def checkpoint(policy: Path) -> str:
    """Take one checkpoint of target ``it`` with the CLI; return its name."""
    done = run_ckptd("checkpoint", "--config", str(policy), "it")
    assert 0 == done.returncode, done.stderr
    return done.stdout.strip().splitlines()[-1]


def step_at_dump(tmp_path: Path, name: str) -> int:
    """Return the last step in the journal as the store kept it: the step reached at the dump."""
    (rootfs,) = (tmp_path / "store").glob(f"*/{name}/rootfs.tar")
    with tarfile.open(rootfs) as archive:
        handle = archive.extractfile(JOURNAL.lstrip("/"))
        assert handle is not None
        lines = handle.read().decode().splitlines()

    return int(lines[-1].removeprefix("step="))


def assert_resumed(after: list[str], dumped_step: int) -> None:
    """The app went on from the dump: no start-up, consecutive steps from the dumped one."""
    steps = [int(m[1]) for m in map(STEP.match, after) if m]
    assert not [line for line in after if line.startswith("startup:")], after[:5]
    assert steps, after
    assert dumped_step + 1 == steps[0], (dumped_step, after[:3])
    assert steps == list(range(steps[0], steps[0] + len(steps)))
