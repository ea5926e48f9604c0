"""Label-selected targets: which running containers match, kept current from Docker's events.

On connecting, `Discovery` lists the running containers once; from then on it follows the
engine's event stream (start, die, destroy), so a container started later is picked up within
moments and no polling loop runs. When the engine goes away (a dockerd restart), the thread
reconnects with a growing pause and lists again, which also catches what happened meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

import structlog

from ckptd.engine import ContainerEvents, ContainerInfo, Engine
from ckptd.errors import CkptdError
from ckptd.policy import Selector, Target

log = structlog.get_logger("ckptd.discovery")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


class Discovery:
    """The running containers and their labels, and a callback whenever that set changes."""

    def __init__(
        self,
        engine: Engine,
        on_change: Callable[[], None],
        watched: Callable[[Mapping[str, str]], bool] = lambda labels: True,
    ) -> None:
        self.engine = engine
        self.on_change = on_change
        # Whether a container with these labels is one a selector picks: every start and stop
        # on the host arrives here, and only those are worth an info line.
        self.watched = watched
        self._running: dict[str, ContainerInfo] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._stream: ContainerEvents | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start following the engine in a background thread (once)."""
        if self._thread is not None:
            return

        self._thread = threading.Thread(target=self._follow, name="ckptd-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; the thread ends at once."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the first listing is done; return False on timeout."""
        return self._connected.wait(timeout)

    def matching(self, selector: Selector) -> list[str]:
        """Return the names of the running containers ``selector`` matches, sorted."""
        with self._lock:
            found = [c.name for c in self._running.values() if selector.matches(dict(c.labels))]

        return sorted(found)

    def _follow(self) -> None:
        pause = RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                self._stream = self.engine.container_events()
                # Listed after the stream opened, so nothing falls between the two.
                self._replace(self.engine.running_containers())
                self._connected.set()
                pause = RETRY_FIRST_S
                for event in self._stream:
                    self._apply(event.action, event.id, event.name, event.labels)
            except CkptdError as error:
                if self._stop.is_set():
                    return

                log.warning("discovery_disconnected", error=str(error), retry_in_s=pause)
                self._stop.wait(pause)
                pause = min(pause * 2, RETRY_MAX_S)
                continue

            if not self._stop.is_set():
                log.warning("discovery_stream_ended", retry_in_s=RETRY_FIRST_S)
                self._stop.wait(RETRY_FIRST_S)

    def _replace(self, containers: list[ContainerInfo]) -> None:
        with self._lock:
            changed = set(self._running) != {c.id for c in containers}
            self._running = {c.id: c for c in containers}

        log.info("discovery_listed", running=len(containers))
        if changed:
            self.on_change()

    def _apply(self, action: str, container_id: str, name: str, labels: Mapping[str, str]) -> None:
        with self._lock:
            if action == "start":
                self._running[container_id] = ContainerInfo(
                    id=container_id, name=name, running=True, labels=labels
                )
            elif self._running.pop(container_id, None) is None:
                return

        level = log.info if self.watched(labels) else log.debug
        level("container_event", action=action, container=name or container_id[:12])
        self.on_change()


def bind_targets(engine: Engine, targets: Iterable[Target], running: bool) -> list[Target]:
    """Return ``targets`` in order, each selector replaced by one target per container it matches.

    The engine is asked for its containers (only the running ones when ``running``) at most once,
    and only when some target has a selector. Raises what `Engine.containers` raises.
    """
    bound: list[Target] = []
    containers: list[ContainerInfo] | None = None

    for target in targets:
        if target.selector is None:
            bound.append(target)
            continue

        if containers is None:
            containers = engine.running_containers() if running else engine.containers()

        selector = target.selector
        bound += [target.bound(c.name) for c in containers if selector.matches(dict(c.labels))]

    return bound
