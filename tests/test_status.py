"""The status book, its table, and the control socket it is served on (a real Unix socket)."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ckptd.control import ControlServer, DaemonNotRunningError, query
from ckptd.errors import CkptdError
from ckptd.status import StatusBook, format_age, format_size, render_status

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def book_with_history() -> StatusBook:
    book = StatusBook()
    book.record_inventory("solver", "cpp-1", 3, 3 * 1024 * 1024, ("ckptd-solver-a", NOW))
    book.record_success("solver", "cpp-1", "ckptd-solver-b", NOW - timedelta(seconds=90))
    book.record_failure("solver", "cpp-2", "checkpoint_failed", "criu failed", NOW)
    return book


def test_snapshot_lists_each_container_with_its_next_run() -> None:
    scheduled = {("solver", "cpp-1"): NOW + timedelta(minutes=5)}
    snapshot = book_with_history().snapshot(["solver", "idle"], scheduled, NOW)
    rows = {(row["target"], row["container"]): row for row in snapshot["targets"]}

    assert "2026-12-04T12:05:00+00:00" == rows[("solver", "cpp-1")]["next_run"]
    assert "ckptd-solver-b" == rows[("solver", "cpp-1")]["last_checkpoint"]
    assert 3 == rows[("solver", "cpp-1")]["checkpoints"]
    # A container with a record but no job any more: it went away, its records stay.
    assert not rows[("solver", "cpp-2")]["scheduled"]
    assert "checkpoint_failed" == rows[("solver", "cpp-2")]["last_failure_reason"]
    # A selector that matches nothing still shows its target.
    assert {"target": "idle", "container": None, "scheduled": False} == rows[("idle", None)]


def test_the_table_says_ages_reasons_and_sizes() -> None:
    scheduled = {("solver", "cpp-1"): NOW + timedelta(minutes=5)}
    text = render_status(book_with_history().snapshot(["solver", "idle"], scheduled, NOW))
    lines = text.splitlines()

    assert lines[0].startswith("TARGET")
    assert "1m30s ago" in lines[1] and "in 5m0s" in lines[1] and "3.0 MiB" in lines[1]
    assert "0s ago: checkpoint_failed (criu failed)" in lines[2] and "not running" in lines[2]
    assert "(no running container matches)" in lines[3]


def test_a_rejected_reload_is_shown_with_its_first_problems() -> None:
    book = book_with_history()
    assert None is book.snapshot(["solver"], {}, NOW)["last_reload"]
    assert "last reload: none since start" in render_status(book.snapshot(["solver"], {}, NOW))

    problems = [f"targets[{i}].schedule.every: bad (got soon)" for i in range(5)]
    book.record_reload(problems, NOW - timedelta(seconds=75))
    snapshot = book.snapshot(["solver"], {}, NOW)
    text = render_status(snapshot).splitlines()

    assert {
        "result": "failed",
        "time": "2026-12-04T11:58:45+00:00",
        "problems": problems[:3],
        "problem_count": 5,
    } == snapshot["last_reload"]
    start = text.index("last reload: FAILED, 1m15s ago; the previous policy is still in force")
    assert [f"  {problem}" for problem in problems[:3]] == text[start + 1 : start + 4]
    assert "(and 2 more" in text[start + 4]


def test_a_good_reload_after_a_rejected_one_says_ok() -> None:
    book = book_with_history()
    book.record_reload(["targets[0].colour: unknown key"], NOW - timedelta(seconds=60))
    book.record_reload([], NOW)
    snapshot = book.snapshot(["solver"], {}, NOW)

    assert "ok" == snapshot["last_reload"]["result"]
    assert [] == snapshot["last_reload"]["problems"]
    assert "last reload: ok, 0s ago" == render_status(snapshot).splitlines()[-1]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s ago"), (75, "1m15s ago"), (7300, "2h1m ago"), (90000, "1d1h ago")],
)
def test_format_age(seconds: int, expected: str) -> None:
    assert expected == format_age((NOW - timedelta(seconds=seconds)).isoformat(), NOW)


def test_format_size() -> None:
    assert ["-", "512 B", "1.5 KiB", "2.0 GiB"] == [
        format_size(size) for size in (None, 512, 1536, 2 * 1024**3)
    ]


def test_control_socket_is_root_only_and_answers(tmp_path: Path) -> None:
    path = tmp_path / "run" / "control.sock"
    server = ControlServer(path, lambda command: {"echo": command})
    server.start()
    try:
        assert 0o600 == stat.S_IMODE(os.stat(path).st_mode)
        assert 0o700 == stat.S_IMODE(os.stat(path.parent).st_mode)
        assert {"echo": "status"} == query(path, "status")
        # A second daemon on the same socket is refused rather than stealing it.
        with pytest.raises(CkptdError, match="already answers"):
            ControlServer(path, lambda command: {})
    finally:
        server.close()

    assert not path.exists()


def test_a_handler_error_is_answered_not_fatal(tmp_path: Path) -> None:
    def broken(command: str) -> dict[str, object]:
        raise RuntimeError("boom")

    server = ControlServer(tmp_path / "c.sock", broken)
    server.start()
    try:
        with pytest.raises(CkptdError, match="boom"):
            query(tmp_path / "c.sock", "status")
        assert threading.active_count() >= 1
    finally:
        server.close()


def test_no_daemon_says_so(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunningError, match="not running"):
        query(tmp_path / "absent.sock", "status")


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    first = ControlServer(path, lambda command: {"n": 1})
    first._server.server_close()  # the daemon died without removing its socket
    second = ControlServer(path, lambda command: {"n": 2})
    second.start()
    try:
        assert {"n": 2} == query(path, "status")
    finally:
        second.close()
