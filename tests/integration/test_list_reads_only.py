"""`ckptd list` without a policy only reads: no state folder appears where none was."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptd import cli
from ckptd.policy import DaemonSettings
from tests.integration.conftest import AppContainer, docker


def test_list_without_a_policy_creates_no_state_folder(
    app: AppContainer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docker("checkpoint", "create", "--leave-running", app.name, "ckptd-it-20261204T000000Z")
    absent = tmp_path / "no-daemon-here"
    monkeypatch.setattr(cli, "DaemonSettings", lambda: DaemonSettings(state_dir=absent))

    assert 0 == cli.main(["list"])
    assert "ckptd-it-20261204T000000Z" in capsys.readouterr().out
    assert not absent.exists()
