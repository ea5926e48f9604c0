"""ckptd's exit statuses: documented and stable, so scripts and systemd can act on them."""

from __future__ import annotations

from enum import IntEnum

from ckptd.errors import CkptdError, EngineNotReadyError, PolicyError, UsageError


class ExitCode(IntEnum):
    """What a ckptd command's exit status means."""

    OK = 0
    # The command ran and its operation failed (a checkpoint, a missing daemon, a failed check).
    FAILED = 1
    # Bad usage (argparse's own status) or a policy file that cannot be used.
    USAGE = 2
    # The engine cannot be reached or cannot checkpoint at all (EngineNotReadyError).
    ENGINE_UNAVAILABLE = 3


def exit_code_for(error: CkptdError) -> ExitCode:
    """Return the exit status for a command that ended with ``error``."""
    if isinstance(error, PolicyError | UsageError):
        return ExitCode.USAGE

    if isinstance(error, EngineNotReadyError):
        return ExitCode.ENGINE_UNAVAILABLE

    return ExitCode.FAILED
