"""A failed restore --into leaves no half-made container, and says what became of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from ckptd.errors import ContainerNotFoundError
from ckptd.restore import RestoreError, Restorer, RestoreRequest
from ckptd.store import MANIFEST, Store
from tests.test_store import make_entry

NEW_ID = "e" * 64


class FakeCalls:
    """The engine calls a restore --into makes; ``start`` fails with ``failure``."""

    def __init__(self, folder: Path, failure: BaseException) -> None:
        self.folder = folder
        self.failure = failure
        self.created: list[str] = []
        self.removed: list[str] = []

    def create(self, name: str, body: dict[str, Any]) -> str:
        self.created.append(name)
        return NEW_ID

    def inspect(self, ref: str) -> dict[str, Any]:
        return {"Id": NEW_ID, "State": {"Running": False, "Status": "created"}}

    def container_folder(self, data: dict[str, Any]) -> Path:
        return self.folder

    def start(self, container: str, checkpoint: str | None, timeout_s: float) -> None:
        raise self.failure

    def remove(self, container: str) -> None:
        self.removed.append(container)


class GoneEngine:
    """An engine on which the dumped container no longer exists."""

    api = None

    def container(self, ref: str) -> None:
        raise ContainerNotFoundError(ref)


def restorer_with(tmp_path: Path, failure: BaseException) -> tuple[Restorer, FakeCalls]:
    store = Store(tmp_path / "store")
    entry = make_entry(store)
    manifest = dict(entry.manifest)
    manifest["container"] = {**manifest["container"], "config": {}, "host_config": {}}
    (entry.path / MANIFEST).write_text(json.dumps(manifest))
    restorer = Restorer(GoneEngine(), store)  # type: ignore[arg-type]
    calls = FakeCalls(tmp_path / "engine", failure)
    restorer.calls = calls  # type: ignore[assignment]
    return restorer, calls


def test_an_unexpected_error_after_create_removes_the_new_container(tmp_path: Path) -> None:
    restorer, calls = restorer_with(tmp_path, ValueError("Timeout value connect was 0.0"))

    with pytest.raises(ValueError):
        restorer.restore(RestoreRequest("solver", into="clone", timeout_s=1))

    assert ["clone"] == calls.created
    assert [NEW_ID] == calls.removed


def test_a_timed_out_restore_into_says_the_new_container_was_removed(tmp_path: Path) -> None:
    restorer, calls = restorer_with(tmp_path, requests.exceptions.ReadTimeout())

    with pytest.raises(RestoreError) as caught:
        restorer.restore(RestoreRequest("solver", into="clone", timeout_s=1))

    message = str(caught.value)
    assert "timeout" == caught.value.reason
    assert "did not finish within 1 s" in message
    assert "stopped" not in message
    assert message.endswith("; the new container was removed"), message
    assert [NEW_ID] == calls.removed
