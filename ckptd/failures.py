"""Why a checkpoint failed: the engine's text turned into a small fixed set of reasons.

Docker 20.10 answers almost every checkpoint failure with HTTP 500 and the cause only in its
message, so the reason is read from that text. CRIU's own log is named in the message (containerd
copies it to ``<bundle>/criu-dump.log``) and goes away with the container's task, so the
excerpt is taken at once, while the failure is handled.
"""

from __future__ import annotations

import re
from pathlib import Path

from ckptd.errors import (
    CheckpointFailedError,
    CkptdError,
    ContainerNotFoundError,
    ContainerNotRunningError,
    DiskSpaceError,
    EngineNotReadyError,
    HookFailedError,
    UnsafeExitError,
)

# A closed set, so the metrics label stays bounded; each series starts at 0.
FAILURE_REASONS = (
    "engine_unavailable",
    "container_not_found",
    "container_not_running",
    "criu_failed",
    "disk_space",
    "name_conflict",
    "content_race",
    "timeout",
    "cancelled",
    "exit_refused",
    "checkpoint_failed",
    "hook_failed",
)

# Where containerd says it put CRIU's log: "... path= /run/containerd/.../criu-dump.log: ...".
_CRIU_LOG_PATH = re.compile(r"path=\s*(/\S+?\.log)\b")
_CONTENT_RACE = re.compile(r"content sha256:[0-9a-f]+.*already exists")
_NAME_CONFLICT = re.compile(r"checkpoint with name \S+ already exists")
_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded|ENOSPC", re.IGNORECASE)
_NOT_RUNNING = re.compile(r"(is )?not running", re.IGNORECASE)
# The lines of a CRIU log that say what went wrong, and how many closing lines to keep.
_CRIU_PROBLEM = re.compile(r"\b(Error|Warn)\b")
_CRIU_TAIL_LINES = 15
MAX_EXCERPT_CHARS = 16_384


def failure_reason(error: CkptdError) -> str:
    """Return which of FAILURE_REASONS explains ``error`` (and CRIU's log, when it has one)."""
    if isinstance(error, ContainerNotFoundError):
        return "container_not_found"

    if isinstance(error, ContainerNotRunningError):
        return "container_not_running"

    if isinstance(error, UnsafeExitError):
        return "exit_refused"

    if isinstance(error, EngineNotReadyError):
        return "engine_unavailable"

    if isinstance(error, DiskSpaceError):
        return "disk_space"

    if isinstance(error, HookFailedError):
        return "hook_failed"

    if not isinstance(error, CheckpointFailedError):
        return "checkpoint_failed"

    return _reason_from_text(error.reason, error.criu_log or "")


def _reason_from_text(message: str, criu_log: str) -> str:
    """Return the reason the engine's ``message`` and CRIU's log give, most specific first."""
    if "no answer within" in message:
        return "timeout"

    if _NO_SPACE.search(message) or _NO_SPACE.search(criu_log):
        return "disk_space"

    if _CONTENT_RACE.search(message):
        return "content_race"

    if _NAME_CONFLICT.search(message):
        return "name_conflict"

    if "criu" in message.lower():
        return "criu_failed"

    if _NOT_RUNNING.search(message):
        return "container_not_running"

    if "context canceled" in message:
        return "cancelled"

    return "checkpoint_failed"


def criu_log_path(message: str) -> Path | None:
    """Return the CRIU log the engine's ``message`` names, or None."""
    match = _CRIU_LOG_PATH.search(message)

    return None if match is None else Path(match[1])


def read_criu_excerpt(message: str) -> str | None:
    """Return the telling part of the CRIU log named in ``message``: its problem lines and end.

    Returns None when the message names no log or the log is gone already.
    """
    path = criu_log_path(message)

    if path is None:
        return None

    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None

    return excerpt(text)


def excerpt(log_text: str) -> str:
    """Return CRIU's error and warning lines, then its last lines, bounded in size."""
    lines = log_text.splitlines()
    tail_start = max(0, len(lines) - _CRIU_TAIL_LINES)
    problems = [line for line in lines[:tail_start] if _CRIU_PROBLEM.search(line)]
    kept = [*problems, *(["..."] if problems else []), *lines[tail_start:]]

    return "\n".join(kept)[-MAX_EXCERPT_CHARS:]
