"""Failure classification from the engine's text, and the CRIU log excerpt."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptd.errors import (
    CheckpointFailedError,
    ContainerNotFoundError,
    ContainerNotRunningError,
    EngineNotReadyError,
    UnsafeExitError,
)
from ckptd.failures import (
    FAILURE_REASONS,
    criu_log_path,
    excerpt,
    failure_reason,
    read_criu_excerpt,
)
from ckptd.metrics import FAILURE_REASONS as METRIC_REASONS

BUNDLE = "/run/containerd/io.containerd.runtime.v2.task/moby/e8df5214"
# Docker 20.10's answers, as seen on this engine.
CRIU_FAILED = (
    "Cannot checkpoint container c: runc did not terminate successfully: exit status 1: "
    f"criu failed: type NOTIFY errno 0 path= {BUNDLE}/criu-dump.log: unknown"
)
CONTENT_RACE = (
    "failed to upload checkpoint to containerd: commit failed: content sha256:"
    "4f1c0e2b9d5e: already exists"
)


@pytest.mark.parametrize(
    ("expected", "message", "criu_log"),
    [
        ("criu_failed", CRIU_FAILED, None),
        ("disk_space", CRIU_FAILED, "Error (criu/image.c:1): write: No space left on device"),
        ("disk_space", "write /var/lib/docker/x: no space left on device", None),
        ("content_race", CONTENT_RACE, None),
        ("name_conflict", "checkpoint with name ckptd-a-1 already exists for container c", None),
        ("container_not_running", "Container c not running", None),
        ("timeout", "no answer within 900 s", None),
        ("cancelled", "context canceled", None),
        ("checkpoint_failed", "something else entirely", None),
    ],
)
def test_engine_messages_map_to_reasons(expected: str, message: str, criu_log: str | None) -> None:
    error = CheckpointFailedError("c", "ckptd-a-1", message)
    error.criu_log = criu_log

    assert expected == failure_reason(error)


@pytest.mark.parametrize(
    ("expected", "error"),
    [
        ("container_not_found", ContainerNotFoundError("c")),
        ("container_not_running", ContainerNotRunningError("c")),
        ("engine_unavailable", EngineNotReadyError("down")),
        ("exit_refused", UnsafeExitError("t", "c", "restart policy")),
    ],
)
def test_error_classes_map_to_reasons(expected: str, error: Exception) -> None:
    assert expected == failure_reason(error)  # type: ignore[arg-type]


def test_every_reason_is_a_metric_label_including_retentions_disk_space() -> None:
    assert FAILURE_REASONS == METRIC_REASONS
    assert "disk_space" in FAILURE_REASONS
    assert len(set(FAILURE_REASONS)) == len(FAILURE_REASONS)


def test_the_criu_log_is_found_in_the_engine_message() -> None:
    assert Path(f"{BUNDLE}/criu-dump.log") == criu_log_path(CRIU_FAILED)
    assert criu_log_path("no path here") is None


def test_the_excerpt_keeps_errors_and_the_end(tmp_path: Path) -> None:
    lines = [f"(00.{n:06d}) line {n}" for n in range(200)]
    lines[20] = "(00.000020) Error (criu/file-lock.c:110): Some file locks are hold"
    log = tmp_path / "criu-dump.log"
    log.write_text("\n".join(lines))

    text = read_criu_excerpt(f"criu failed: path= {log}: unknown")

    assert text is not None
    assert text.startswith(lines[20])
    assert text.endswith("line 199")
    assert "line 100" not in text
    assert read_criu_excerpt(f"path= {tmp_path}/gone.log: x") is None
    assert len(excerpt("Error x\n" * 10_000)) <= 16_384
