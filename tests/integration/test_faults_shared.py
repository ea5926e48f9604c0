"""Faults on the shared engine (nothing here stops or reconfigures it): each test asserts what
happened to every checkpoint that existed before the fault, and publishes its row of
docs/faults.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from ckptd.catalog import Catalog
from ckptd.naming import checkpoints_of
from ckptd.reconcile import is_complete
from tests.integration.conftest import CKPTD, ROOT, docker, free_port, run_ckptd, write_policy
from tests.integration.faults import DaemonUnderTest, FaultRow, good_names, publish, wait_until

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
LOCKER_IMAGE = "ckptd-fault-locker:test"


def ours(container: str) -> list[str]:
    """Return the ckptd checkpoints (target "it") the engine lists for ``container``."""
    out = docker("checkpoint", "ls", container).stdout.splitlines()[1:]
    return [ref.name for ref in checkpoints_of("it", [line.strip() for line in out])]


def intact(container: str, names: list[str]) -> list[str]:
    """Return those of ``names`` the engine still lists with a complete image folder."""
    root = docker("info", "--format", "{{.DockerRootDir}}").stdout.strip()
    cid = docker("inspect", "--format", "{{.Id}}", container).stdout.strip()
    listed = set(ours(container))
    folder = Path(root, "containers", cid, "checkpoints")
    return [name for name in names if name in listed and is_complete(folder / name)]


@pytest.fixture
def start(app_image: str) -> Iterator[Callable[..., str]]:
    """Yield a starter of containers (name prefixed cat-, no network); remove them after."""
    started: list[str] = []

    def run(*args: str, image: str = app_image, env: dict[str, str] | None = None) -> str:
        name = f"cat-{uuid.uuid4().hex[:8]}"
        values = {"STARTUP_SECONDS": "1", "TABLE_MB": "8", "STEP_MS": "200", **(env or {})}
        flags = [arg for key, value in values.items() for arg in ("-e", f"{key}={value}")]
        docker("run", "-d", "--network", "none", "--name", name, *flags, *args, image)
        started.append(name)
        return name

    yield run
    for name in started:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="session")
def locker_image(engine: None) -> str:
    """Build the file-lock holder CRIU refuses to dump (a static binary, FROM scratch)."""
    source = Path(__file__).parent / "locker"
    build = ROOT / "examples" / "cpp-app" / "build" / "locker"
    build.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O2",
            "-static",
            "-o",
            str(build / "locker"),
            str(source / "locker.cc"),
        ],
        check=True,
    )
    (build / "Dockerfile").write_text((source / "Dockerfile").read_text())
    subprocess.run(
        ["docker", "build", "-q", "-t", LOCKER_IMAGE, str(build)],
        check=True,
        capture_output=True,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    return LOCKER_IMAGE


def daemon_for(tmp_path: Path, container: str, **target: object) -> DaemonUnderTest:
    policy = write_policy(tmp_path / "policy.yaml", container, free_port(), **target)
    return DaemonUnderTest(policy).start()


def test_3_container_stopped_then_removed_between_runs(
    start: Callable[..., str], tmp_path: Path
) -> None:
    app = start()
    daemon = daemon_for(tmp_path, app, retention="{keep_last: 10}")
    try:
        wait_until(lambda: len(good_names(daemon.attempts())) >= 2, 60, "two checkpoints")
        docker("stop", "-t", "5", app)
        before = ours(app)

        def skipped() -> int:
            return sum(a.reason == "container_not_running" for a in daemon.attempts())

        wait_until(lambda: skipped() >= 2, 30, "runs skipped as container_not_running")
        assert daemon.alive(), daemon.log()
        after_stop = intact(app, before)

        docker("start", app)
        made = len(good_names(daemon.attempts()))
        wait_until(lambda: len(good_names(daemon.attempts())) > made, 60, "resumed after start")
        docker("rm", "-f", app)
        wait_until(
            lambda: any(a.reason == "container_not_found" for a in daemon.attempts()),
            30,
            "runs skipped as container_not_found",
        )
        assert daemon.alive(), daemon.log()
    finally:
        assert 0 == daemon.stop(), daemon.log()

    assert before and before == after_stop
    # Docker deletes a container's checkpoints with it (`docker rm`); the catalog keeps them.
    recorded = {r.name for r in daemon.catalog().checkpoints(target="it")}
    assert set(before) <= recorded
    publish(
        FaultRow(
            "3",
            "container stopped, later removed, between scheduling and running",
            f"runs skipped as container_not_running ({skipped()}), then container_not_found; "
            "target stayed scheduled and resumed when the container started again",
            len(before),
            len(after_stop),
            len(before) - len(after_stop),
        )
    )


def test_4_criu_refuses_the_dump(
    start: Callable[..., str], locker_image: str, tmp_path: Path
) -> None:
    app = start(image=locker_image)
    daemon = daemon_for(tmp_path, app, schedule="{every: 1s}", retention="{keep_last: 10}")
    try:
        wait_until(lambda: len(good_names(daemon.attempts())) >= 2, 60, "two checkpoints")
        docker("kill", "--signal", "USR1", app)
        wait_until(lambda: "locked" in docker("logs", app).stdout.split(), 10, "lock taken")
        before = ours(app)
        # Let failures pile up: 1 s runs, with backoff after the second failure in a row.
        wait_until(
            lambda: sum(a.reason == "criu_failed" for a in daemon.attempts()) >= 4,
            60,
            "four CRIU failures",
        )
        failed = [a for a in daemon.attempts() if a.reason == "criu_failed"]
        after_failures = intact(app, before)
        leftover = set(ours(app)) - set(before)

        docker("kill", "--signal", "USR2", app)
        made = len(good_names(daemon.attempts()))
        wait_until(lambda: len(good_names(daemon.attempts())) > made, 60, "success after unlock")
    finally:
        assert 0 == daemon.stop(), daemon.log()

    assert before == after_failures
    assert set() == leftover
    for attempt in failed:
        assert attempt.criu_log and "file locks" in attempt.criu_log, attempt
        assert attempt.message and "criu failed" in attempt.message
    # Backoff: the gaps between failed attempts grow (1 s schedule: 1, 2, 4 ... runs apart).
    starts = [a.started_at.timestamp() for a in failed]
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    assert gaps[-1] > gaps[0] + 1.5, gaps
    assert daemon.events("checkpoint_backed_off"), daemon.log()
    publish(
        FaultRow(
            "4",
            "CRIU cannot dump the container (a process holds a file lock)",
            f"{len(failed)} attempts recorded as criu_failed with CRIU's log excerpt (\"Some file "
            'locks are hold"); retried with backoff (gaps '
            + ", ".join(f"{gap:.0f}" for gap in gaps)
            + " s); succeeded again once the lock was released",
            len(before),
            len(after_failures),
            len(before) - len(after_failures),
        )
    )


def test_5_schedule_and_cli_are_serialised_and_races_retried(
    start: Callable[..., str], tmp_path: Path
) -> None:
    app = start()
    daemon = daemon_for(tmp_path, app, schedule="{every: 1s}", retention="{keep_last: 50}")
    policy = daemon.policy
    try:
        wait_until(lambda: len(good_names(daemon.attempts())) >= 1, 60, "first checkpoint")
        before = ours(app)
        clis = [
            subprocess.Popen(
                [*CKPTD, "checkpoint", "--config", str(policy), "it"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = [(cli.wait(timeout=180), cli.stderr.read() if cli.stderr else "") for cli in clis]
        time.sleep(3)
    finally:
        assert 0 == daemon.stop(), daemon.log()

    attempts = [a for a in daemon.attempts() if a.checkpoint]
    for code, err in results:
        assert 0 == code, err
    # Never two at once for one container: every attempt ended before the next one began.
    spans = sorted((a.started_at, a.ended_at) for a in attempts if a.ended_at)
    for (_, end), (begin, _) in pairwise(spans):
        assert end <= begin, spans
    names = [a.checkpoint for a in attempts]
    assert len(names) == len(set(names))
    races = [a for a in attempts if a.reason == "content_race"]
    # A race is retried under a new name, and a good checkpoint follows it.
    for race in races:
        later = [a for a in attempts if a.started_at > race.started_at and a.result == "ok"]
        assert later, race
    assert all(a.reason in (None, "content_race") for a in attempts), attempts
    after = intact(app, before)
    assert before == after
    publish(
        FaultRow(
            "5",
            "content-store race; schedule (every 1 s) plus three `ckptd checkpoint` at once",
            f"{len(attempts)} attempts back to back, never two at once for the container; "
            + (
                f"{len(races)} content_race failure(s), each retried under a new name"
                if races
                else "no content-store race this run (its retry is tested on a fake engine)"
            ),
            len(before),
            len(after),
            len(before) - len(after),
        )
    )


def test_7_broken_policy_at_start_and_on_reload(start: Callable[..., str], tmp_path: Path) -> None:
    app = start()
    broken = tmp_path / "broken" / "policy.yaml"
    broken.parent.mkdir()
    write_policy(broken, app, free_port(), schedule="{every: -5s}")
    refused = run_ckptd("run", "--config", str(broken), timeout=60)
    assert 2 == refused.returncode, refused.stderr
    assert "targets[0].schedule.every" in refused.stderr
    assert not (broken.parent / "state").exists()

    daemon = daemon_for(tmp_path, app, retention="{keep_last: 10}")
    try:
        wait_until(lambda: len(good_names(daemon.attempts())) >= 1, 60, "first checkpoint")
        good_text = daemon.policy.read_text()
        before = ours(app)
        daemon.policy.write_text(good_text.replace("keep_last: 10", "keep_last: [oops]"))
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.events("reload_rejected"), 20, "reload rejected")
        daemon.policy.write_text(good_text)
        daemon.policy.chmod(0o666)
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: len(daemon.events("reload_rejected")) >= 2, 20, "second rejection")
        made = len(good_names(daemon.attempts()))
        wait_until(lambda: len(good_names(daemon.attempts())) >= made + 2, 60, "old policy runs")
        assert daemon.alive()
        after = intact(app, before)
    finally:
        assert 0 == daemon.stop(), daemon.log()

    rejected = " ".join(str(event) for event in daemon.events("reload_rejected"))
    assert "keep_last" in rejected and "chmod go-w" in rejected
    assert before == after
    publish(
        FaultRow(
            "7",
            "broken policy at start; broken, then group-writable, policy on reload (SIGHUP)",
            "start refused with exit 2 naming the key; each reload rejected with its reason, "
            "the old policy kept running",
            len(before),
            len(after),
            len(before) - len(after),
        )
    )


def test_8_wall_clock_jumps_forward_and_back(start: Callable[..., str], tmp_path: Path) -> None:
    if not LIBFAKETIME.exists():
        message = f"{LIBFAKETIME} missing: `make test` installs Debian's libfaketime"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)

    app = start()
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    policy = write_policy(
        tmp_path / "policy.yaml",
        app,
        free_port(),
        schedule="{every: 2s}",
        retention="{keep_last: 3}",
    )
    # libfaketime moves only the wall clock, at the process boundary, as an NTP step would.
    env = {
        **os.environ,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    daemon = DaemonUnderTest(policy, env).start()
    try:
        wait_until(lambda: len(good_names(daemon.attempts())) >= 3, 60, "three checkpoints")
        offset.write_text("+2d\n")
        jumped_at = len(daemon.attempts())
        before_forward = ours(app)
        time.sleep(6)
        burst = len(daemon.attempts()) - jumped_at

        before_back = ours(app)
        offset.write_text("-1d\n")
        made = len(good_names(daemon.attempts()))
        wait_until(lambda: len(good_names(daemon.attempts())) >= made + 2, 30, "runs after back")
        after = ours(app)
    finally:
        assert 0 == daemon.stop(), daemon.log()

    names = [a.checkpoint for a in daemon.attempts() if a.checkpoint]
    assert len(names) == len(set(names))
    assert daemon.events("clock_jumped"), daemon.log()
    # Forward: at most the runs the 6 s hold (every 2 s), not two days' worth of catch-up.
    assert burst <= 4, burst
    # Back: the checkpoints dated "in the future" are all kept.
    assert set(before_back) <= set(after), (before_back, after)
    publish(
        FaultRow(
            "8",
            "wall clock jumps 2 days forward, then 3 days back (libfaketime, monotonic untouched)",
            f"jobs re-planned from the new time: {burst} run(s) in the 6 s after the forward "
            "jump, runs went on at once after the back jump; no duplicate names; checkpoints "
            "dated in the future kept",
            len(before_back),
            len(set(before_back) & set(after)),
            len(set(before_back) - set(after)),
        )
    )
    assert before_forward


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(("--restart", "always"), "restart policy 'always'"), (("--rm",), "auto-remove")],
)
def test_9_stopping_checkpoint_refused_on_restarting_or_auto_removed_containers(
    start: Callable[..., str], tmp_path: Path, flags: tuple[str, ...], expected: str
) -> None:
    app = start(*flags)
    time.sleep(2)
    docker("checkpoint", "create", "--leave-running", app, "by-hand")
    policy = write_policy(tmp_path / "policy.yaml", app, free_port(), leave_running="false")

    done = run_ckptd("checkpoint", "--config", str(policy), "it")

    assert 1 == done.returncode, done.stderr
    assert expected in done.stderr
    assert "true" == docker("inspect", "--format", "{{.State.Running}}", app).stdout.strip()
    listed = docker("checkpoint", "ls", app).stdout
    assert "by-hand" in listed
    [attempt] = Catalog(tmp_path / "state").attempts()
    assert "exit_refused" == attempt.reason
    publish(
        FaultRow(
            "9." + ("1" if "--rm" not in flags else "2"),
            f"leave_running: false on a container started with {' '.join(flags)}",
            f"refused before asking the engine (exit 1, reason exit_refused: {expected}); "
            "the container kept running",
            1,
            1,
            0,
        )
    )
