"""Fault 10: a restore that hangs (a damaged checkpoint makes CRIU wait for ever).

``store: engine`` restores straight from Docker's folder, where nothing checks the files: a FIFO
in place of ``pstree.img`` is real damage that blocks CRIU's restore in open(2) with no end.
The timeout must end the restore, leave the container stopped, give back the disk the restore
used, and leave the earlier good checkpoint intact and restorable.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptd.catalog import Catalog
from ckptd.procs import command_lines
from tests.integration.conftest import (
    AppContainer,
    checkpoint,
    docker,
    run_ckptd,
    started_app,
    store_policy,
)
from tests.integration.faults import FaultRow, publish

TIMEOUT_S = 6


def checkpoint_folder(app: AppContainer, name: str) -> Path:
    """Return Docker's folder of the container's checkpoint ``name``."""
    hostname = docker("inspect", "-f", "{{.HostnamePath}}", app.name).stdout.strip()
    return Path(hostname).parent / "checkpoints" / name


def digests(folder: Path) -> dict[str, str]:
    """Return name -> sha256 of the regular files in ``folder``."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.iterdir())
        if f.is_file()
    }


def unpacked_copies(files: dict[str, int]) -> list[Path]:
    """Return containerd's unpacked copies holding exactly ``files`` (name -> size)."""
    return [
        folder
        for folder in Path("/tmp").glob("ctrd-checkpoint*")
        if {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()} == files
    ]


def restore_processes(container_id: str) -> list[int]:
    """Return the pids of runc restores (and their CRIU) still running for the container."""
    return [
        pid for pid, argv in command_lines() if b"restore" in argv and container_id.encode() in argv
    ]


@pytest.fixture
def plain_app(app_image: str) -> Iterator[AppContainer]:
    """The example app without a journal: with no store, nothing would put a file back."""
    env = ["-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=8", "-e", "STEP_MS=200"]
    with started_app(app_image, "store", "--network", "none", *env) as container:
        yield container


def test_a_hanging_restore_is_ended_by_the_timeout(plain_app: AppContainer, tmp_path: Path) -> None:
    app = plain_app

    policy = store_policy(tmp_path, app, store="engine")
    good = checkpoint(policy)
    good_digests = digests(checkpoint_folder(app, good))
    time.sleep(1.5)
    damaged = checkpoint(policy)
    docker("stop", "-t", "5", app.name)
    images = checkpoint_folder(app, damaged)
    files = {f.name: f.stat().st_size for f in images.iterdir() if f.name != "pstree.img"}
    (images / "pstree.img").unlink()
    os.mkfifo(images / "pstree.img")
    container_id = docker("inspect", "-f", "{{.Id}}", app.name).stdout.strip()

    started = time.monotonic()
    done = run_ckptd("restore", "--config", str(policy), "it", "--timeout", f"{TIMEOUT_S}s")
    took = time.monotonic() - started

    assert 1 == done.returncode, done.stdout
    assert f"did not finish within {TIMEOUT_S} s and was ended (criu " in done.stderr
    assert took < 60
    killed = re.search(r"was ended \(([^)]*)\)", done.stderr)
    assert killed is not None
    kinds = " and ".join(sorted(set(re.findall("criu|runc", killed[1]))))
    running = docker("inspect", "-f", "{{.State.Running}}", app.name).stdout.strip()
    assert "false" == running
    assert [] == restore_processes(container_id)
    assert [] == unpacked_copies(files)
    (record,) = Catalog(tmp_path / "state").restores()
    assert ("failed", "timeout", damaged) == (record.result, record.reason, record.checkpoint)

    # The earlier checkpoint is intact and still restores.
    assert good_digests == digests(checkpoint_folder(app, good))
    again = run_ckptd("restore", "--config", str(policy), "it", "--checkpoint", good)
    assert 0 == again.returncode, again.stderr
    intact = int(good_digests == digests(checkpoint_folder(app, good)))

    publish(
        FaultRow(
            "10",
            "a restore that hangs: CRIU blocked on a damaged image (a FIFO for pstree.img)",
            f"restore ended after its {TIMEOUT_S} s timeout ({took:.1f} s in all) by killing "
            f"{kinds}; recorded as timeout; the container left stopped; no restore process "
            "and no unpacked copy left behind; the earlier checkpoint then restored",
            1,
            intact,
            1 - intact,
        )
    )
