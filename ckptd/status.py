"""What `ckptd status` shows: per target and container, the last outcomes and what comes next.

The daemon keeps a `StatusBook` (thread-safe; jobs write, the control socket reads) and answers
with `StatusBook.snapshot`, a JSON-ready mapping; `render_status` turns that into a table.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str]


@dataclass
class ContainerStatus:
    """The daemon's record of one (target, container)."""

    target: str
    container: str
    last_success: str | None = None
    last_checkpoint: str | None = None
    last_failure: str | None = None
    last_failure_reason: str | None = None
    last_failure_message: str | None = None
    checkpoints: int | None = None
    total_bytes: int | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# How many of a rejected reload's problems `ckptd status` shows (the log has all of them).
SHOWN_PROBLEMS = 3


class StatusBook:
    """Outcomes per (target, container), written by jobs and read by `ckptd status`."""

    def __init__(self) -> None:
        self._entries: dict[Key, ContainerStatus] = {}
        self._reload: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def record_reload(self, problems: list[str], at: datetime) -> None:
        """Record a policy reload: accepted when ``problems`` is empty, else rejected."""
        with self._lock:
            self._reload = {
                "result": "failed" if problems else "ok",
                "time": _iso(at),
                "problems": problems[:SHOWN_PROBLEMS],
                "problem_count": len(problems),
            }

    def _entry(self, target: str, container: str) -> ContainerStatus:
        return self._entries.setdefault(
            (target, container), ContainerStatus(target=target, container=container)
        )

    def record_success(self, target: str, container: str, checkpoint: str, at: datetime) -> None:
        """Record a checkpoint that completed."""
        with self._lock:
            entry = self._entry(target, container)
            entry.last_success = _iso(at)
            entry.last_checkpoint = checkpoint

    def record_failure(
        self, target: str, container: str, reason: str, message: str, at: datetime
    ) -> None:
        """Record a failed attempt with its reason (a metrics label) and the engine's message."""
        with self._lock:
            entry = self._entry(target, container)
            entry.last_failure = _iso(at)
            entry.last_failure_reason = reason
            entry.last_failure_message = message

    def record_inventory(
        self,
        target: str,
        container: str,
        count: int,
        total_bytes: int | None,
        newest: tuple[str, datetime] | None,
    ) -> None:
        """Record the checkpoints that exist now; the newest counts as a success when none is."""
        with self._lock:
            entry = self._entry(target, container)
            entry.checkpoints = count
            entry.total_bytes = total_bytes
            if newest is not None and entry.last_success is None:
                entry.last_checkpoint, entry.last_success = newest[0], _iso(newest[1])

    def snapshot(
        self,
        targets: list[str],
        scheduled: Mapping[Key, datetime | None],
        now: datetime,
    ) -> dict[str, Any]:
        """Return the status of every target (in policy order) and container, JSON-ready.

        ``scheduled`` maps each (target, container) that has a job to its next run time;
        a recorded container without a job is shown as no longer running.
        """
        with self._lock:
            entries = {key: ContainerStatus(**asdict(e)) for key, e in self._entries.items()}
            last_reload = None if self._reload is None else dict(self._reload)

        rows: list[dict[str, Any]] = []
        for target in targets:
            keys = sorted(
                {k for k in entries if k[0] == target} | {k for k in scheduled if k[0] == target}
            )
            rows += [
                self._row(
                    entries.get(key) or ContainerStatus(*key), key in scheduled, scheduled.get(key)
                )
                for key in keys
            ]
            if not keys:
                rows.append({"target": target, "container": None, "scheduled": False})

        return {"time": _iso(now), "targets": rows, "last_reload": last_reload}

    @staticmethod
    def _row(entry: ContainerStatus, scheduled: bool, next_run: datetime | None) -> dict[str, Any]:
        row = asdict(entry)
        row["scheduled"] = scheduled
        row["next_run"] = None if next_run is None else _iso(next_run)
        return row


def format_age(then: str | None, now: datetime) -> str:
    """Return how long ago ISO time ``then`` was, e.g. "3m12s ago"; "never" for None."""
    if then is None:
        return "never"

    seconds = int((now - datetime.fromisoformat(then)).total_seconds())
    suffix = "ago" if seconds >= 0 else "from now"
    return f"{_short(abs(seconds))} {suffix}"


def _short(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"

    if hours:
        return f"{hours}h{minutes}m"

    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def format_size(size: int | None) -> str:
    """Return a byte count for people, e.g. "12.3 MiB"; "-" when unknown."""
    if size is None:
        return "-"

    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"

        value /= 1024

    raise AssertionError("unreachable")


def render_status(snapshot: Mapping[str, Any]) -> str:
    """Return the snapshot as a table, one line per target and container."""
    now = datetime.fromisoformat(snapshot["time"])
    header = ("TARGET", "CONTAINER", "LAST SUCCESS", "LAST FAILURE", "NEXT RUN", "KEPT", "SIZE")
    table: list[tuple[str, ...]] = [header]
    for row in snapshot["targets"]:
        table.append(_render_row(row, now))

    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in table
    ]
    return "\n".join([*lines, "", *render_reload(snapshot.get("last_reload"), now)])


def render_reload(last_reload: Mapping[str, Any] | None, now: datetime) -> list[str]:
    """Return the lines saying how the last policy reload went (and a rejected one's problems)."""
    if last_reload is None:
        return ["last reload: none since start"]

    when = format_age(last_reload["time"], now)
    if last_reload["result"] == "ok":
        return [f"last reload: ok, {when}"]

    lines = [f"last reload: FAILED, {when}; the previous policy is still in force"]
    lines += [f"  {problem}" for problem in last_reload["problems"]]
    more = last_reload["problem_count"] - len(last_reload["problems"])
    if more > 0:
        lines.append(f"  (and {more} more: see the log's reload_rejected event)")

    return lines


def _render_row(row: Mapping[str, Any], now: datetime) -> tuple[str, ...]:
    if row["container"] is None:
        return (row["target"], "(no running container matches)", "-", "-", "-", "-", "-")

    failure = "never"
    if row.get("last_failure"):
        failure = f"{format_age(row['last_failure'], now)}: {row['last_failure_reason']}"
        message = str(row.get("last_failure_message") or "")
        failure += f" ({message[:60]})" if message else ""

    if not row["scheduled"]:
        next_run = "not running"
    elif row.get("next_run"):
        next_run = "in " + format_age(row["next_run"], now).removesuffix(" from now")
    else:
        next_run = "paused"

    kept = "-" if row.get("checkpoints") is None else str(row["checkpoints"])
    return (
        row["target"],
        row["container"],
        format_age(row.get("last_success"), now),
        failure,
        next_run,
        kept,
        format_size(row.get("total_bytes")),
    )
