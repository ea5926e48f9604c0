"""restore and export refuse bad usage with a clear message, before touching the engine."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ckptd.archive import check_output, export_entry, read_manifest
from ckptd.cli import main
from ckptd.errors import UsageError
from ckptd.store import Store
from tests.test_store import make_entry


def write_policy(tmp_path: Path) -> Path:
    """Write a one-target policy whose store is under ``tmp_path``."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "daemon:\n"
        f"  state_dir: {tmp_path / 'state'}\n"
        f"  store: {tmp_path / 'store'}\n"
        "targets:\n"
        "  - name: web\n"
        "    container: web-1\n"
        "    schedule: {every: 1h}\n"
    )
    policy.chmod(0o600)
    return policy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("banana", "'banana' is not a duration; expected whole seconds"),
        ("0s", "'0s' leaves the restore no time; expected a duration longer than zero"),
        ("0", "'0' leaves the restore no time"),
    ],
)
def test_a_bad_restore_timeout_is_bad_usage_naming_the_option(
    value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["restore", "web", "--into", "x", "--timeout", value])

    stderr = capsys.readouterr().err
    assert 2 == caught.value.code
    assert f"ckptd restore: error: argument --timeout: {expected}" in stderr, stderr


def test_restore_of_a_name_that_is_no_target_nor_stored_container_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path)

    status = main(["restore", "--config", str(policy), "nosuch"])

    stderr = capsys.readouterr().err
    assert 2 == status
    assert (
        f"'nosuch' is neither a target of the policy {policy} (its targets: web) nor a "
        f"container with checkpoints in the store {tmp_path / 'store'}"
    ) in stderr
    assert "no any" not in stderr


@pytest.mark.parametrize("where", ["missing/dir/x.tar.zst", "exists.tar.zst"])
def test_export_to_a_missing_folder_or_an_existing_file_is_refused(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path)
    (tmp_path / "exists.tar.zst").write_bytes(b"keep me")

    status = main(["export", "--config", str(policy), "web", "latest", "-o", str(tmp_path / where)])

    stderr = capsys.readouterr().err
    assert 2 == status
    assert "Traceback" not in stderr
    assert ("does not exist" if "missing" in where else "pass --force to overwrite it") in stderr
    assert b"keep me" == (tmp_path / "exists.tar.zst").read_bytes()


def test_an_export_is_private_and_overwrites_only_when_forced(tmp_path: Path) -> None:
    entry = make_entry(Store(tmp_path / "store"))
    out = tmp_path / "x.tar.zst"

    export_entry(entry, out)

    assert 0o600 == stat.S_IMODE(out.stat().st_mode)
    assert entry.checkpoint == read_manifest(out)["checkpoint"]

    with pytest.raises(UsageError, match="pass --force"):
        export_entry(entry, out)

    out.chmod(0o644)
    export_entry(entry, out, force=True)

    assert 0o600 == stat.S_IMODE(out.stat().st_mode)
    assert [out] == list(tmp_path.glob("x.tar.zst*"))


@pytest.mark.parametrize("kind", ["device", "folder"])
def test_force_never_replaces_what_is_not_a_file(tmp_path: Path, kind: str) -> None:
    out = Path("/dev/null") if kind == "device" else tmp_path

    with pytest.raises(UsageError, match="not a regular file"):
        check_output(out, force=True)
