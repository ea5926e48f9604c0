"""A light background check of the engine, so `ckptd_engine_up` is current between runs.

Checkpoint runs set the gauge from their own engine calls; a target checkpointed once a day would
otherwise leave it a day old. A scrape never calls the engine: it reads what the last call found.
"""

from __future__ import annotations

import threading

import structlog

from ckptd.engine import Engine
from ckptd.errors import CkptdError
from ckptd.metrics import Metrics

log = structlog.get_logger("ckptd.probe")

# Docker's /_ping is the cheapest call it answers; every 15 s costs nothing and is fresher than a
# typical 30-60 s scrape interval.
PROBE_INTERVAL_S = 15.0


class EngineProbe:
    """A daemon thread that pings the engine every ``interval`` seconds until stopped."""

    def __init__(
        self, engine: Engine, metrics: Metrics, interval: float = PROBE_INTERVAL_S
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.interval = interval
        self._stop = threading.Event()
        self._up: bool | None = None
        self._thread = threading.Thread(target=self._loop, name="ckptd-engine-probe", daemon=True)

    def start(self) -> None:
        """Probe once now, then keep probing in the background."""
        self.probe()
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it does within one interval or one engine timeout."""
        self._stop.set()

    def probe(self) -> bool:
        """Ping the engine once, set ckptd_engine_up, and return whether it answered."""
        problem: str | None = None
        try:
            self.engine.ping()
        except CkptdError as error:
            problem = str(error)

        up = problem is None
        self.metrics.engine_up.set(1 if up else 0)
        # One log line per change of state, not one per probe.
        if up != self._up:
            if up:
                log.info("engine_reachable")
            else:
                log.warning("engine_unreachable", error=problem)

        self._up = up

        return up

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.probe()
