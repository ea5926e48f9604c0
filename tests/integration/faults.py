"""Shared pieces of the fault tests: a ckptd daemon under test, and the published figures.

Every fault test ends by calling `publish`, which merges its row into docs/faults.json and
rewrites docs/faults.md from it, so the table always shows what the last run of each fault did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ckptd.catalog import Attempt, Catalog
from tests.integration.conftest import CKPTD, ROOT

DOCS = ROOT / "docs"


@dataclass
class FaultRow:
    """One line of the figures table."""

    number: str
    fault: str
    ckptd_did: str
    before: int
    after: int
    lost: int


def publish(row: FaultRow) -> None:
    """Merge ``row`` into docs/faults.json and rewrite docs/faults.md from it."""
    DOCS.mkdir(exist_ok=True)
    raw = DOCS / "faults.json"
    rows = {r["number"]: r for r in json.loads(raw.read_text())} if raw.exists() else {}
    rows[row.number] = asdict(row)
    ordered = sorted(rows.values(), key=lambda r: [int(p) for p in r["number"].split(".")])
    raw.write_text(json.dumps(ordered, indent=2) + "\n")

    lines = [
        "# Faults: what ckptd did, and what happened to the checkpoints that existed before",
        "",
        "Written by the fault tests (`tests/integration/test_faults_*.py`, part of `make test`)",
        "on the real engine; each row is the last run of that test. *Before*: good checkpoints",
        "that existed when the fault was injected; *after*: how many of those still exist and",
        "are intact afterwards; *lost*: before minus after, which must be 0.",
        "",
        "| # | fault | what ckptd did | before | after | lost |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['number']} | {r['fault']} | {r['ckptd_did']} | {r['before']} | {r['after']} "
        f"| {r['lost']} |"
        for r in ordered
    ]
    (DOCS / "faults.md").write_text("\n".join(lines) + "\n")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Return the first truthy value of ``predicate()``, polling; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value

        time.sleep(0.3)

    raise AssertionError(f"not within {timeout}s: {what}")


class DaemonUnderTest:
    """A `ckptd run` process with its log, policy and catalog."""

    def __init__(self, policy: Path, env: dict[str, str] | None = None) -> None:
        self.policy = policy
        self.state_dir = policy.parent / "state"
        self.env = env or dict(os.environ)
        self.log_path = policy.parent / f"ckptd-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> DaemonUnderTest:
        """Start the daemon; return self."""
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*CKPTD, "run", "--config", str(self.policy)],
            stderr=log,
            stdout=log,
            text=True,
            env=self.env,
        )
        return self

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """Return everything the daemon logged so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """Return the logged JSON events called ``name``."""
        found = []
        for line in self.log().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue

            if event.get("event") == name:
                found.append(event)

        return found

    def catalog(self) -> Catalog:
        """Return the daemon's catalog (a second reader while it writes)."""
        return Catalog(self.state_dir)

    def attempts(self) -> list[Attempt]:
        """Return every attempt recorded, oldest first."""
        return list(reversed(self.catalog().attempts(limit=10_000)))

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM the daemon and return its exit status."""
        if self.process is None:
            return 0

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def good_names(attempts: list[Attempt]) -> list[str]:
    """Return the checkpoint names of successful attempts, oldest first."""
    return [a.checkpoint for a in attempts if a.result == "ok" and a.checkpoint]
