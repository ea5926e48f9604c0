"""Faults that take the engine itself away, on a disposable dockerd of the test's own: dockerd
stopped and started, dockerd killed mid checkpoint, ckptd killed mid checkpoint, a full disk.
Each asserts what happened to every checkpoint that existed before, and publishes its row of
docs/faults.md.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckptd.catalog import Catalog
from ckptd.naming import checkpoints_of
from ckptd.reconcile import is_complete
from tests.integration.conftest import CKPTD, free_port, write_policy
from tests.integration.engines import DisposableEngine, disposable_engine
from tests.integration.faults import DaemonUnderTest, FaultRow, good_names, publish, wait_until


@pytest.fixture(scope="module")
def spare(app_image: str) -> Iterator[DisposableEngine]:
    """Yield a disposable engine, without live restore.

    With live restore, Docker 20.10 cannot checkpoint a container it restored after its own
    restart ("invalid task checkpoint option for io.containerd.runc.v2": it forgets the
    container's runtime options); without it, dockerd stops its containers when it starts
    again and a restart policy starts them afresh, which checkpoint normally.
    """
    with disposable_engine(live_restore=False) as disposable:
        disposable.load_image(app_image)
        yield disposable


class Box:
    """One app container on the disposable engine, and ckptd's view of it."""

    def __init__(self, engine: DisposableEngine, app_image: str, table_mb: int) -> None:
        self.engine = engine
        self.name = f"cat-{uuid.uuid4().hex[:8]}"
        engine.docker(
            "run", "-d", "--network", "none", "--restart", "always", "--name", self.name,
            "-e", "STARTUP_SECONDS=1", "-e", f"TABLE_MB={table_mb}", "-e", "STEP_MS=200",
            app_image,
        )  # fmt: skip
        self.id = engine.docker("inspect", "--format", "{{.Id}}", self.name).stdout.strip()
        time.sleep(2)

    @property
    def folder(self) -> Path:
        return self.engine.data_root / "containers" / self.id / "checkpoints"

    def ours(self) -> list[str]:
        out = self.engine.docker("checkpoint", "ls", self.name).stdout.splitlines()[1:]
        return [ref.name for ref in checkpoints_of("it", [line.strip() for line in out])]

    def intact(self, names: list[str]) -> list[str]:
        listed = set(self.ours())
        return [n for n in names if n in listed and is_complete(self.folder / n)]

    def running(self) -> bool:
        state = self.engine.docker("inspect", "--format", "{{.State.Running}}", self.name)
        return state.stdout.strip() == "true"

    def remove(self) -> None:
        self.engine.docker("rm", "-f", self.name, check=False)


@pytest.fixture
def box(spare: DisposableEngine, app_image: str, request: pytest.FixtureRequest) -> Iterator[Box]:
    made = Box(spare, app_image, getattr(request, "param", 8))
    yield made
    made.remove()


def not_good_on_engine(box: Box, catalog: Catalog) -> list[str]:
    """Return ckptd names the engine lists that the catalog does not call good."""
    recorded = catalog.names(box.id)
    return [name for name in box.ours() if recorded.get(name) != "ok"]


def test_1_dockerd_stopped_then_started(spare: DisposableEngine, box: Box, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path / "policy.yaml", box.name, free_port(), retention="{keep_last: 10}"
    )
    daemon = DaemonUnderTest(policy, spare.env()).start()
    try:
        wait_until(lambda: len(good_names(daemon.attempts())) >= 2, 60, "two checkpoints")
        before = [n for n in good_names(daemon.attempts()) if n in box.ours()]
        spare.stop_dockerd()

        def outages() -> int:
            return sum(a.reason == "engine_unavailable" for a in daemon.attempts())

        wait_until(lambda: outages() >= 2, 30, "attempts failing as engine_unavailable")
        assert daemon.alive(), daemon.log()
        spare.start_dockerd()
        made = len(good_names(daemon.attempts()))
        wait_until(lambda: len(good_names(daemon.attempts())) > made, 60, "resumed by itself")
        after = box.intact(before)
        junk = not_good_on_engine(box, daemon.catalog())
    finally:
        if spare.dockerd_pid is None:
            spare.start_dockerd()
        assert 0 == daemon.stop(), daemon.log()

    assert before and before == after
    assert [] == junk
    publish(
        FaultRow(
            "1",
            "dockerd stopped while ckptd runs, then started again",
            f"{outages()} attempts recorded as engine_unavailable; ckptd kept running and "
            "resumed by itself; no partial checkpoint left",
            len(before),
            len(after),
            len(before) - len(after),
        )
    )


def checkpoint_cli(policy: Path, engine: DisposableEngine) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CKPTD, "checkpoint", "--config", str(policy), "it"],
        env=engine.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def in_progress_for(catalog: Catalog, seconds: float) -> bool:
    """Return True once an attempt has been in progress for ``seconds``."""
    now = time.time()
    return any(now - a.started_at.timestamp() >= seconds for a in catalog.in_progress())


@pytest.mark.parametrize("box", [128], indirect=True)
@pytest.mark.parametrize("with_ckptd", [False, True], ids=["dockerd", "dockerd-and-ckptd"])
def test_2_dockerd_killed_mid_checkpoint(
    spare: DisposableEngine, box: Box, tmp_path: Path, with_ckptd: bool
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", box.name, free_port(), schedule="{every: 1h}")
    catalog = Catalog(tmp_path / "state")
    first = checkpoint_cli(policy, spare)
    assert 0 == first.wait(timeout=180), first.communicate()
    before = box.ours()

    cli = checkpoint_cli(policy, spare)
    wait_until(lambda: in_progress_for(catalog, 1.0), 60, "checkpoint under way")
    [pending] = catalog.in_progress()
    if with_ckptd:
        # As a host crash would leave it: nobody recorded how the attempt ended.
        cli.kill()
    spare.kill_dockerd()
    code = cli.wait(timeout=120)
    spare.start_dockerd()
    left = [n for n in box.ours() if n not in before]

    # ckptd started again: reconcile, or the next run of the container, removes what is left.
    again = write_policy(tmp_path / "policy.yaml", box.name, free_port(), schedule="{every: 2s}")
    daemon = DaemonUnderTest(again, spare.env()).start()
    try:
        made = len(good_names(daemon.attempts()))
        wait_until(lambda: len(good_names(daemon.attempts())) > made, 120, "a new checkpoint")
        wait_until(lambda: daemon.events("reconcile_done"), 60, "reconcile at start-up")
    finally:
        assert 0 == daemon.stop(), daemon.log()

    after = box.intact(before)
    interrupted = catalog.attempt(pending.id)
    assert interrupted is not None
    assert 0 != code
    if with_ckptd:
        assert interrupted.result in ("incomplete", "failed"), interrupted
    else:
        assert ("failed", "engine_unavailable") == (interrupted.result, interrupted.reason)
    assert [] == catalog.in_progress()
    assert [] == not_good_on_engine(box, catalog)
    assert before == after
    what = (
        f"at start-up the in_progress attempt was resolved as {interrupted.result!r} "
        f"({interrupted.message})"
        if with_ckptd
        else "attempt recorded as engine_unavailable"
    )
    publish(
        FaultRow(
            "2.3" if with_ckptd else "2.1",
            ("dockerd and ckptd" if with_ckptd else "dockerd")
            + " killed (SIGKILL) in the middle of a 128 MiB checkpoint",
            f"{what}; {len(left)} partial checkpoint(s) left by the crash removed; none "
            "counted as good",
            len(before),
            len(after),
            len(before) - len(after),
        )
    )


@pytest.mark.parametrize("box", [128], indirect=True)
def test_2_ckptd_killed_mid_checkpoint(spare: DisposableEngine, box: Box, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", box.name, free_port(), schedule="{every: 1h}")
    catalog = Catalog(tmp_path / "state")
    first = checkpoint_cli(policy, spare)
    assert 0 == first.wait(timeout=180), first.communicate()
    before = box.ours()

    cli = checkpoint_cli(policy, spare)
    wait_until(lambda: in_progress_for(catalog, 1.0), 60, "checkpoint under way")
    cli.kill()
    cli.wait(timeout=10)
    [interrupted] = catalog.in_progress()

    daemon = DaemonUnderTest(policy, spare.env()).start()
    try:
        wait_until(lambda: daemon.events("reconcile_done"), 180, "reconcile at start-up")
    finally:
        assert 0 == daemon.stop(), daemon.log()

    resolved = catalog.attempt(interrupted.id)
    assert resolved is not None and "in_progress" != resolved.result
    assert [] == catalog.in_progress()
    assert [] == not_good_on_engine(box, catalog)
    for name in box.ours():
        assert is_complete(box.folder / name), name
    after = box.intact(before)
    assert before == after
    publish(
        FaultRow(
            "2.2",
            "ckptd killed (SIGKILL) in the middle of a 128 MiB checkpoint, then started again",
            f"at start-up the in_progress attempt was resolved as {resolved.result!r} "
            f"({resolved.message}); nothing incomplete counted as good",
            len(before),
            len(after),
            len(before) - len(after),
        )
    )


def test_6_disk_full_during_a_checkpoint(spare: DisposableEngine, box: Box, tmp_path: Path) -> None:
    box.folder.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "ckptd-fault-full", str(box.folder)],
        check=True,
    )
    policy = write_policy(tmp_path / "policy.yaml", box.name, free_port(), schedule="{every: 1h}")
    catalog = Catalog(tmp_path / "state")
    try:
        first = checkpoint_cli(policy, spare)
        assert 0 == first.wait(timeout=120), first.communicate()
        before = box.ours()
        # Leave about 1 MiB: the next checkpoint (about 9 MiB) fills the disk half way.
        disk = os.statvfs(box.folder)
        (box.folder / ".filler").write_bytes(b"\0" * (disk.f_bavail * disk.f_frsize - 2**20))

        cli = checkpoint_cli(policy, spare)
        _, err = cli.communicate(timeout=120)
        failed = catalog.attempts()[0]
        after = box.intact(before)
        left = [n for n in box.ours() if n not in before]
        running = box.running()
    finally:
        subprocess.run(["umount", "-l", str(box.folder)], check=False)

    assert 0 != cli.returncode
    assert ("failed", "disk_space") == (failed.result, failed.reason), (failed, err)
    assert [] == left
    assert running
    assert before == after
    publish(
        FaultRow(
            "6",
            "disk full during a checkpoint (a 24 MiB tmpfs as the container's checkpoint folder)",
            "attempt recorded as disk_space; the partial checkpoint is gone; the container "
            "kept running",
            len(before),
            len(after),
            len(before) - len(after),
        )
    )
