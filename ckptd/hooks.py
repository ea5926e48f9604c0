"""Application hooks: commands run inside the container right before and after a dump.

Each command is an argv list handed to the engine's exec API as it is, so no shell sits between
the policy and the command (a hook that wants one names it: ``[sh, -c, ...]``).
"""

from __future__ import annotations

import os
import signal
import time

import structlog

from ckptd.engine import EngineCalls
from ckptd.errors import HookFailedError
from ckptd.policy import Hooks

log = structlog.get_logger("ckptd.hooks")


__all__ = ["HookFailedError", "run_hooks"]


def run_hooks(calls: EngineCalls, container: str, hooks: Hooks, phase: str) -> list[str]:
    """Run the ``phase`` ("pre" or "post") commands in order; return the problems seen.

    Raises HookFailedError at the first failing pre hook when ``on_error`` is abort, so the dump
    is skipped. Post hooks run after a dump that already happened, so their failures (like every
    failure under ``continue``) are only returned and logged.
    """
    commands = hooks.pre if phase == "pre" else hooks.post
    timeout_s = hooks.timeout.total_seconds()
    problems: list[str] = []

    for command in commands:
        started = time.monotonic()
        result = calls.exec(container, command, timeout_s)
        seconds = round(time.monotonic() - started, 3)
        problem = None

        if result.timed_out:
            _kill(result.pid)
            problem = f"timed out after {timeout_s:g} s"
        elif result.exit_code != 0:
            problem = f"exited with status {result.exit_code}: {result.output.strip()[-200:]}"

        if problem is None:
            log.info("hook_done", phase=phase, command=command, seconds=seconds)
            continue

        log.warning("hook_failed", phase=phase, command=command, problem=problem)

        if hooks.on_error == "abort" and phase == "pre":
            raise HookFailedError(phase, command, problem)

        problems.append(f"{command!r} {problem}")

    return problems


def _kill(pid: int) -> None:
    """End a timed-out hook's process (the engine has no call to stop an exec)."""
    if pid <= 0:
        return

    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError) as error:
        log.warning("hook_not_killed", pid=pid, error=str(error))
