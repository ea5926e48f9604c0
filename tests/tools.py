"""Finding the external programs some tests run (promtool, prometheus).

`make test` installs them (scripts/setup-prometheus.sh). Like the engine tests, a test that needs
one fails under CI=true when it is missing and skips elsewhere, so CI never passes without it.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Return the path of program ``name``; fail in CI, skip elsewhere, when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path

    message = f"{name} not found on PATH (scripts/setup-prometheus.sh installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message + "; run `make test`, which sets it up")
