"""`ckptd doctor`'s verdicts on what an engine reports, with a stand-in for the engine."""

from __future__ import annotations

from typing import Any

import pytest

from ckptd.doctor import _last_line, _version_tuple, render_report, run_doctor
from ckptd.errors import EngineNotReadyError


def fake_engine(version: dict[str, Any], info: dict[str, Any], local: bool = False) -> type:
    """Return an Engine stand-in answering /version and /info with these documents."""

    class FakeEngine:
        address = "tcp://engine.example:2376"
        is_local = local

        def info(self) -> tuple[dict[str, Any], dict[str, Any]]:
            return version, info

    return FakeEngine


GOOD_VERSION = {"Version": "20.10.24", "ApiVersion": "1.41", "Experimental": True}
GOOD_INFO = {"KernelVersion": "6.18", "CgroupVersion": "2", "DefaultRuntime": "runc"}


def statuses(report: Any) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def test_a_remote_experimental_engine_passes_and_skips_the_host_checks() -> None:
    report = run_doctor(fake_engine(GOOD_VERSION, GOOD_INFO))

    assert report.ok
    assert "skip" == statuses(report)["criu"]
    assert "checkpointing can work" in render_report(report)


@pytest.mark.parametrize(
    ("version", "info", "failing"),
    [
        ({**GOOD_VERSION, "Experimental": False}, GOOD_INFO, "experimental"),
        ({**GOOD_VERSION, "ApiVersion": "1.24"}, GOOD_INFO, "api version"),
        (GOOD_VERSION, {**GOOD_INFO, "DefaultRuntime": "crun"}, "runc"),
    ],
)
def test_each_blocker_fails_with_a_fix(
    version: dict[str, Any], info: dict[str, Any], failing: str
) -> None:
    report = run_doctor(fake_engine(version, info))
    [check] = [check for check in report.checks if check.status == "fail"]

    assert failing == check.name
    assert check.fix
    assert not report.ok
    assert "fix: " in render_report(report)


def test_an_unreachable_engine_is_one_failed_line() -> None:
    class Unreachable:
        def __init__(self) -> None:
            raise EngineNotReadyError("cannot reach the Docker engine at unix:///x")

    report = run_doctor(Unreachable)  # type: ignore[arg-type]

    assert not report.engine_reachable
    assert ["engine"] == [check.name for check in report.checks]
    assert {"ok": False, "engine_reachable": False} == {
        k: v for k, v in report.as_json().items() if k != "checks"
    }


def test_versions_and_criu_messages_are_read_as_people_write_them() -> None:
    assert (4, 2, 1) == _version_tuple("4.2.1")
    assert (3, 17) == _version_tuple("3.17")
    line = "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work."
    assert "Dirty tracking is OFF. Memory snapshot will not work." == _last_line("x\n" + line)
