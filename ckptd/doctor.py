"""`ckptd doctor`: can this host checkpoint? One line per check, with the fix for a failure.

The engine is asked through `ckptd.engine`; CRIU and runc are the host's own programs, run
without a shell. A check that cannot pass makes checkpointing impossible (status "fail"); a
missing optional feature is a "warn"; checks of the host's programs are "skip"ped when the
engine is remote, since its CRIU and runc are on another machine.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ckptd.engine import CRIU_HINT, EXPERIMENTAL_HINT, Engine
from ckptd.errors import EngineNotReadyError

MIN_CRIU = (4, 2)
# The checkpoint endpoints appeared in Engine API 1.25.
MIN_API = (1, 25)
TOOL_TIMEOUT_S = 60
SBIN_PATH = ":/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # ok, fail, warn or skip
    detail: str
    fix: str = ""

    def render(self) -> str:
        """Return the check as one or two lines for a terminal."""
        line = f"[{self.status:>4}] {self.name:<16} {self.detail}"
        return f"{line}\n{'':23}fix: {self.fix}" if self.fix else line


@dataclass
class Report:
    """Every check, and whether the engine answered at all."""

    checks: list[Check]
    engine_reachable: bool

    @property
    def ok(self) -> bool:
        """True when nothing stands in the way of checkpointing."""
        return all(check.status != "fail" for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready mapping."""
        return {
            "ok": self.ok,
            "engine_reachable": self.engine_reachable,
            "checks": [asdict(check) for check in self.checks],
        }


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _run(*argv: str) -> tuple[int, str]:
    """Run a host program; return its exit status and combined output."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return 127, str(error)

    return done.returncode, (done.stdout + done.stderr).strip()


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    # CRIU prefixes messages with their level and source line: "Warn  (criu/cr-check.c:824): ".
    return re.sub(r"^\w+\s*\([^)]*\):\s*", "", lines[-1]) if lines else "(no output)"


def run_doctor(engine_factory: type[Engine] = Engine) -> Report:
    """Run every check and return the report (never raises for a failed check)."""
    try:
        engine = engine_factory()
        version, info = engine.info()
    except EngineNotReadyError as error:
        fix = "start dockerd (scripts/setup-engine.sh does) or point DOCKER_HOST at it"
        return Report([Check("engine", "fail", str(error), fix)], engine_reachable=False)

    checks = [
        Check(
            "engine",
            "ok",
            f"dockerd {version.get('Version', '?')} at {engine.address}",
        ),
        _api_check(str(version.get("ApiVersion", "0"))),
        _experimental_check(bool(version.get("Experimental") or info.get("ExperimentalBuild"))),
    ]
    checks += _host_checks(engine.is_local, info)
    return Report(checks, engine_reachable=True)


def _api_check(api: str) -> Check:
    if _version_tuple(api) < MIN_API:
        wanted = ".".join(map(str, MIN_API))
        return Check("api version", "fail", f"{api} (< {wanted})", "upgrade Docker")

    return Check("api version", "ok", api)


def _experimental_check(experimental: bool) -> Check:
    if not experimental:
        return Check(
            "experimental", "fail", "off: the engine refuses checkpoints", EXPERIMENTAL_HINT
        )

    return Check("experimental", "ok", "on")


def _host_checks(local: bool, info: dict[str, Any]) -> list[Check]:
    """Return the checks of CRIU, runc, the kernel and cgroups."""
    kernel = str(info.get("KernelVersion") or platform.release())
    checks = [
        Check("kernel", "ok", kernel),
        _cgroup_check(info),
        _runtime_check(info, local),
    ]
    if not local:
        why = "the engine is remote; run `ckptd doctor` on its host"
        return [*checks, Check("criu", "skip", why)]

    return checks + _criu_checks()


def _cgroup_check(info: dict[str, Any]) -> Check:
    version = str(info.get("CgroupVersion") or "")
    if not version:
        version = "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"

    driver = info.get("CgroupDriver", "?")
    return Check("cgroup", "ok", f"v{version}, driver {driver}")


def _runtime_check(info: dict[str, Any], local: bool) -> Check:
    default = str(info.get("DefaultRuntime", "?"))
    if default != "runc":
        return Check(
            "runc",
            "fail",
            f"default runtime is {default!r}; Docker checkpoints need runc",
            'set "default-runtime": "runc" in /etc/docker/daemon.json',
        )

    if not local:
        return Check("runc", "ok", "default runtime runc")

    runc = shutil.which("runc", path=os.environ.get("PATH", "") + SBIN_PATH)
    if runc is None:
        return Check("runc", "fail", "runc not found", "apt-get install runc")

    status, output = _run(runc, "--version")
    first = output.splitlines()[0] if output else "?"
    return Check("runc", "ok" if status == 0 else "fail", f"{runc}: {first}")


def _criu_checks() -> list[Check]:
    """Return CRIU's presence and version, `criu check`, and dirty-memory tracking."""
    criu = shutil.which("criu", path=os.environ.get("PATH", "") + SBIN_PATH)
    if criu is None:
        return [Check("criu", "fail", "no criu binary on PATH or in /usr/local/sbin", CRIU_HINT)]

    status, output = _run(criu, "--version")
    match = re.search(r"Version:\s*(\S+)", output)
    found = match[1] if match else _last_line(output)
    wanted = ".".join(map(str, MIN_CRIU))
    if status != 0 or _version_tuple(found)[:2] < MIN_CRIU:
        return [Check("criu", "fail", f"{criu}: {found} (need >= {wanted})", CRIU_HINT)]

    checks = [Check("criu", "ok", f"{criu} {found}")]
    if os.geteuid() != 0:
        why = "criu check needs root"
        return [*checks, Check("criu check", "fail", why, "run `ckptd doctor` as root")]

    status, output = _run(criu, "check")
    if status == 0:
        checks.append(Check("criu check", "ok", _last_line(output)))
    else:
        checks.append(Check("criu check", "fail", _last_line(output), CRIU_HINT))

    status, output = _run(criu, "check", "--feature", "mem_dirty_track")
    if status == 0:
        checks.append(Check("dirty tracking", "ok", "on: incremental pre-dumps possible"))
    else:
        checks.append(
            Check(
                "dirty tracking",
                "warn",
                f"{_last_line(output)}: no incremental pre-dumps; every checkpoint is full",
                "a kernel with CONFIG_MEM_SOFT_DIRTY (not needed for full checkpoints)",
            )
        )

    return checks


def render_report(report: Report) -> str:
    """Return the report as text, with a closing verdict."""
    lines = [check.render() for check in report.checks]
    verdict = "checkpointing can work" if report.ok else "checkpointing cannot work here"
    return "\n".join([*lines, f"ckptd doctor: {verdict}"])
