"""The store's copy on the real engine: made at start-up for a checkpoint the engine finished
while ckptd was dead, and what a failed restore --into leaves behind (nothing).

ckptd is killed (SIGKILL) while the engine dumps; the daemon started again must not count the
checkpoint as good without the store copy a restore (`--into` most of all) reads.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptd.catalog import Catalog
from ckptd.store import sha256_of
from tests.integration.conftest import (
    CKPTD,
    AppContainer,
    docker,
    free_port,
    started_app,
    write_policy,
)
from tests.integration.faults import DaemonUnderTest, wait_until


@pytest.fixture
def big_app(app_image: str) -> Iterator[AppContainer]:
    """Start the example app with enough memory that its dump takes a few seconds."""
    env = ["-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=96", "-e", "STEP_MS=200"]
    with started_app(app_image, "fix2", "--network", "none", *env) as container:
        yield container
        docker("rm", "-f", f"{container.name}-clone", check=False)


def test_a_checkpoint_finished_while_ckptd_was_dead_is_stored_at_start_up(
    big_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(
        tmp_path / "policy.yaml",
        big_app.name,
        free_port(),
        schedule="{every: 1h}",
        leave_running="true",
    )
    catalog = Catalog(tmp_path / "state")
    cli = subprocess.Popen(
        [*CKPTD, "checkpoint", "--config", str(policy), "it"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(catalog.in_progress, 60, "checkpoint under way")
    cli.kill()
    cli.wait(timeout=10)
    [interrupted] = catalog.in_progress()
    assert interrupted.checkpoint is not None
    wait_until(lambda: interrupted.checkpoint in big_app.checkpoints(), 120, "the engine's dump")

    daemon = DaemonUnderTest(policy).start()
    try:
        wait_until(lambda: daemon.events("reconcile_done"), 180, "reconcile at start-up")
    finally:
        assert 0 == daemon.stop(), daemon.log()

    resolved = catalog.attempt(interrupted.id)
    assert resolved is not None and "ok" == resolved.result, daemon.log()
    stored = list((tmp_path / "state" / "store").glob(f"*/{interrupted.checkpoint}/manifest.json"))
    assert 1 == len(stored), daemon.log()
    clone = f"{big_app.name}-clone"
    done = subprocess.run(
        [*CKPTD, "restore", "--config", str(policy), "it", "--into", clone],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert 0 == done.returncode, done.stderr
    assert f"restored {interrupted.checkpoint} into {clone}" in done.stdout


def test_a_failed_restore_into_leaves_no_container_and_says_so(
    big_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", big_app.name, free_port())
    done = subprocess.run([*CKPTD, "checkpoint", "--config", str(policy), "it"], timeout=120)
    assert 0 == done.returncode
    (found,) = (tmp_path / "state" / "store").glob("*/*/manifest.json")
    # Damage CRIU cannot restore from, with checksums to match: the engine itself fails.
    manifest = json.loads(found.read_text())
    image = found.parent / "images" / "inventory.img"
    image.write_bytes(b"not an image")
    for record in manifest["files"]:
        if record["path"] == "images/inventory.img":
            record.update(size=image.stat().st_size, sha256=sha256_of(image))
    found.write_text(json.dumps(manifest))
    clone = f"{big_app.name}-clone"

    failed = subprocess.run(
        [*CKPTD, "restore", "--config", str(policy), "it", "--into", clone],
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert 1 == failed.returncode, failed.stderr
    assert "the engine failed the restore" in failed.stderr
    assert "; the new container was removed" in failed.stderr
    assert 1 == docker("inspect", clone, check=False).returncode


@pytest.fixture
def slow_stop_app(app_image: str) -> Iterator[AppContainer]:
    """Start the example app with a stop signal it ignores: `docker stop` takes its full 10 s."""
    options = ["--network", "none", "--stop-signal", "SIGWINCH"]
    env = ["-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=8", "-e", "STEP_MS=200"]
    with started_app(app_image, "fix2", *options, *env) as container:
        yield container


def test_a_checkpoint_due_during_restore_force_waits_for_it(
    slow_stop_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(
        tmp_path / "policy.yaml", slow_stop_app.name, free_port(), schedule="{every: 2s}"
    )
    daemon = DaemonUnderTest(policy).start()
    try:
        wait_until(lambda: any(a.result == "ok" for a in daemon.attempts()), 60, "a checkpoint")
        # The restore's stop takes 10 s, in which checkpoints fall due.
        done = subprocess.run(
            [*CKPTD, "restore", "--config", str(policy), "it", "--force"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert 0 == done.returncode, done.stderr
        restored = len(daemon.attempts())
        wait_until(lambda: len(daemon.attempts()) > restored, 60, "checkpoints go on")
    finally:
        assert 0 == daemon.stop(), daemon.log()

    reasons = [a.reason for a in daemon.attempts() if a.result != "ok"]
    assert "container_not_running" not in reasons, reasons


def test_a_store_copy_cut_short_by_a_crash_is_finished_at_start_up(
    slow_stop_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(
        tmp_path / "policy.yaml", slow_stop_app.name, free_port(), schedule="{every: 1h}"
    )
    done = subprocess.run(
        [*CKPTD, "checkpoint", "--config", str(policy), "it"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == done.returncode, done.stderr
    name = done.stdout.strip().splitlines()[-1]
    (entry,) = (tmp_path / "state" / "store").glob(f"*/{name}")
    # What ckptd killed while it copied leaves: the catalog says good, the entry has no manifest.
    (entry / "manifest.json").unlink()
    entry.rename(entry.with_name(name + ".partial"))

    daemon = DaemonUnderTest(policy).start()
    try:
        wait_until(lambda: daemon.events("reconcile_done"), 120, "reconcile at start-up")
    finally:
        assert 0 == daemon.stop(), daemon.log()

    assert (entry / "manifest.json").is_file(), daemon.log()
    assert not entry.with_name(name + ".partial").exists()
    assert 1 == daemon.events("reconcile_done")[0]["store_copies"]
