"""A fleet of small containers under one real `ckptd run`: round time, lateness, RSS and CPU."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from methods import APP_ENV, PREFIX, sh

CKPTD = str(Path(sys.executable).with_name("ckptd"))
RUNNING_RE = re.compile(
    r'Running job "checkpoint (?P<target>\S+) .*\(scheduled at (?P<due>[^)]+)\)$'
)
TICKS = os.sysconf("SC_CLK_TCK")


def start_fleet(image: str, count: int) -> list[str]:
    """Start ``count`` example apps with a 1 MiB table; return their names."""
    tag = uuid.uuid4().hex[:6]
    names = [f"{PREFIX}-fleet-{tag}-{i:03d}" for i in range(count)]
    env = [f"--env={k}={v}" for k, v in {**APP_ENV, "TABLE_MB": "1", "TICK_MS": "0"}.items()]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: sh("docker", "run", "-d", "--name", n, *env, image), names))

    return names


def remove_fleet(names: list[str]) -> None:
    """Remove the fleet's containers (and so their checkpoints)."""
    for start in range(0, len(names), 50):
        sh("docker", "rm", "-f", *names[start : start + 50], check=False, timeout=300)


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    """Return the CPU seconds used so far and the resident bytes of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _policy(
    path: Path, names: list[str], concurrency: int, every_s: int, engine: str, jitter_s: int
) -> None:
    lines = [
        "daemon:",
        f"  state_dir: {path.parent / 'state'}",
        f"  control_socket: {path.parent / 'ckptd.sock'}",
        f"  metrics_address: 127.0.0.1:{_free_port()}",
        f"  max_concurrent: {concurrency}",
        f"  engine: {engine}",
        "targets:",
    ]
    for index, name in enumerate(names):
        lines.append(
            f"  - {{name: f{index}, container: {name}, schedule: {{every: {every_s}s}}, "
            f"jitter: {jitter_s}s, retention: {{keep_last: 1}}}}"
        )
    path.write_text("\n".join(lines) + "\n")


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def one_round(
    names: list[str], concurrency: int, every_s: int, engine: str, jitter_s: int = 0
) -> dict[str, Any]:
    """Run the daemon until every container was checkpointed once; return the figures.

    Without jitter every target falls due at the same instant (a burst: the round shows how
    well the slots are used, and lateness is mostly waiting for a slot); with jitter equal to
    the interval the due times spread out as in a steady fleet.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-fleet-"))
    policy = folder / "policy.yaml"
    _policy(policy, names, concurrency, every_s, engine, jitter_s)
    log_path = folder / "ckptd.log"
    env = {**os.environ, "CKPTD_LOCK_DIR": str(folder / "locks")}
    with log_path.open("w") as log:
        daemon = subprocess.Popen([CKPTD, "run", "--config", str(policy)], stderr=log, env=env)
    began = time.monotonic()
    try:
        time.sleep(3)
        if daemon.poll() is not None:
            tail = log_path.read_text().splitlines()[-5:]
            raise RuntimeError(f"ckptd run exited {daemon.returncode}: {tail}")

        idle_cpu0, idle_rss = _cpu_and_rss(daemon.pid)
        idle_t0 = time.monotonic()
        time.sleep(max(1.0, every_s - 4))
        idle_cpu1, _ = _cpu_and_rss(daemon.pid)
        idle_pct = 100 * (idle_cpu1 - idle_cpu0) / (time.monotonic() - idle_t0)

        load_cpu0, load_t0 = idle_cpu1, time.monotonic()
        peak_rss = idle_rss
        deadline = began + every_s + jitter_s + 30 + 10 * len(names) / concurrency
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                tail = log_path.read_text().splitlines()[-5:]
                raise RuntimeError(f"ckptd run exited {daemon.returncode}: {tail}")

            finished = log_path.read_text().count('"checkpoint_done"')
            finished += log_path.read_text().count('"checkpoint_failed"')
            cpu, rss = _cpu_and_rss(daemon.pid)
            peak_rss = max(peak_rss, rss)
            if finished >= len(names):
                break

            time.sleep(0.5)
        load_pct = 100 * (cpu - load_cpu0) / (time.monotonic() - load_t0)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)

    events = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    shutil.rmtree(folder, ignore_errors=True)
    figures = _figures(events, concurrency, len(names))
    if jitter_s:
        # Spread over the interval on purpose: no ideal to compare the round with.
        figures["ideal_round_s"] = figures["round_vs_ideal"] = None

    return (
        {"engine": engine, "jitter_s": jitter_s}
        | figures
        | {
            "idle_cpu_percent": round(idle_pct, 2),
            "load_cpu_percent": round(load_pct, 1),
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "peak_rss_mb": round(peak_rss / 2**20, 1),
        }
    )


def _figures(events: list[dict[str, Any]], concurrency: int, count: int) -> dict[str, Any]:
    """Return round time, its ideal and the lateness percentiles from the daemon's log.

    APScheduler logs each run as it starts with the time it was due (jitter included):
    'Running job "checkpoint f3 (trigger: ...)" (scheduled at 2026-12-04 06:30:00.1+00:00)'.
    """
    scheduled: dict[str, float] = {}
    started: dict[str, float] = {}
    for event in events:
        found = RUNNING_RE.match(str(event["event"]))
        if found and found["target"] not in started:
            started[found["target"]] = _stamp(event)
            scheduled[found["target"]] = datetime.fromisoformat(found["due"]).timestamp()

    done = [e for e in events if e["event"] == "checkpoint_done"]
    failed = [e for e in events if e["event"] == "checkpoint_failed"]
    late = sorted(started[t] - scheduled[t] for t in started)
    durations = [float(e["duration_s"]) for e in done]
    round_s = max(map(_stamp, done)) - min(started.values()) if done and started else None
    ideal_s = sum(durations) / concurrency if durations else None

    def quantile(q: float) -> float | None:
        return round(late[min(len(late) - 1, int(q * len(late)))], 3) if late else None

    return {
        "concurrency": concurrency,
        "containers": count,
        "checkpoints_done": len(done),
        "checkpoints_failed": len(failed),
        "round_s": None if round_s is None else round(round_s, 2),
        "ideal_round_s": None if ideal_s is None else round(ideal_s, 2),
        "round_vs_ideal": round(round_s / ideal_s, 2) if round_s and ideal_s else None,
        "median_checkpoint_s": round(statistics.median(durations), 3) if durations else None,
        "lateness_p50_s": quantile(0.5),
        "lateness_p99_s": quantile(0.99),
        "first_dispatch_lateness_s": round(late[0], 3) if late else None,
    }
