"""Bad names and unsafe policy files: rejected with a clear message, never turned into paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckptd.catalog import Catalog
from ckptd.cli import main
from ckptd.engine import _check_checkpoint_name, _check_container_ref
from ckptd.errors import CheckpointFailedError, ContainerNotFoundError, PolicyError
from ckptd.naming import make_checkpoint_name
from ckptd.policy import load_policy

BAD_NAMES = ["a/b", "../etc", "..", "a b", "tab\there", "nl\nx", "bell\x07", "x" * 300, "é", ""]


def write(path: Path, container: str = "app", name: str = "t", mode: int = 0o600) -> Path:
    path.write_text(
        f"targets:\n  - name: {name!r}\n    container: {container!r}\n    schedule: {{every: 5m}}\n"
    )
    path.chmod(mode)
    return path


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_container_names_are_rejected_with_their_key(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path / "p.yaml", container=bad))

    assert "targets[0].container" in str(caught.value)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_target_names_are_rejected_with_their_key(tmp_path: Path, bad: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path / "p.yaml", name=bad))

    assert "targets[0].name" in str(caught.value)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_the_engine_refuses_refs_that_could_leave_the_api_path(bad: str) -> None:
    with pytest.raises(ContainerNotFoundError):
        _check_container_ref(bad)

    with pytest.raises(CheckpointFailedError):
        _check_checkpoint_name("app", bad)


def test_every_name_ckptd_makes_is_a_plain_folder_name() -> None:
    from datetime import UTC, datetime

    name = make_checkpoint_name("a.b_c", datetime.now(UTC), set())
    _check_checkpoint_name("app", name)
    assert "/" not in name and ".." not in name


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o777])
def test_a_policy_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "p.yaml", mode=mode)

    with pytest.raises(PolicyError, match="chmod go-w"):
        load_policy(path)


def test_check_config_refuses_a_group_writable_policy_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "p.yaml", mode=0o664)

    assert 2 == main(["check-config", str(path)])
    assert "writable by its group or by other users" in capsys.readouterr().err
    path.chmod(0o644)
    assert 0 == main(["check-config", str(path)])


def test_the_state_folder_and_catalog_are_private(tmp_path: Path) -> None:
    Catalog(tmp_path / "deep" / "state")

    assert 0o700 == (tmp_path / "deep" / "state").stat().st_mode & 0o777


def test_no_module_of_ckptd_runs_a_shell() -> None:
    source = Path(__file__).resolve().parents[1] / "ckptd"
    for module in source.glob("*.py"):
        text = module.read_text()
        assert "shell=True" not in text, module
        assert "os.system(" not in text, module
        assert "os.popen(" not in text, module


def test_ckptd_as_an_operator_runs_it_refuses_too(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", mode=0o666)
    ckptd = str(Path(sys.executable).with_name("ckptd"))

    done = subprocess.run([ckptd, "check-config", str(path)], capture_output=True, text=True)

    assert 2 == done.returncode
    assert "chmod go-w" in done.stderr
    assert "Traceback" not in done.stderr
    assert os.access(path, os.R_OK)


def test_a_double_dot_inside_a_target_name_stays_inside_one_folder_name(tmp_path: Path) -> None:
    # Accepted (the README says why): a target name only ever appears inside a checkpoint name.
    from datetime import UTC, datetime

    (target,) = load_policy(write(tmp_path / "p.yaml", name="x..y")).targets
    name = make_checkpoint_name(target.name, datetime.now(UTC), set())
    _check_checkpoint_name("app", name)

    assert name.startswith("ckptd-x..y-")
    assert tmp_path == (tmp_path / name).resolve().parent
