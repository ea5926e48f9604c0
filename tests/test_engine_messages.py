"""How the engine module words the engine's errors: hints only where they help."""

from __future__ import annotations

import pytest
from docker.errors import APIError

from ckptd.engine import CRIU_HINT, _explain


@pytest.mark.parametrize(
    "message",
    [
        'exec: "criu": executable file not found in $PATH',
        "criu failed: Unexpected rt vDSO area bounds",
        "criu failed: type NOTIFY errno 0 sockets: Can't get 1:16 opt",
    ],
)
def test_a_missing_or_unfit_criu_gets_the_set_up_hint(message: str) -> None:
    assert _explain(APIError(message)).endswith(CRIU_HINT)


def test_criu_refusing_one_container_gets_no_set_up_hint() -> None:
    message = "criu failed: type NOTIFY errno 0\nlog file: /run/containerd/x/criu-dump.log"

    assert message == _explain(APIError(message))
