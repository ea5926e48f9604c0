"""`engine: runc` on the real engine: Docker lists, restores and removes what runc wrote."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path

from tests.integration.conftest import (
    CKPTD,
    AppContainer,
    docker,
    free_port,
    run_ckptd,
    sample,
    scrape,
    wait_for_metrics,
    write_policy,
)


def events(stderr: str) -> list[dict[str, object]]:
    """Return ckptd's JSON log lines."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def layout(folder: Path) -> list[tuple[str, int, int]]:
    """Return each file's name, mode and owner in a checkpoint folder."""
    return sorted((f.name, f.stat().st_mode, f.stat().st_uid) for f in folder.iterdir())


def checkpoint_folder(container: str, name: str) -> Path:
    """Return where Docker keeps checkpoint ``name`` of ``container``."""
    root = docker("info", "--format", "{{.DockerRootDir}}").stdout.strip()
    container_id = docker("inspect", "--format", "{{.Id}}", container).stdout.strip()
    return Path(root, "containers", container_id, "checkpoints", name)


def test_a_runc_checkpoint_lists_restores_with_its_state_and_is_removable(
    app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", app.name, free_port(), engine="runc")
    # What a ckptd killed in the middle of a dump would have left.
    stale = checkpoint_folder(app.name, "x").parent.parent / ".ckptd-killed.abc123"
    stale.mkdir()
    (stale / "pages-1.img").write_bytes(b"partial")

    made = run_ckptd("checkpoint", "--config", str(policy), "it")
    assert 0 == made.returncode, made.stderr
    printed_at_checkpoint = app.steps()[-1]
    name = made.stdout.strip()
    [done] = [e for e in events(made.stderr) if e["event"] == "checkpoint_done"]
    assert "runc" == done["engine"]
    assert isinstance(done["frozen_s"], float) and 0 < done["frozen_s"] < 60
    # Nothing of runc's staging or work folders, nor the stale one, is left beside Docker's
    # checkpoint folder.
    folder = checkpoint_folder(app.name, name)
    assert [] == [p.name for p in folder.parent.parent.iterdir() if p.name.startswith(".ckptd")]
    assert (folder / "pages-1.img").is_file()
    # The same files, modes and owners as a checkpoint Docker makes itself of this container.
    time.sleep(1)
    docker("checkpoint", "create", "--leave-running", app.name, "by-docker")
    by_docker = checkpoint_folder(app.name, "by-docker")
    assert layout(by_docker) == layout(folder)
    assert 0o700 == stat.S_IMODE(by_docker.stat().st_mode) == stat.S_IMODE(folder.stat().st_mode)
    docker("checkpoint", "rm", app.name, "by-docker")

    assert [name] == app.checkpoints()
    # The app goes on counting past the checkpoint: a restore must bring back the older count.
    app.wait_for_steps(len(app.logs()) + 3)
    docker("stop", "-t", "10", app.name)
    before = app.logs()

    docker("start", "--checkpoint", name, app.name)
    after = app.wait_for_steps(len(before) + 3)[len(before) :]

    assert 0 == app.startups(after), after
    resumed = app.steps(after)
    assert resumed[0] <= printed_at_checkpoint + 1, (printed_at_checkpoint, after[:3])
    assert resumed[0] > 1
    assert resumed == list(range(resumed[0], resumed[0] + len(resumed)))

    docker("checkpoint", "rm", app.name, name)
    assert [] == app.checkpoints()
    assert not folder.exists()


def test_the_daemon_reports_the_freeze_of_runc_checkpoints(
    app: AppContainer, tmp_path: Path
) -> None:
    port = free_port()
    policy = write_policy(tmp_path / "policy.yaml", app.name, port, engine="runc")
    stderr = (tmp_path / "ckptd.log").open("w+")
    daemon = subprocess.Popen([*CKPTD, "run", "--config", str(policy)], stderr=stderr, text=True)
    try:
        at_start = wait_for_metrics(port, daemon)
        time.sleep(5)
        metrics = scrape(port)
    finally:
        daemon.send_signal(signal.SIGTERM)
        returncode = daemon.wait(timeout=60)

    stderr.seek(0)
    log = stderr.read()
    assert 0 == returncode, log
    assert 0 == sample(at_start, "ckptd_app_frozen_seconds_count", app.name)
    frozen = sample(metrics, "ckptd_app_frozen_seconds_count", app.name)
    assert frozen >= 1, log
    assert frozen == sample(metrics, "ckptd_checkpoint_successes_total", app.name)
    assert 0 < sample(metrics, "ckptd_app_frozen_seconds_sum", app.name) < 60 * frozen
    assert "runc_engine_fallback" not in log


def test_without_runc_state_the_checkpoint_goes_through_docker_with_a_warning(
    tmp_path: Path, app_image: str
) -> None:
    name = f"ckptd-it-v1-{uuid.uuid4().hex[:8]}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--runtime",
        "io.containerd.runtime.v1.linux",
        "-e",
        "STARTUP_SECONDS=1",
        "-e",
        "TABLE_MB=16",
        app_image,
    )
    try:
        AppContainer(name).wait_for_steps(3)
        policy = write_policy(tmp_path / "policy.yaml", name, free_port(), engine="runc")
        made = run_ckptd("checkpoint", "--config", str(policy), "it")
        checkpoints = AppContainer(name).checkpoints()
    finally:
        docker("rm", "-f", name, check=False)

    assert 0 == made.returncode, made.stderr
    [fallback] = [e for e in events(made.stderr) if e["event"] == "runc_engine_fallback"]
    assert "no containerd shim bundle" in str(fallback["reason"])
    [done] = [e for e in events(made.stderr) if e["event"] == "checkpoint_done"]
    assert "docker" == done["engine"]
    assert [made.stdout.strip()] == checkpoints


def test_a_runc_checkpoint_restores_with_ckptd_restore_from_the_store(
    app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", app.name, free_port(), engine="runc")
    made = run_ckptd("checkpoint", "--config", str(policy), "it")
    assert 0 == made.returncode, made.stderr
    printed_at_checkpoint = app.steps()[-1]
    app.wait_for_steps(len(app.logs()) + 3)
    before = app.logs()

    restored = run_ckptd(
        "restore", "--config", str(policy), "--checkpoint", made.stdout.strip(), "--force", "it"
    )

    assert 0 == restored.returncode, restored.stderr
    lines = app.wait_for_steps(len(before) + 6)
    # --force stopped the app, which said so; what follows comes from the restored process.
    stopped = max(i for i, line in enumerate(lines) if line.startswith("stopping:"))
    after = lines[stopped + 1 :]
    assert 0 == app.startups(after), after
    resumed = app.steps(after)
    assert 1 < resumed[0] <= printed_at_checkpoint + 1, (printed_at_checkpoint, after[:3])
