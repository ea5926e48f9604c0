"""The checkpointer's failure paths, on a fake engine (pure logic; the real engine is in
tests/integration): content-store races retried under a new name, the CRIU log copied, the
attempt recorded before the engine is asked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ckptd import checkpointer as checkpointer_module
from ckptd.catalog import Catalog
from ckptd.checkpointer import Checkpointer
from ckptd.engine import ContainerInfo
from ckptd.errors import CheckpointFailedError
from ckptd.metrics import Metrics
from ckptd.policy import Target

RACE = "failed to upload checkpoint: commit failed: content sha256:4f1c0e2b: already exists"
T0 = datetime(2026, 12, 3, 21, 45, tzinfo=UTC)


class FakeEngine:
    """Answers like Docker 20.10 would, failing create with the messages it is given."""

    api = None

    def __init__(self, failures: list[str], catalog: Catalog) -> None:
        self.failures = failures
        self.catalog = catalog
        self.names: list[str] = []
        self.states_seen: list[str] = []

    def container(self, ref: str) -> ContainerInfo:
        return ContainerInfo(id="c" * 64, name=ref, running=True, image="app:1")

    def list_checkpoints(self, container: str) -> list[str]:
        return list(self.names)

    def create_checkpoint(self, container: str, name: str, leave_running: bool) -> None:
        # The attempt must be in the catalog before the engine is asked.
        self.states_seen.append(self.catalog.names(container)[name])
        if self.failures:
            raise CheckpointFailedError(container, name, self.failures.pop(0))

        self.names.append(name)

    def delete_checkpoint(self, container: str, name: str) -> None:
        self.names.remove(name)

    def checkpoint_size(self, container: str, name: str) -> int | None:
        return 4096

    def checkpoint_dir(self, container: str, name: str) -> Path | None:
        return None

    def free_bytes(self, container: str) -> int | None:
        return None


def make(tmp_path: Path, failures: list[str]) -> tuple[Checkpointer, FakeEngine, Catalog]:
    catalog = Catalog(tmp_path / "state")
    engine = FakeEngine(failures, catalog)
    checkpointer = Checkpointer(
        engine,  # type: ignore[arg-type]
        Metrics(CollectorRegistry()),
        catalog,
        lock_dir=tmp_path / "locks",
        clock=lambda: T0,
    )
    return checkpointer, engine, catalog


def target() -> Target:
    return Target.model_validate(
        {"name": "t", "container": "app", "schedule": {"every": "5m"}, "store": "engine"}
    )


def test_a_content_race_is_retried_under_a_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpointer_module, "CONTENT_RACE_PAUSE_S", 0)
    checkpointer, engine, catalog = make(tmp_path, [RACE])

    result = checkpointer.run(target())

    failed, good = reversed(catalog.attempts())
    assert ("failed", "content_race") == (failed.result, failed.reason)
    assert ("ok", None) == (good.result, good.reason)
    assert failed.checkpoint != good.checkpoint == result.checkpoint
    assert [result.checkpoint] == engine.names
    assert ["in_progress", "in_progress"] == engine.states_seen


def test_races_are_retried_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpointer_module, "CONTENT_RACE_PAUSE_S", 0)
    checkpointer, engine, catalog = make(tmp_path, [RACE] * 10)

    with pytest.raises(CheckpointFailedError):
        checkpointer.run(target())

    attempts = catalog.attempts()
    assert checkpointer_module.CONTENT_RACE_ATTEMPTS == len(attempts)
    assert {"content_race"} == {a.reason for a in attempts}
    assert [] == engine.names


def test_a_criu_failure_keeps_the_log_excerpt_and_is_not_retried(tmp_path: Path) -> None:
    log = tmp_path / "criu-dump.log"
    log.write_text("(00.1) start\n(00.2) Error (criu/file-lock.c:110): Some file locks are hold\n")
    message = f"runc did not terminate successfully: criu failed: type NOTIFY path= {log}: unknown"
    checkpointer, engine, catalog = make(tmp_path, [message])

    with pytest.raises(CheckpointFailedError):
        checkpointer.run(target())

    [attempt] = catalog.attempts()
    assert ("failed", "criu_failed") == (attempt.result, attempt.reason)
    assert attempt.criu_log is not None and "Some file locks are hold" in attempt.criu_log
