"""`make install DESTDIR=...` stages a tree that runs at PREFIX once moved there (needs PyPI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Return (staging root, final prefix) after `make install` staged ckptd and was moved."""
    base = tmp_path_factory.mktemp("install")
    stage = base / "stage"
    prefix = base / "final" / "opt" / "ckptd"
    result = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"DESTDIR={stage}", f"PREFIX={prefix}"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert 0 == result.returncode, result.stdout + result.stderr

    # What a package manager does: the staged PREFIX lands at PREFIX, the staging folder goes.
    prefix.parent.mkdir(parents=True)
    shutil.move(str(stage / prefix.relative_to("/")), prefix)

    return stage, prefix


def test_the_moved_venv_runs(staged: tuple[Path, Path]) -> None:
    stage, prefix = staged
    result = subprocess.run(
        [str(prefix / "bin" / "ckptd"), "--version"], capture_output=True, text=True, timeout=60
    )

    assert (0, "ckptd 0.1.0\n") == (result.returncode, result.stdout)
    assert f"#!{prefix}/bin/python" in (prefix / "bin" / "ckptd").read_text()


def test_no_file_of_the_venv_names_the_staging_folder(staged: tuple[Path, Path]) -> None:
    stage, prefix = staged
    named = [
        str(path)
        for path in prefix.rglob("*")
        if path.is_file() and not path.is_symlink() and str(stage).encode() in path.read_bytes()
    ]

    assert [] == named


def test_a_python_under_a_home_folder_is_bound_back_into_the_unit(
    staged: tuple[Path, Path],
) -> None:
    stage, prefix = staged
    base = os.path.realpath(sys.base_prefix)
    drop_in = stage / "etc/systemd/system/ckptd.service.d/python-home.conf"
    hidden = [
        path
        for path in (base, str(prefix))
        if path.startswith(("/root/", "/home/", "/run/user/")) or path in ("/root", "/home")
    ]

    if not hidden:
        assert not drop_in.exists()
        return

    text = drop_in.read_text()
    assert "ProtectHome=tmpfs" in text
    assert f"BindReadOnlyPaths={' '.join(hidden)}" in text

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing (`make systemd-tools` installs it)")

    # systemd reads the drop-in with the unit it extends; verify then checks both.
    unit_dir = stage / "etc/systemd/system"
    unit = unit_dir / "ckptd.service"
    unit.write_text(unit.read_text().replace("/usr/local/bin/ckptd", str(prefix / "bin/ckptd")))
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
    )
    assert (0, "", "") == (result.returncode, result.stdout, result.stderr)
