"""The errors ckptd reports to its operator; each builds its message from identifiers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptd.sizes import format_size


class CkptdError(Exception):
    """Base of every error ckptd reports to the operator without a traceback."""


class UsageError(CkptdError):
    """A command line that names something that does not exist (a target, a checkpoint)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a policy file: where, what was found, what was expected."""

    location: str
    message: str
    value: Any = None
    line: int | None = None

    def render(self) -> str:
        """Return the problem as one line for a terminal."""
        where = self.location or "(top level)"
        if self.line is not None:
            where = f"line {self.line}: {where}"

        shown = "" if self.value is None else f" (got {yaml_value(self.value)})"
        return f"{where}: {self.message}{shown}"


def yaml_value(value: Any) -> str:
    """Return a policy value as its YAML author wrote it: true, null, 'text', [1, 2].

    A mapping is named by its keys (a whole target would not fit on one line).
    """
    if isinstance(value, bool):
        return "true" if value else "false"

    if value is None:
        return "null"

    if isinstance(value, str):
        return repr(value)

    if isinstance(value, dict):
        keys = ", ".join(str(key) for key in value)
        return f"a mapping with keys {keys}" if value else "an empty mapping"

    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"

    return str(value)


class PolicyError(CkptdError):
    """A policy file that cannot be used; carries every problem found, not just the first."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {len(problems)} problem(s)"]
        lines += [f"  - {problem.render()}" for problem in problems]
        super().__init__("\n".join(lines))


class EngineError(CkptdError):
    """The Docker engine refused or failed a request."""


class EngineNotReadyError(EngineError):
    """The engine cannot checkpoint at all (unreachable, not experimental, no CRIU)."""


class ContainerNotFoundError(EngineError):
    """A target's container does not exist (any more)."""

    def __init__(self, container: str) -> None:
        self.container = container
        super().__init__(f"container {container!r} not found")


class CheckpointFailedError(EngineError):
    """The engine failed to create a checkpoint; the message carries the engine's reason."""

    def __init__(self, container: str, checkpoint: str, reason: str) -> None:
        self.container = container
        self.checkpoint = checkpoint
        self.reason = reason
        # Set by the checkpointer once it has copied CRIU's log (which the engine soon deletes).
        self.criu_log: str | None = None
        super().__init__(f"checkpoint {checkpoint!r} of container {container!r} failed: {reason}")


class ContainerNotRunningError(EngineError):
    """A target's container exists but is not running, so there is nothing to checkpoint."""

    def __init__(self, container: str) -> None:
        self.container = container
        super().__init__(f"container {container!r} is not running; nothing to checkpoint")


class UnsafeExitError(CkptdError):
    """A checkpoint that stops the container was refused: the engine would undo or delete it."""

    def __init__(self, target: str, container: str, why: str) -> None:
        self.target = target
        self.container = container
        super().__init__(
            f"target {target!r}: refusing leave_running: false on container {container!r}: {why}"
        )


class DiskSpaceError(CkptdError):
    """Too little free disk for the next checkpoint, even after pruning what the rules let go."""

    def __init__(self, container: str, free: int, needed: int) -> None:
        self.container = container
        self.free = free
        self.needed = needed
        super().__init__(
            f"not checkpointing container {container!r}: {format_size(free)} free, "
            f"{format_size(needed)} needed "
            "(min_free_disk plus the estimated size of the checkpoint)"
        )


class HookFailedError(CkptdError):
    """A pre hook failed or timed out and the policy says to abort the checkpoint."""

    def __init__(self, phase: str, command: list[str], problem: str) -> None:
        self.phase = phase
        self.command = command
        super().__init__(f"{phase} hook {command!r} {problem}; checkpoint skipped")
