"""Restore drills, restore_on_start and application hooks, on the real engine."""

from __future__ import annotations

import json
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ckptd.catalog import Catalog
from tests.integration.conftest import (
    CKPTD,
    AppContainer,
    assert_resumed,
    checkpoint,
    docker,
    free_port,
    run_ckptd,
    sample,
    scrape,
    step_at_dump,
    store_policy,
    wait_for_metrics,
)

VERIFY = "{every: 3s, run_for: 2s, probe: [/app, save-state]}"


@contextmanager
def daemon(policy: Path, port: int, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Run `ckptd run` on ``policy`` until the block ends; its log goes to ckptd.log."""
    log = (tmp_path / "ckptd.log").open("w")
    process = subprocess.Popen([*CKPTD, "run", "--config", str(policy)], stderr=log, text=True)
    try:
        wait_for_metrics(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
        log.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout}s")


def drill_clones(app: AppContainer) -> list[str]:
    """Return the names of drill clones of ``app`` that still exist."""
    names = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return [name for name in names if name.startswith(f"{app.name}-drill-")]


def verified_record(tmp_path: Path, name: str) -> dict:
    (found,) = (tmp_path / "store").glob(f"*/{name}/verified.json")
    return json.loads(found.read_text())


def test_a_drill_passes_and_marks_the_checkpoint_verified(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    port = free_port()
    policy = store_policy(tmp_path, journal_app, port, schedule="{every: 1h}", verify=VERIFY)
    name = checkpoint(policy)

    with daemon(policy, port, tmp_path):
        metric = "ckptd_restore_verify_last_success_timestamp_seconds"
        assert 0 == sample(scrape(port), metric, journal_app.name)
        wait_until(
            lambda: sample(scrape(port), metric, journal_app.name) > 0, 40, "no drill passed"
        )
        metrics = scrape(port)

    assert 0 == sample(metrics, "ckptd_restore_verify_failures_total", journal_app.name)
    assert sample(metrics, "ckptd_restore_verify_duration_seconds_count", journal_app.name) >= 1
    assert sample(metrics, "ckptd_restores_total", journal_app.name, result="ok") >= 1
    assert verified_record(tmp_path, name)["ok"] is True
    drills = [r for r in Catalog(tmp_path / "state").restores() if r.mode == "drill"]
    assert drills and all(r.result == "ok" for r in drills)
    assert [] == drill_clones(journal_app)
    # The original was never touched.
    assert "true" == docker("inspect", "-f", "{{.State.Running}}", journal_app.name).stdout.strip()


def test_a_drill_of_a_corrupted_store_entry_fails(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    port = free_port()
    policy = store_policy(tmp_path, journal_app, port, schedule="{every: 1h}", verify=VERIFY)
    name = checkpoint(policy)
    (pages,) = (tmp_path / "store").glob(f"*/{name}/images/pages-*.img")
    with open(pages, "r+b") as handle:
        handle.write(b"\0" * 64)

    with daemon(policy, port, tmp_path):
        failures = "ckptd_restore_verify_failures_total"
        wait_until(
            lambda: sample(scrape(port), failures, journal_app.name) >= 1, 40, "no drill failed"
        )
        metrics = scrape(port)

    metric = "ckptd_restore_verify_last_success_timestamp_seconds"
    assert 0 == sample(metrics, metric, journal_app.name)
    assert sample(metrics, "ckptd_restores_total", journal_app.name, result="failed") >= 1
    record = verified_record(tmp_path, name)
    assert record["ok"] is False
    assert "sha256 differs" in record["detail"]
    (drill, *_) = [r for r in Catalog(tmp_path / "state").restores() if r.mode == "drill"]
    assert ("failed", "damaged") == (drill.result, drill.reason)
    assert [] == drill_clones(journal_app)
    assert pages.exists(), "a failed drill must not delete the checkpoint"


def test_restore_on_start_brings_a_stopped_container_back(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    port = free_port()
    policy = store_policy(
        tmp_path, journal_app, port, schedule="{every: 1h}", restore_on_start="true"
    )
    name = checkpoint(policy)
    dumped = step_at_dump(tmp_path, name)
    docker("stop", "-t", "5", journal_app.name)
    before = len(journal_app.logs())

    with daemon(policy, port, tmp_path):
        wait_until(
            lambda: (
                sample(scrape(port), "ckptd_restores_total", journal_app.name, result="ok") == 1
            ),
            30,
            "no restore on start",
        )

    after = journal_app.wait_for_steps(before + 3)[before:]
    assert_resumed(after, dumped)
    (record,) = Catalog(tmp_path / "state").restores()
    assert ("ok", "restore_on_start", name) == (record.result, record.mode, record.checkpoint)


def hook_policy(tmp_path: Path, app: AppContainer, hooks: str) -> Path:
    return store_policy(tmp_path, app, schedule="{every: 1h}", hooks=hooks)


def test_a_pre_hook_saves_the_app_state_into_the_checkpoint(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = hook_policy(
        tmp_path, journal_app, "{pre: [[/app, save-state]], post: [[/app, sleep, '0']]}"
    )

    name = checkpoint(policy)

    (rootfs,) = (tmp_path / "store").glob(f"*/{name}/rootfs.tar")
    with tarfile.open(rootfs) as archive:
        handle = archive.extractfile("app-state.txt")
        assert handle is not None
        state = handle.read().decode()
    saved = int(state.split()[0].removeprefix("step="))
    assert saved in (step_at_dump(tmp_path, name), step_at_dump(tmp_path, name) - 1)
    log = (tmp_path / "ckptd.log").read_text() if (tmp_path / "ckptd.log").exists() else ""
    assert "hook_failed" not in log


def test_a_failing_pre_hook_skips_the_checkpoint(journal_app: AppContainer, tmp_path: Path) -> None:
    policy = hook_policy(tmp_path, journal_app, "{pre: [[/app, no-such-command]]}")

    done = run_ckptd("checkpoint", "--config", str(policy), "it")

    assert 1 == done.returncode
    assert "exited with status 2" in done.stderr
    assert [] == journal_app.checkpoints()
    (attempt,) = Catalog(tmp_path / "state").attempts()
    assert ("failed", "hook_failed") == (attempt.result, attempt.reason)


def test_a_pre_hook_that_hangs_times_out_and_is_killed(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = hook_policy(tmp_path, journal_app, "{pre: [[/app, sleep, '300']], timeout: 2s}")

    started = time.monotonic()
    done = run_ckptd("checkpoint", "--config", str(policy), "it")

    assert 1 == done.returncode
    assert "timed out after 2 s" in done.stderr
    assert time.monotonic() - started < 30
    assert [] == journal_app.checkpoints()
    top = docker("top", journal_app.name).stdout
    assert "sleep" not in top, top


def test_on_error_continue_checkpoints_despite_a_failing_hook(
    journal_app: AppContainer, tmp_path: Path
) -> None:
    policy = hook_policy(
        tmp_path, journal_app, "{pre: [[/app, no-such-command]], on_error: continue}"
    )

    name = checkpoint(policy)

    assert [name] == journal_app.checkpoints()
