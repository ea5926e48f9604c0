"""Retention on the real engine: the size budget, pins, the dry-run table, and the disk budget."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    CKPTD,
    AppContainer,
    docker,
    free_port,
    run_ckptd,
    sample,
    started_app,
    wait_for_metrics,
)

# Back-to-back checkpoints of one container can race in containerd's content store.
GAP_S = 1.2


@pytest.fixture
def ret_app(app_image: str) -> Iterator[AppContainer]:
    """Start the example app in a container of this suite's own (prefix ret-)."""
    env = ["-e", "STARTUP_SECONDS=1", "-e", "TABLE_MB=8", "-e", "STEP_MS=200"]
    with started_app(app_image, "ret", *env) as container:
        yield container


def write_policy(
    path: Path, container: str, retention: str, daemon: str = "", every: str = "1h"
) -> Path:
    """Write a one-target policy (target `it`) with its own state folder and metrics port."""
    lines = [
        "daemon:",
        f"  metrics_address: 127.0.0.1:{free_port()}",
        f"  state_dir: {path.parent / 'state'}",
        *([f"  {daemon}"] if daemon else []),
        "targets:",
        "  - name: it",
        f"    container: {container}",
        f"    schedule: {{every: {every}}}",
        f"    retention: {retention}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def checkpoint(policy: Path) -> tuple[str, str]:
    """Take one checkpoint with `ckptd checkpoint`; return its name and ckptd's log."""
    time.sleep(GAP_S)
    done = run_ckptd("checkpoint", "--config", str(policy), "it")
    assert 0 == done.returncode, done.stderr
    return done.stdout.strip(), done.stderr


def dry_run(policy: Path) -> dict[str, Any]:
    """Return the one target's plan from `ckptd prune --dry-run --json`."""
    done = run_ckptd("prune", "--config", str(policy), "--dry-run", "--json")
    assert 0 == done.returncode, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)["targets"][0]
    return report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["checkpoints"]}


def test_size_budget_keeps_within_it_and_always_keeps_the_newest(
    ret_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", ret_app.name, "{}")
    first, _ = checkpoint(policy)
    size = by_name(dry_run(policy))[first]["size_bytes"]
    assert size > 0
    # Room for two checkpoints and a half: three never fit.
    budget = int(size * 2.5)
    write_policy(tmp_path / "policy.yaml", ret_app.name, f"{{max_total_size: {budget}}}")

    logs = ""
    for _ in range(4):
        newest, log = checkpoint(policy)
        logs += log
        report = dry_run(policy)
        ours = [row for row in report["checkpoints"] if row["origin"] == "target"]

        assert newest in ret_app.checkpoints()
        assert newest == ours[0]["name"]
        assert sum(row["size_bytes"] for row in ours) <= budget
        assert 2 == len(ours)

    assert first not in ret_app.checkpoints()
    assert "over size budget" in logs
    assert [] == report["budget_unmet"]


def test_pins_and_foreign_checkpoints_survive_and_the_table_says_why(
    ret_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", ret_app.name, "{}")
    oldest, _ = checkpoint(policy)
    middle, _ = checkpoint(policy)
    newest, _ = checkpoint(policy)
    time.sleep(GAP_S)
    docker("checkpoint", "create", "--leave-running", ret_app.name, "by-hand")
    pinned = run_ckptd("pin", "--config", str(policy), "it", oldest)
    assert 0 == pinned.returncode, pinned.stderr
    write_policy(tmp_path / "policy.yaml", ret_app.name, "{keep_last: 1}")

    table = run_ckptd("prune", "--config", str(policy), "--dry-run")

    assert 0 == table.returncode, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[2:] if line.strip()}
    assert rows[newest].endswith("kept     last, newest good")
    assert rows[middle].endswith("deleted  no rule keeps it")
    assert rows[oldest].endswith("kept     pinned")
    assert rows["by-hand"].endswith("kept     not ckptd's")
    assert {oldest, middle, newest, "by-hand"} <= set(ret_app.checkpoints())

    applied = run_ckptd("prune", "--config", str(policy))

    assert 0 == applied.returncode, applied.stderr
    assert f"deleted {middle}" in applied.stdout.splitlines()
    assert {oldest, newest, "by-hand"} == set(ret_app.checkpoints())

    assert 0 == run_ckptd("unpin", "--config", str(policy), "it", oldest).returncode
    assert 0 == run_ckptd("prune", "--config", str(policy)).returncode
    assert {newest, "by-hand"} == set(ret_app.checkpoints())


def test_pin_refuses_a_checkpoint_the_target_does_not_have(
    ret_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", ret_app.name, "{}")

    missing = run_ckptd("pin", "--config", str(policy), "it", "ckptd-it-20260101T000000Z")
    foreign = run_ckptd("pin", "--config", str(policy), "it", "by-hand")

    assert 1 == missing.returncode
    assert "has no checkpoint" in missing.stderr
    assert 1 == foreign.returncode
    assert "not a checkpoint name of target 'it'" in foreign.stderr


def test_too_little_free_disk_skips_the_checkpoint_as_disk_space(
    ret_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", ret_app.name, "{}")
    kept, _ = checkpoint(policy)
    # No disk here has a pebibyte free, so nothing the rules let go would be enough either.
    write_policy(
        tmp_path / "policy.yaml", ret_app.name, "{}", daemon="min_free_disk: 1PiB", every="2s"
    )
    port = int(policy.read_text().split("127.0.0.1:")[1].split()[0])

    refused = run_ckptd("checkpoint", "--config", str(policy), "it")

    assert 1 == refused.returncode
    assert "B free, 1PiB needed" in refused.stderr
    assert '"reason": "disk_space"' in refused.stderr
    assert [kept] == ret_app.checkpoints()

    stderr = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([*CKPTD, "run", "--config", str(policy)], stderr=stderr, text=True)
    try:
        metrics = wait_for_metrics(port, daemon)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failures = sample(
                metrics, "ckptd_checkpoint_failures_total", ret_app.name, reason="disk_space"
            )
            if failures >= 1:
                break

            time.sleep(0.5)
            metrics = wait_for_metrics(port, daemon)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        stderr.close()

    assert 1 <= failures
    assert 1 == sample(metrics, "ckptd_retention_budget_unmet", ret_app.name)
    assert [kept] == ret_app.checkpoints()


def test_other_targets_and_future_dated_checkpoints_are_never_deleted(
    ret_app: AppContainer, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", ret_app.name, "{keep_last: 1}")
    # As if the clock had been years ahead when these were made, and another target's.
    future = "ckptd-it-20991231T235959Z"
    theirs = "ckptd-other-20260101T000000Z"
    for name in (future, theirs):
        time.sleep(GAP_S)
        docker("checkpoint", "create", "--leave-running", ret_app.name, name)

    older, _ = checkpoint(policy)
    newest, _ = checkpoint(policy)

    report = by_name(dry_run(policy))

    # Outside the rules: keep_last 1 counts only the real timeline.
    assert ["future-dated"] == report[future]["reasons"]
    assert ["last", "newest good"] == report[newest]["reasons"]
    assert ["other target"] == report[theirs]["reasons"]
    assert older not in report
    assert {future, theirs, newest} == set(ret_app.checkpoints())
