"""A reload that changes `daemon:` settings names the keys that need a restart."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ckptd.daemon import changed_settings
from ckptd.policy import DaemonSettings


def test_the_changed_keys_are_named_in_the_policys_order() -> None:
    running = DaemonSettings()
    loaded = DaemonSettings(
        metrics_address="127.0.0.1:9500",
        state_dir=Path("/srv/ckptd"),
        max_concurrent=2,
        stop_timeout=timedelta(seconds=120),
    )

    assert ["metrics_address", "state_dir"] == changed_settings(running, loaded)
    assert [] == changed_settings(running, DaemonSettings())
