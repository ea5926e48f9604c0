"""systemd/ckptd.service: systemd accepts it, and it asks for what ckptd provides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ckptd.restore import CONTAINERD_TMP

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "ckptd.service"
INSTALLED = "/usr/local/bin/ckptd"


def directives() -> dict[str, list[str]]:
    """Return every `Key=value` of the unit, keyed by section.key, repeated keys in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        message = "systemd-analyze missing (Debian's systemd package; `make unit` installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)

    # verify checks that ExecStart's program exists: point it at this checkout's ckptd.
    ckptd = Path(sys.executable).with_name("ckptd")
    unit = tmp_path / "ckptd.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(ckptd)))
    # With the folder first on the unit path, verify also reads (and checks) the drop-in.
    shutil.copytree(UNIT.with_name("ckptd.service.d"), tmp_path / "ckptd.service.d")
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )

    # verify only warns (exit 0) about unknown keys and bad values, so any output is a failure.
    assert (0, "", "") == (result.returncode, result.stdout, result.stderr)


def test_verify_reads_the_runc_engine_drop_in(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze missing")

    unit = tmp_path / "ckptd.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(Path(sys.executable))))
    drop_in = tmp_path / "ckptd.service.d" / "runc-engine.conf"
    drop_in.parent.mkdir()
    text = UNIT.with_name("ckptd.service.d").joinpath("runc-engine.conf").read_text()
    drop_in.write_text(text.replace("RestrictNamespaces=no", "RestrictNamespaces=perhaps"))
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    assert "runc-engine.conf" in result.stderr


def test_verify_reports_a_bad_directive(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze missing")

    ckptd = Path(sys.executable).with_name("ckptd")
    unit = tmp_path / "ckptd.service"
    text = UNIT.read_text().replace(INSTALLED, str(ckptd))
    unit.write_text(text.replace("ProtectHome=yes", "ProtectHome=perhaps"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert "ProtectHome" in result.stderr or "protect home" in result.stderr


def test_the_unit_runs_ckptd_the_way_ckptd_expects() -> None:
    found = directives()
    assert ["notify"] == found["Service.Type"]
    assert [f"{INSTALLED} check-config /etc/ckptd/policy.yaml"] == found["Service.ExecStartPre"]
    assert [f"{INSTALLED} run --config /etc/ckptd/policy.yaml"] == found["Service.ExecStart"]
    assert ["/bin/kill -HUP $MAINPID"] == found["Service.ExecReload"]
    assert ["on-failure"] == found["Service.Restart"]
    assert "Service.WatchdogSec" in found
    assert "docker.service" in found["Unit.After"][0].split()
    assert ["docker.service"] == found["Unit.BindsTo"]
    assert ["ckptd"] == found["Service.StateDirectory"]  # /var/lib/ckptd, the default state_dir


def test_ckptd_sees_and_may_clean_containerds_unpacked_restore_copies() -> None:
    # After a restore of its own, ckptd removes containerd's ctrd-checkpoint* copy from the
    # host's /tmp (ckptd.restore); a private /tmp would hide it.
    found = directives()
    writable = [path for line in found["Service.ReadWritePaths"] for path in line.split()]
    assert ["no"] == found.get("Service.PrivateTmp", ["no"])
    assert str(CONTAINERD_TMP) in writable
