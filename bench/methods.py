"""The ways of checkpointing and restoring the example app that bench/run.py puts side by side.

Each checkpoint method returns a Sample: wall time, the app's longest gap between 10 ms ticks
around the call ("frozen"), CRIU's own frozen time where it can be read, and the size on disk.

Every app gets one unmeasured warm-up checkpoint first, through the path of its kind (runc,
Podman, criu): the first dump of a fresh process is slower on every path (measured here at
256 MiB: CRIU's freezing 0.10 s and memwrite 0.68 s the first time, 0.0005 s and 0.10 s the
next), and a scheduled checkpoint of a long-running container is rarely its first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from ckptd import runc
from ckptd.catalog import Catalog
from ckptd.checkpointer import Checkpointer
from ckptd.criu import read_dump_stats
from ckptd.engine import Engine
from ckptd.metrics import Metrics
from ckptd.policy import DaemonSettings, Schedule, Target

ROOT = Path(__file__).resolve().parents[1]
APP_BINARY = ROOT / "examples" / "cpp-app" / "build" / "app"
PREFIX = "perf-bench"
GAP_RE = re.compile(r"gap: ([0-9.]+) ms ending at ([0-9.]+)")
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Ticks every 10 ms; every gap over 20 ms is printed, so a freeze of 20 ms or more is seen.
APP_ENV = {"STARTUP_SECONDS": "0", "TICK_MS": "10", "GAP_REPORT_MS": "20", "STEP_MS": "1000"}
GAP_FLOOR_S = 0.02
CKPTD = str(Path(sys.executable).with_name("ckptd"))
# `ckptd restore` ends with "restored NAME into C (pid P) in 1.23 s (phase 0.1 s, ...; staging".
RESTORED_RE = re.compile(r" in (?P<seconds>[0-9.]+) s \((?P<phases>[^;]*);")


@dataclass
class Sample:
    """One measured checkpoint or restore."""

    wall_s: float
    frozen_s: float | None = None
    criu_frozen_s: float | None = None
    size_bytes: int | None = None
    phases: dict[str, float] = field(default_factory=dict)


def sh(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command with the tools' PATH; return it finished."""
    env = {**os.environ, "PATH": TOOL_PATH}
    answer = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if check and answer.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {answer.returncode}: {answer.stderr.strip()}")

    return answer


def folder_size(path: Path) -> int:
    """Return the bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def longest_gap(text: str, since: float) -> float:
    """Return the longest tick gap (s) that ended after Unix time ``since``; the floor if none."""
    return longest_gap_and_end(text, since)[0]


def longest_gap_and_end(text: str, since: float) -> tuple[float, float | None]:
    """Return the longest tick gap (s) ended after ``since`` and the Unix time it ended."""
    gaps = [(float(ms) / 1000, float(end)) for ms, end in GAP_RE.findall(text)]
    gaps = [gap for gap in gaps if gap[1] >= since]
    return max(gaps, default=(GAP_FLOOR_S, None))


def docker_root() -> Path:
    """Return the engine's data root."""
    return Path(sh("docker", "info", "--format", "{{.DockerRootDir}}").stdout.strip())


class DockerApp:
    """The example app in a Docker container, with the checkpoint methods that act on it."""

    def __init__(self, image: str, table_mb: int) -> None:
        self.name = f"{PREFIX}-{table_mb}m-{uuid.uuid4().hex[:6]}"
        env = [f"--env={k}={v}" for k, v in {**APP_ENV, "TABLE_MB": str(table_mb)}.items()]
        sh("docker", "run", "-d", "--name", self.name, *env, image)
        try:
            self._set_up()
        except BaseException:
            self.remove()
            raise

    def _set_up(self) -> None:
        """Find the container, give it ckptd's checkpointers, wait for it, warm it up."""
        self.id = sh("docker", "inspect", "--format", "{{.Id}}", self.name).stdout.strip()
        self.folder = docker_root() / "containers" / self.id
        self.engine = Engine()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-state-"))
        state = self.scratch / "state"
        # store: engine is the call ckptd wraps (the overhead ratio); the default policy also
        # keeps a copy in ckptd's store, after the app runs again.
        self.checkpointers = {
            store: Checkpointer(
                self.engine,
                Metrics(CollectorRegistry()),
                Catalog(state),
                lock_dir=self.scratch / "locks",
                daemon=DaemonSettings(state_dir=state, store=location),
            )
            for store, location in (("engine", "engine"), ("store", state / "store"))
        }
        self.wait_ready()
        self.warm_up = self.runc_direct("bench-warm-up")
        self.remove_checkpoint("bench-warm-up")

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the app prints its first step (the table is built and the tick runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "step=" in self.logs(time.time() - 3600):
                return

            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start within {timeout} s")

    def logs(self, since: float) -> str:
        """Return what the app printed since Unix time ``since``."""
        return sh("docker", "logs", "--since", f"{since:.3f}", self.name).stdout

    def _measured(self, call: Any, watch: FolderWatch | None = None) -> Sample:
        time.sleep(1.0)  # back-to-back checkpoints race in containerd's content store
        if watch is not None:
            watch.start()

        since = time.time()
        started = time.monotonic()
        extra = call()
        wall = time.monotonic() - started
        seen = {} if watch is None else watch.stop(started)
        time.sleep(0.3)
        frozen, resumed = longest_gap_and_end(self.logs(since - 1), since)
        sample = Sample(wall, frozen_s=frozen)
        if watch is not None:
            sample.phases = checkpoint_phases(seen, None if resumed is None else resumed - since)

        if isinstance(extra, dict):
            sample.__dict__.update(extra)

        return sample

    def docker_api(self, name: str) -> Sample:
        """The Engine API's checkpoint call, as `docker checkpoint create --leave-running`."""
        api: Any = self.engine.api
        url = api._url("/containers/{0}/checkpoints", self.id)
        body = {"CheckpointID": name, "Exit": False}

        def call() -> None:
            api._raise_for_status(api._post_json(url, data=body, timeout=900))

        sample = self._measured(call, checkpoint_watch(self.folder / "checkpoints", name))
        sample.size_bytes = folder_size(self.folder / "checkpoints" / name)
        return sample

    def ckptd(self, engine: str, target_name: str, store: str = "engine") -> tuple[Sample, str]:
        """ckptd's whole run (lock, name, checkpoint, measure, prune) with ``engine``.

        ``store``: "engine" (Docker's folder only) or "store" (also ckptd's own store).
        """
        target = Target(
            name=target_name,
            container=self.name,
            schedule=Schedule(every=timedelta(minutes=5)),
            engine=engine,  # type: ignore[arg-type]
        )
        results = []

        def call() -> dict[str, Any]:
            result = self.checkpointers[store].run(target)
            results.append(result)
            return {"criu_frozen_s": result.frozen_s, "size_bytes": result.size_bytes}

        sample = self._measured(call)
        return sample, results[0].checkpoint

    def runc_direct(self, name: str) -> Sample:
        """`runc checkpoint --leave-running` by hand, into Docker's checkpoint folder."""
        found = runc.locate(self.engine.runtime_facts(self.id))
        image, work = self.folder / "checkpoints" / name, Path(tempfile.mkdtemp())
        command = [found.binary, "--root", str(found.root), "checkpoint", "--leave-running"]
        command += ["--image-path", str(image), "--work-path", str(work), self.id]
        sample = self._measured(lambda: sh(*command))
        sample.criu_frozen_s = read_dump_stats(work / "stats-dump").frozen_s
        sample.size_bytes = folder_size(image)
        shutil.rmtree(work)
        return sample

    def ckptd_restore(self, target_name: str, name: str) -> Sample:
        """`ckptd restore --force` in place from ckptd's store, with the phases it reports."""
        policy = self.scratch / "policy.yaml"
        policy.write_text(
            "daemon:\n"
            f"  state_dir: {self.scratch / 'state'}\n"
            f"  control_socket: {self.scratch / 'control.sock'}\n"
            "targets:\n"
            f"  - {{name: {target_name}, container: {self.name}, schedule: {{every: 5m}}}}\n"
        )
        started = time.monotonic()
        answer = sh(
            CKPTD, "restore", "--config", str(policy), "--checkpoint", name, "--force", target_name
        )
        wall = time.monotonic() - started
        self.wait_ready()
        found = RESTORED_RE.search(answer.stdout)
        if found is None:
            return Sample(wall)

        phases = {
            f"{key.strip()}_s": float(value)
            for key, value in (part.rsplit(" ", 2)[:2] for part in found["phases"].split(", "))
        }
        return Sample(float(found["seconds"]), phases=phases)

    def remove_checkpoint(self, name: str) -> None:
        """Delete one checkpoint through Docker."""
        sh("docker", "checkpoint", "rm", self.name, name)

    def restore(self, name: str) -> Sample:
        """Stop the container and time `docker start --checkpoint`, with its phases."""
        sh("docker", "stop", "-t", "10", self.name)
        watcher = restore_watch()
        watcher.start()
        started = time.monotonic()
        try:
            sh("docker", "start", "--checkpoint", name, self.name)
        except RuntimeError as error:
            # Another user's disposable dockerd can take docker0 away for a moment here.
            if "docker0" not in str(error):
                raise

            watcher.stop(started)
            time.sleep(3)
            return self.restore(name)

        wall = time.monotonic() - started
        phases = restore_phases(watcher.stop(started), wall)
        self.wait_ready()
        return Sample(wall, phases=phases)

    def remove(self) -> None:
        """Remove the container, its checkpoints and ckptd's records of them."""
        sh("docker", "rm", "-f", self.name, check=False)
        if hasattr(self, "scratch"):
            shutil.rmtree(self.scratch, ignore_errors=True)


class FolderWatch(threading.Thread):
    """Polls folders every 20 ms while Docker works, to split its wall time into phases.

    For each named glob it records when a new match first appeared, first held data, last grew
    and was last seen. Polling costs a few stat calls; it shares the CPU with what it
    measures, like any observer here.
    """

    def __init__(self, globs: dict[str, tuple[Path, str]]) -> None:
        super().__init__(daemon=True)
        self.globs = globs
        self.done = threading.Event()
        self.seen: dict[str, float] = {}
        self.before = {key: self._matches(key) for key in globs}

    def _matches(self, key: str) -> set[Path]:
        folder, pattern = self.globs[key]
        return set(folder.glob(pattern)) if folder.is_dir() else set()

    def run(self) -> None:
        sizes = dict.fromkeys(self.globs, -1)
        while not self.done.is_set():
            now = time.monotonic()
            for key in self.globs:
                fresh = self._matches(key) - self.before[key]
                if not fresh:
                    continue

                self.seen.setdefault(f"{key}_seen", now)
                self.seen[f"{key}_last_seen"] = now
                size = sum(folder_size(f) if f.is_dir() else f.stat().st_size for f in fresh)
                if size != sizes[key]:
                    self.seen[f"{key}_last_growth"] = now
                    sizes[key] = size

                if size > 0:
                    self.seen.setdefault(f"{key}_first_data", now)

            time.sleep(0.02)

    def stop(self, started: float) -> dict[str, float]:
        """Return what was seen when, in seconds from ``started``."""
        self.done.set()
        self.join()
        return {key: round(value - started, 3) for key, value in self.seen.items()}


def _temp_folder() -> Path:
    """Return where containerd makes its temporary checkpoint folders."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


def restore_watch() -> FolderWatch:
    """Watch a `docker start --checkpoint`.

    Docker tars the checkpoint folder into containerd's content store, containerd unpacks that
    blob into a fresh ctrd-checkpoint folder, and only then does runc (CRIU) restore.
    """
    return FolderWatch({"unpack": (_temp_folder(), "ctrd-checkpoint*")})


def restore_phases(seen: dict[str, float], wall: float) -> dict[str, float]:
    """Return the phases of a restore from what its watch saw."""
    unpack, unpacked = seen.get("unpack_seen"), seen.get("unpack_last_growth")
    if unpack is None or unpacked is None:
        return seen

    return {
        "pack_into_content_store_s": unpack,
        "unpack_from_content_store_s": round(unpacked - unpack, 3),
        "criu_restore_and_start_s": round(wall - unpacked, 3),
    }


def checkpoint_watch(checkpoints: Path, name: str) -> FolderWatch:
    """Watch a checkpoint through the Engine API.

    containerd pauses the container, has runc (CRIU) dump into a fresh ctd-checkpoint folder,
    tars that into its content store, diffs the writable layer, and only then resumes the
    container; Docker then unpacks the blob into the container's checkpoints/ folder.
    """
    return FolderWatch(
        {"dump": (_temp_folder(), "ctd-checkpoint*"), "docker_unpack": (checkpoints, name)}
    )


def checkpoint_phases(seen: dict[str, float], resumed: float | None) -> dict[str, float]:
    """Return the phases of an API checkpoint; ``resumed``: when the app ticked again."""
    # Docker makes the checkpoint's folder before it calls containerd: its first data marks
    # the start of the unpacking.
    dumped, unpack = seen.get("dump_last_growth"), seen.get("docker_unpack_first_data")
    unpacked = seen.get("docker_unpack_last_growth")
    if dumped is None or unpack is None or unpacked is None:
        return seen

    phases = {
        "criu_dump_s": dumped,
        "pack_into_content_store_s": round(unpack - dumped, 3),
        "unpack_into_checkpoints_s": round(unpacked - unpack, 3),
    }
    if resumed is not None:
        phases["app_resumed_after_s"] = round(resumed, 3)

    return phases


class PodmanApp:
    """The example app under Podman from Debian, with the resource limits root may set here."""

    def __init__(self, image: str, table_mb: int) -> None:
        self.name = f"{PREFIX}-pod-{table_mb}m-{uuid.uuid4().hex[:6]}"
        local = f"localhost/{image}"
        if sh("podman", "image", "exists", local, check=False).returncode != 0:
            saved = subprocess.run(["docker", "save", image], capture_output=True, check=True)
            subprocess.run(["podman", "load"], input=saved.stdout, capture_output=True, check=True)

        env = [f"--env={k}={v}" for k, v in {**APP_ENV, "TABLE_MB": str(table_mb)}.items()]
        limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        sh("podman", "run", "-d", "--name", self.name, *limits, *env, local)
        try:
            self.wait_ready()
            self.warm_up = self.checkpoint()
        except BaseException:
            self.remove()
            raise

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the app prints a step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "step=" in sh("podman", "logs", self.name).stdout:
                return

            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start within {timeout} s")

    def checkpoint(self, export: Path | None = None) -> Sample:
        """`podman container checkpoint --leave-running`, with CRIU's statistics.

        With ``export``, also `--export FILE --compress zstd`: the archive a user moves to
        another host, whose packing Podman does while the container is still frozen.
        """
        time.sleep(1.0)
        since = time.time()
        started = time.monotonic()
        extra = [] if export is None else ["--export", str(export), "--compress", "zstd"]
        answer = sh(
            "podman",
            "container",
            "checkpoint",
            "--leave-running",
            "--print-stats",
            *extra,
            self.name,
        )
        wall = time.monotonic() - started
        time.sleep(0.3)
        text = sh("podman", "logs", "--since", f"{since - 1:.3f}", self.name).stdout
        static = sh("podman", "inspect", "--format", "{{.StaticDir}}", self.name).stdout.strip()
        sample = Sample(wall, frozen_s=longest_gap(text, since))
        sample.size_bytes = folder_size(Path(static) / "checkpoint")
        if export is not None:
            sample.size_bytes = export.stat().st_size

        try:
            stats = json.loads(answer.stdout)
            criu = stats["container_statistics"][0]["criu_statistics"]
            sample.criu_frozen_s = criu["frozen_time"] / 1e6
        except (ValueError, KeyError, IndexError, TypeError):
            pass

        return sample

    def restore(self) -> Sample:
        """Stop the container and time `podman container restore`."""
        sh("podman", "stop", "-t", "10", self.name)
        started = time.monotonic()
        sh("podman", "container", "restore", self.name)
        sample = Sample(time.monotonic() - started)
        self.wait_ready()
        return sample

    def restore_import(self, archive: Path) -> Sample:
        """Time `podman container restore --import` of an exported checkpoint, as a new one."""
        name = f"{self.name}-imported"
        started = time.monotonic()
        sh("podman", "container", "restore", "--import", str(archive), "--name", name)
        sample = Sample(time.monotonic() - started)
        sh("podman", "rm", "-f", name, check=False)
        return sample

    def remove(self) -> None:
        """Remove the container."""
        sh("podman", "rm", "-f", self.name, check=False)


class PlainApp:
    """The example app as a plain process (no container), checkpointed with `criu dump`."""

    def __init__(self, table_mb: int, port: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-plain-"))
        self.output = self.folder / "out.log"
        env = {**os.environ, **APP_ENV, "TABLE_MB": str(table_mb), "PORT": str(port)}
        with self.output.open("w") as out:
            # Its own session: CRIU then dumps a whole session, no --shell-job needed.
            self.process = subprocess.Popen(
                [str(APP_BINARY)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while "step=" not in self.output.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.warm_up = self.checkpoint()

    def checkpoint(self) -> Sample:
        """`criu dump --leave-running` of the process."""
        time.sleep(1.0)
        images = Path(tempfile.mkdtemp(dir=self.folder))
        since = time.time()
        started = time.monotonic()
        sh(
            "criu",
            "dump",
            "-t",
            str(self.process.pid),
            "-D",
            str(images),
            "--leave-running",
            "-o",
            "dump.log",
        )
        wall = time.monotonic() - started
        time.sleep(0.3)
        sample = Sample(wall, frozen_s=longest_gap(self.output.read_text(), since))
        sample.criu_frozen_s = read_dump_stats(images / "stats-dump").frozen_s
        sample.size_bytes = folder_size(images)
        shutil.rmtree(images)
        return sample

    def remove(self) -> None:
        """Stop the process and remove its files."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)
