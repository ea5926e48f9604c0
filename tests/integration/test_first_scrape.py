"""The first /metrics page a starting daemon serves already holds every target's series."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

from tests.integration.conftest import CKPTD, free_port, write_policy
from tests.metric_names import from_text


def first_page(port: int, daemon: subprocess.Popen[str], timeout: float = 30) -> str:
    """Return the first /metrics page the daemon answers with, polling every 20 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"ckptd exited with {daemon.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                return str(page.read().decode())
        except OSError:
            time.sleep(0.02)

    raise AssertionError(f"no /metrics on port {port} within {timeout} s")


def test_first_scrape_has_the_series_at_zero_and_the_engine_state(
    engine: None, tmp_path: Path
) -> None:
    # No container is needed: a missing one is a warning, and its series exist all the same.
    container = f"obs-absent-{uuid.uuid4().hex[:8]}"
    port = free_port()
    policy = write_policy(tmp_path / "policy.yaml", container, port, schedule="{every: 1h}")
    with (tmp_path / "ckptd.log").open("w") as log:
        daemon = subprocess.Popen([*CKPTD, "run", "--config", str(policy)], stderr=log, text=True)
    try:
        page = first_page(port, daemon)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)

    samples = {
        (sample.name, sample.labels.get("target")): sample.value
        for family in from_text(page)
        for sample in family.samples
    }

    assert 0 == samples[("ckptd_checkpoint_attempts_total", "it")]
    assert 3600 == samples[("ckptd_expected_interval_seconds", "it")]
    assert 0 < samples[("ckptd_target_scheduled_timestamp_seconds", "it")]
    assert 1 == samples[("ckptd_engine_up", None)]
    assert 1 == samples[("ckptd_config_last_reload_successful", None)]
