"""Exit statuses of the CLI: 0 ok, 1 operation failed, 2 bad usage or policy, 3 no engine."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from ckptd import cli
from ckptd.errors import (
    CheckpointFailedError,
    CkptdError,
    ContainerNotFoundError,
    EngineNotReadyError,
    PolicyError,
    Problem,
)
from ckptd.exitcodes import ExitCode, exit_code_for
from ckptd.progress import Spinner

EXAMPLE_POLICY = Path(__file__).parent.parent / "config" / "policy.example.yaml"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PolicyError("p.yaml", [Problem("targets", "required key is missing")]), 2),
        (EngineNotReadyError("cannot reach the Docker engine"), 3),
        (CheckpointFailedError("c", "ckptd-t-1", "criu failed"), 1),
        (ContainerNotFoundError("c"), 1),
        (CkptdError("anything else"), 1),
    ],
)
def test_exit_code_for_each_error(error: CkptdError, expected: int) -> None:
    assert expected == exit_code_for(error)


def test_the_codes_are_stable() -> None:
    assert [0, 1, 2, 3] == [code.value for code in ExitCode]


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["no-such-command"])
    assert 2 == exited.value.code


def test_a_broken_policy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("targets: []\n")
    assert 2 == cli.main(["check-config", str(policy)])
    assert "targets" in capsys.readouterr().err


def test_an_unreachable_engine_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert 3 == cli.main(["list"])
    assert str(tmp_path / "no-engine.sock") in capsys.readouterr().err


def test_an_unknown_target_is_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("targets:\n  - {name: a, container: c, schedule: {every: 1m}}\n")
    policy.chmod(0o600)
    assert 2 == cli.main(["checkpoint", "--config", str(policy), "no-such-target"])
    assert "no target named 'no-such-target'" in capsys.readouterr().err


def test_a_failed_operation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == cli.main(["status", "--socket", str(tmp_path / "absent.sock")])
    assert "not running" in capsys.readouterr().err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        with pytest.raises(SystemExit) as exited:
            cli.main([name, "--help"])
        assert 0 == exited.value.code
        assert f"usage: ckptd {name}" in capsys.readouterr().out


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_spinner_shows_elapsed_time_on_a_terminal_only() -> None:
    terminal = FakeTerminal()
    with Spinner("checkpoint of solver", terminal) as spinner:
        while "checkpoint of solver" not in terminal.getvalue():
            pass
    assert spinner.enabled
    assert terminal.getvalue().rstrip().endswith("s")
    assert "checkpoint of solver done in" in terminal.getvalue()

    pipe = io.StringIO()
    with Spinner("checkpoint of solver", pipe):
        pass
    assert "" == pipe.getvalue()


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    # The read end is closed before ckptd has even started, so its first print finds no reader.
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("ckptd")), "check-config", str(EXAMPLE_POLICY)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)

    assert 141 == process.returncode, stderr
    assert b"Traceback" not in stderr
