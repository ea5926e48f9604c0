"""Discovery logs containers its selectors pick at info, all else on the host at debug."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from structlog.testing import capture_logs

from ckptd.discovery import Discovery
from ckptd.engine import Engine


def test_an_event_of_an_unselected_container_is_logged_at_debug() -> None:
    changes: list[None] = []

    def solver(labels: Mapping[str, str]) -> bool:
        return labels.get("app") == "solver"

    # _apply reads no engine: the event has arrived already.
    discovery = Discovery(cast(Engine, None), lambda: changes.append(None), solver)

    with capture_logs() as logs:
        discovery._apply("start", "a" * 64, "web-1", {"app": "web"})
        discovery._apply("start", "b" * 64, "solver-1", {"app": "solver"})
        discovery._apply("die", "a" * 64, "web-1", {"app": "web"})

    levels = [(entry["container"], entry["action"], entry["log_level"]) for entry in logs]
    assert [
        ("web-1", "start", "debug"),
        ("solver-1", "start", "info"),
        ("web-1", "die", "debug"),
    ] == levels
    assert 3 == len(changes)
