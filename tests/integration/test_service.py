"""ckptd as a service on the real engine: notify, live reload, label discovery, status, doctor."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import CKPTD, docker, free_port, run_ckptd, scrape
from tests.integration.engines import disposable_engine

Event = dict[str, Any]


class ServiceDaemon:
    """`ckptd run` in the background, with its JSON log and a notify socket of its own."""

    def __init__(
        self,
        folder: Path,
        policy: Path,
        watchdog_usec: int = 1_000_000,
        docker_host: str | None = None,
    ) -> None:
        self.folder = folder
        self.policy = policy
        self.log_path = folder / "ckptd.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(folder / "notify.sock"))
        self.notify.settimeout(0.5)
        # Read as systemd does, at once, so the daemon's sends never find a full queue.
        self.messages: queue.Queue[dict[str, str]] = queue.Queue()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(folder / "notify.sock"),
            "WATCHDOG_USEC": str(watchdog_usec),
        }
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [*CKPTD, "run", "--config", str(policy)], stderr=log, env=env
            )

    def events(self) -> list[Event]:
        """Return every JSON log event so far."""
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_event(
        self, predicate: Callable[[Event], bool], after: int = 0, timeout: float = 60
    ) -> int:
        """Return the index of the first event after ``after`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            for index, event in enumerate(self.events()):
                if index >= after and predicate(event):
                    return index
            time.sleep(0.2)
        raise AssertionError(f"no matching event within {timeout}s:\n{self.log()}")

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.notify.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.put(dict(line.split("=", 1) for line in data.splitlines()))

    def receive(self, key: str, timeout: float = 30) -> dict[str, str]:
        """Return the next notify message carrying ``key``, skipping others."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if key in message:
                return message
        raise AssertionError(f"no {key} notify message within {timeout}s")

    def log(self) -> str:
        """Return the daemon's log text."""
        return self.log_path.read_text()

    def stop(self) -> int:
        """SIGTERM the daemon; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

    def close(self) -> None:
        """Stop the daemon if it still runs, and close the notify socket."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._closed.set()
        self._reader.join()
        self.notify.close()


def event(name: str, **fields: str) -> Callable[[Event], bool]:
    """Return a predicate matching log event ``name`` with ``fields``."""
    return lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())


def write_service_policy(folder: Path, port: int, targets: list[str]) -> Path:
    """Write a policy with ``targets`` (YAML flow mappings) and test-local daemon paths."""
    lines = [
        "daemon:",
        f"  metrics_address: 127.0.0.1:{port}",
        "  stop_timeout: 60s",
        f"  state_dir: {folder / 'state'}",
        f"  control_socket: {folder / 'run' / 'control.sock'}",
        "targets:",
        *(f"  - {target}" for target in targets),
    ]
    path = folder / "policy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def containers(app_image: str) -> Iterator[Callable[..., str]]:
    """Start example-app containers named sys-…; all removed afterwards."""
    started: list[str] = []

    def start(table_mb: int = 16, labels: dict[str, str] | None = None) -> str:
        name = f"sys-{uuid.uuid4().hex[:8]}"
        flags = [f"--label={key}={value}" for key, value in (labels or {}).items()]
        env = ["-e", "STARTUP_SECONDS=1", "-e", f"TABLE_MB={table_mb}", "-e", "STEP_MS=200"]
        docker("run", "-d", "--name", name, *flags, *env, app_image)
        started.append(name)
        deadline = time.monotonic() + 60
        while "step=" not in docker("logs", name).stdout:
            assert time.monotonic() < deadline, f"{name} never started working"
            time.sleep(0.2)
        return name

    yield start
    for name in started:
        docker("rm", "-f", name, check=False)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., ServiceDaemon]]:
    """Start ServiceDaemons; each is killed (if still running) afterwards."""
    running: list[ServiceDaemon] = []

    def start(policy: Path, docker_host: str | None = None) -> ServiceDaemon:
        daemon = ServiceDaemon(tmp_path, policy, docker_host=docker_host)
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        daemon.close()


def checkpoints(container: str) -> list[str]:
    """Return the container's checkpoint names."""
    lines = docker("checkpoint", "ls", container).stdout.splitlines()[1:]
    return [line.strip() for line in lines if line.strip()]


def test_reload_adds_and_removes_targets_without_disturbing_a_checkpoint_in_flight(
    tmp_path: Path, containers: Callable[..., str], daemons: Callable[..., ServiceDaemon]
) -> None:
    big = containers(table_mb=128)  # about 4 s to checkpoint through dockerd here
    small = containers()
    port = free_port()
    old = f"{{name: big, container: {big}, schedule: {{every: 4s}}}}"
    new = f"{{name: fresh, container: {small}, schedule: {{every: 3s}}}}"
    policy = write_service_policy(tmp_path, port, [old])
    daemon = daemons(policy)

    ready = daemon.receive("READY")
    assert "1 target(s), 1 container(s) scheduled" == ready["STATUS"]
    assert "1" == daemon.receive("WATCHDOG")["WATCHDOG"]

    started = daemon.wait_event(event("checkpoint_starting", target="big"))
    write_service_policy(tmp_path, port, [new])
    daemon.process.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event(event("policy_reloaded"), after=started)
    done = daemon.wait_event(event("checkpoint_done", target="big"), after=started)
    fresh = daemon.wait_event(event("checkpoint_done", target="fresh"), after=reloaded)
    reloading = daemon.receive("RELOADING")
    after_reload = daemon.receive("READY")
    time.sleep(5)  # two more periods of the removed target
    metrics = scrape(port)
    assert 0 == daemon.stop()
    stopping = daemon.receive("STOPPING")
    events = daemon.events()

    # The reload happened while big's checkpoint ran, and that checkpoint completed.
    assert started < reloaded < done, daemon.log()
    assert not any(e["event"] == "checkpoint_failed" for e in events), daemon.log()
    assert events[done]["checkpoint"] in checkpoints(big)
    # The removed target never started again; the added one ran.
    restarted = [e for e in events[reloaded:] if e["event"] == "checkpoint_starting"]
    assert ["fresh"] == sorted({e["target"] for e in restarted}), restarted
    assert events[fresh]["checkpoint"] in checkpoints(small)

    assert int(reloading["MONOTONIC_USEC"]) > 0
    assert "1 target(s), 1 container(s) scheduled" == after_reload["STATUS"]
    assert "1" == stopping["STOPPING"]
    assert 1 == metrics[("ckptd_config_last_reload_successful", ())]
    loaded = metrics[("ckptd_config_last_reload_success_timestamp_seconds", ())]
    assert time.time() - 60 < loaded <= time.time()


def test_a_broken_policy_on_reload_keeps_the_old_one_running(
    tmp_path: Path, containers: Callable[..., str], daemons: Callable[..., ServiceDaemon]
) -> None:
    name = containers()
    port = free_port()
    good = f"{{name: it, container: {name}, schedule: {{every: 2s}}}}"
    policy = write_service_policy(tmp_path, port, [good])
    daemon = daemons(policy)
    daemon.receive("READY")
    first = daemon.wait_event(event("checkpoint_done", target="it"))
    loaded_at = scrape(port)[("ckptd_config_last_reload_success_timestamp_seconds", ())]

    broken = f"{{name: it, container: {name}, schedule: {{every: soon}}, colour: red}}"
    write_service_policy(tmp_path, port, [broken])
    daemon.process.send_signal(signal.SIGHUP)
    rejected = daemon.wait_event(event("reload_rejected"), after=first)
    still_running = daemon.wait_event(event("checkpoint_done", target="it"), after=rejected)
    after_reject = scrape(port)
    status = daemon.receive("STATUS")
    while "rejected" not in status["STATUS"]:
        status = daemon.receive("STATUS")

    # The policy file is broken now: ask the socket the running daemon listens on.
    socket_path = str(tmp_path / "run" / "control.sock")
    rejected_status = json.loads(run_ckptd("status", "--socket", socket_path, "--json").stdout)
    rejected_table = run_ckptd("status", "--socket", socket_path).stdout

    time.sleep(1.1)  # a new load time must be distinguishable from the first one
    write_service_policy(tmp_path, port, [good.replace("2s", "3s")])
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_event(event("policy_reloaded"), after=still_running)
    fixed = scrape(port)
    fixed_status = json.loads(run_ckptd("status", "--socket", socket_path, "--json").stdout)
    assert 0 == daemon.stop()

    problems = daemon.events()[rejected]["problems"]
    assert any("targets[0].schedule.every" in problem for problem in problems), problems
    assert any("targets[0].colour" in problem for problem in problems), problems
    assert 0 == after_reject[("ckptd_config_last_reload_successful", ())]
    assert loaded_at == after_reject[("ckptd_config_last_reload_success_timestamp_seconds", ())]
    assert "previous policy kept" in status["STATUS"]
    assert 1 == fixed[("ckptd_config_last_reload_successful", ())]
    assert loaded_at < fixed[("ckptd_config_last_reload_success_timestamp_seconds", ())]
    assert "failed" == rejected_status["last_reload"]["result"]
    assert rejected_status["last_reload"]["problem_count"] >= 2
    assert any("targets[0].colour" in p for p in rejected_status["last_reload"]["problems"])
    assert "last reload: FAILED" in rejected_table and "targets[0]." in rejected_table
    assert "ok" == fixed_status["last_reload"]["result"]


def test_a_label_selected_target_picks_up_a_container_started_later_and_status_shows_it(
    tmp_path: Path, containers: Callable[..., str], daemons: Callable[..., ServiceDaemon]
) -> None:
    label = f"sys-{uuid.uuid4().hex[:8]}"
    port = free_port()
    target = (
        f"{{name: sel, selector: {{labels: {{ckptd-test: {label}}}}}, schedule: {{every: 2s}}}}"
    )
    policy = write_service_policy(tmp_path, port, [target])
    daemon = daemons(policy)
    daemon.receive("READY")
    empty = json.loads(run_ckptd("status", "--config", str(policy), "--json").stdout)

    # Started first, so its event is read before the selected one's: logged at debug only.
    unselected = containers()
    name = containers(labels={"ckptd-test": label})
    done = daemon.wait_event(event("checkpoint_done", target="sel", container=name))
    daemon.wait_event(event("checkpoint_done", target="sel", container=name), after=done + 1)
    metrics = scrape(port)
    answer = run_ckptd("status", "--config", str(policy), "--json")
    table = run_ckptd("status", "--config", str(policy))
    socket_path = tmp_path / "run" / "control.sock"
    modes = (
        stat.S_IMODE(socket_path.stat().st_mode),
        stat.S_IMODE(socket_path.parent.stat().st_mode),
    )

    docker("stop", "-t", "5", name)
    daemon.wait_event(event("target_unscheduled", target="sel", container=name), after=done)
    after_stop = json.loads(run_ckptd("status", "--config", str(policy), "--json").stdout)
    assert 0 == daemon.stop()
    gone = run_ckptd("status", "--config", str(policy))

    assert [{"target": "sel", "container": None, "scheduled": False}] == empty["targets"]
    container_events = [e for e in daemon.events() if e.get("event") == "container_event"]
    assert ("start", "info") in {(e["action"], e["level"]) for e in container_events}
    assert name in {e["container"] for e in container_events}
    assert unselected not in {e["container"] for e in container_events}
    key = tuple(sorted({"target": "sel", "container": name}.items()))
    assert metrics[("ckptd_checkpoint_successes_total", key)] >= 2

    assert 0 == answer.returncode, answer.stderr
    [row] = json.loads(answer.stdout)["targets"]
    assert (name, True) == (row["container"], row["scheduled"])
    assert row["last_success"] is not None and row["next_run"] is not None
    assert row["checkpoints"] >= 2 and row["total_bytes"] > 0
    assert row["last_checkpoint"] in checkpoints(name)
    assert name in table.stdout and "ago" in table.stdout, table.stdout
    assert (0o600, 0o700) == modes

    # The stopped container is no longer scheduled, and keeps its checkpoints.
    [row] = after_stop["targets"]
    assert (name, False) == (row["container"], row["scheduled"])
    assert len(checkpoints(name)) >= 2
    assert 1 == gone.returncode
    assert "not running" in gone.stderr


def test_discovery_follows_the_engine_through_a_dockerd_restart(
    tmp_path: Path, app_image: str, daemons: Callable[..., ServiceDaemon]
) -> None:
    label = f"sys-{uuid.uuid4().hex[:8]}"
    selector = f"{{labels: {{ckptd-test: {label}}}}}"
    target = f"{{name: sel, selector: {selector}, schedule: {{every: 2s}}}}"
    policy = write_service_policy(tmp_path, free_port(), [target])
    with disposable_engine() as engine:
        engine.load_image(app_image)

        def start(name: str) -> None:
            engine.docker(
                "run", "-d", "--network", "none", "--name", name, f"--label=ckptd-test={label}",
                "-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=16", app_image,
            )  # fmt: skip

        daemon = daemons(policy, docker_host=engine.host)
        daemon.receive("READY")
        start("sys-before")
        daemon.wait_event(event("checkpoint_done", target="sel", container="sys-before"))

        engine.kill_dockerd()
        lost = daemon.wait_event(event("discovery_disconnected"))
        engine.start_dockerd()
        relisted = daemon.wait_event(event("discovery_listed"), after=lost)
        start("sys-after")
        done = daemon.wait_event(
            event("checkpoint_done", target="sel", container="sys-after"), after=relisted
        )
        kept = engine.docker("checkpoint", "ls", "sys-after").stdout
        assert 0 == daemon.stop()

    assert daemon.events()[done]["checkpoint"] in kept


def test_doctor_on_the_real_engine_and_on_one_without_experimental(app_image: str) -> None:
    good = run_ckptd("doctor", "--json")
    assert 0 == good.returncode, good.stdout + good.stderr
    report = json.loads(good.stdout)
    statuses = {check["name"]: check["status"] for check in report["checks"]}
    assert "ok" == statuses["experimental"] == statuses["criu check"] == statuses["runc"]
    assert statuses["dirty tracking"] in ("ok", "warn")
    assert "4.2" in next(c["detail"] for c in report["checks"] if c["name"] == "criu")

    with disposable_engine(experimental=False) as engine:
        off = subprocess.run(
            [*CKPTD, "doctor"], capture_output=True, text=True, env=engine.env(), timeout=120
        )

    assert 1 == off.returncode, off.stdout + off.stderr
    line = next(line for line in off.stdout.splitlines() if "experimental" in line)
    assert line.startswith("[fail]"), off.stdout
    assert '"experimental": true' in off.stdout
    assert "checkpointing cannot work here" in off.stdout

    nowhere = subprocess.run(
        [*CKPTD, "doctor"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        timeout=60,
    )
    assert 3 == nowhere.returncode, nowhere.stdout
