"""`ckptd restore` from ckptd's own store, on the real engine with the example app.

Continuity is read from the app's output: a restored app prints no new "startup:" line and its
step counter goes on from the dump (a restart would print "startup:" and count from 1).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from ckptd.catalog import Catalog
from tests.integration.conftest import (
    JOURNAL,
    AppContainer,
    assert_resumed,
    checkpoint,
    docker,
    run_ckptd,
    step_at_dump,
    store_policy,
)


def mount_of(path: Path) -> str:
    """Return the mount point holding ``path`` (hard links never cross one)."""
    found = subprocess.run(
        ["findmnt", "-n", "-o", "TARGET", "-T", str(path)], capture_output=True, text=True
    )
    return found.stdout.strip()


def manifest(tmp_path: Path, name: str) -> dict:
    """Return the store manifest of checkpoint ``name``."""
    (found,) = (tmp_path / "store").glob(f"*/{name}/manifest.json")
    return json.loads(found.read_text())


def test_restore_in_place_after_the_app_grew_its_file(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = store_policy(tmp_path, journal_app)
    name = checkpoint(policy)
    dumped = step_at_dump(tmp_path, name)

    stored = manifest(tmp_path, name)
    assert stored["container"]["name"] == journal_app.name
    assert {"engine", "containerd", "runc", "criu"} <= set(stored["versions"])
    docker_root = docker("info", "-f", "{{.DockerRootDir}}").stdout.strip()
    linkable = mount_of(Path(docker_root)) == mount_of(tmp_path)
    assert ("hardlink" if linkable else "copy") == stored["staging"]["method"]
    assert JOURNAL in stored["changes"]["paths"]
    assert all(len(f["sha256"]) == 64 for f in stored["files"])

    # The journal grows after the dump: CRIU checks its size, so only the store's copy (cut
    # back to the dumped size) lets the restore through.
    time.sleep(1.5)
    refused = run_ckptd("restore", "--config", str(policy), "it")
    assert 1 == refused.returncode
    assert "is running" in refused.stderr

    before = len(journal_app.logs())
    done = run_ckptd("restore", "--config", str(policy), "it", "--force")
    assert 0 == done.returncode, done.stderr
    assert f"restored {name} into {journal_app.name}" in done.stdout

    after = journal_app.wait_for_steps(before + 8)[before:]
    # --force stopped the app first; what it printed before that is not the restored process.
    stopped = max(i for i, line in enumerate(after) if line.startswith("stopping:"))
    assert_resumed(after[stopped + 1 :], dumped)
    folder = Path(docker("inspect", "-f", "{{.HostnamePath}}", journal_app.name).stdout.strip())
    assert [] == list((folder.parent / "checkpoints").glob("ckptd_restore_*"))
    assert [] == unpacked_copies(stored)
    assert '"event": "restore_copy_removed"' in done.stderr
    restored, refused_record = Catalog(tmp_path / "state").restores()
    assert ("ok", "in_place", name) == (restored.result, restored.mode, restored.checkpoint)
    assert ("failed", "running") == (refused_record.result, refused_record.reason)


def unpacked_copies(stored: dict) -> list[Path]:
    """Return containerd's unpacked copies of this checkpoint (it never removes them itself)."""
    files = {
        f["path"].removeprefix("images/"): f["size"]
        for f in stored["files"]
        if f["path"].startswith("images/")
    }
    copies = []
    for folder in Path("/tmp").glob("ctrd-checkpoint*"):
        found = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
        if found == files:
            copies.append(folder)

    return copies


def test_restore_of_a_damaged_checkpoint_is_refused(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = store_policy(tmp_path, journal_app)
    name = checkpoint(policy)
    (pages,) = (tmp_path / "store").glob(f"*/{name}/images/pages-*.img")
    with open(pages, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 16)
    docker("stop", "-t", "5", journal_app.name)

    done = run_ckptd("restore", "--config", str(policy), "it")

    assert 1 == done.returncode
    assert "damaged, not restored" in done.stderr
    assert "sha256 differs" in done.stderr
    state = docker("inspect", "-f", "{{.State.Running}}", journal_app.name).stdout.strip()
    assert "false" == state


def clone_steps(clone: AppContainer, dumped: int) -> None:
    """The clone runs the dumped process: its whole output is the resumed app."""
    lines = clone.wait_for_steps(4)
    assert_resumed(lines, dumped)


def test_restore_into_a_new_container_after_docker_rm(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = store_policy(tmp_path, journal_app)
    name = checkpoint(policy)
    dumped = step_at_dump(tmp_path, name)
    docker("rm", "-f", journal_app.name)
    clone = AppContainer(f"{journal_app.name}-clone")

    done = run_ckptd("restore", "--config", str(policy), "it", "--into", clone.name)

    assert 0 == done.returncode, done.stderr
    assert f"restored {name} into {clone.name}" in done.stdout
    clone_steps(clone, dumped)
    image = docker("inspect", "-f", "{{.Image}}", clone.name).stdout.strip()
    assert manifest(tmp_path, name)["container"]["image_id"] == image


def test_export_remove_everything_import_and_restore(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = store_policy(tmp_path, journal_app)
    name = checkpoint(policy)
    dumped = step_at_dump(tmp_path, name)
    archive = tmp_path / "moved.tar.zst"

    exported = run_ckptd("export", "--config", str(policy), "it", "latest", "-o", str(archive))
    assert 0 == exported.returncode, exported.stderr
    docker("rm", "-f", journal_app.name)
    shutil.rmtree(tmp_path / "store")

    shown = run_ckptd("inspect", str(archive))
    assert 0 == shown.returncode, shown.stderr
    assert name in shown.stdout
    assert journal_app.name in shown.stdout
    imported = run_ckptd("import", "--config", str(policy), str(archive))
    assert 0 == imported.returncode, imported.stderr
    clone = AppContainer(f"{journal_app.name}-clone")
    done = run_ckptd("restore", "--config", str(policy), "it", "--into", clone.name)

    assert 0 == done.returncode, done.stderr
    clone_steps(clone, dumped)
