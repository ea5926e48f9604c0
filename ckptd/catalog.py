"""ckptd's record of its own work: every checkpoint attempt, prune and restore, in SQLite.

The catalog lives in ``<state_dir>/catalog.db``. Each state change is written before the action
it describes (an attempt is ``in_progress`` before the engine is asked, a deletion is
``deleting`` before the engine deletes), so a crash leaves a trail that the next start resolves.

The daemon writes while the CLI reads: the database runs in WAL mode with a busy timeout, and
every call opens its own short connection, so threads and processes never share one.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ckptd.errors import CkptdError

log = structlog.get_logger("ckptd.catalog")

FILENAME = "catalog.db"
BUSY_TIMEOUT_MS = 10_000
# A CRIU log runs to tens of KiB; the lines that explain a failure fit well within this.
MAX_CRIU_LOG_CHARS = 16_384

# Each entry upgrades the schema from its index to the next version; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        container_id TEXT NOT NULL DEFAULT '',
        container_name TEXT NOT NULL DEFAULT '',
        image TEXT NOT NULL DEFAULT '',
        checkpoint TEXT,
        origin TEXT NOT NULL DEFAULT 'schedule',
        started_at TEXT NOT NULL,
        ended_at TEXT,
        duration_s REAL,
        size_bytes INTEGER,
        result TEXT NOT NULL
            CHECK (result IN ('in_progress', 'ok', 'failed', 'incomplete')),
        reason TEXT,
        message TEXT,
        criu_log TEXT,
        deleted_at TEXT
    );
    CREATE INDEX attempts_by_checkpoint ON attempts (container_id, checkpoint);
    CREATE INDEX attempts_by_target ON attempts (target, started_at);
    CREATE TABLE prunes (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        container_id TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('deleting', 'deleted', 'failed')),
        message TEXT
    );
    CREATE TABLE restores (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        container_id TEXT NOT NULL DEFAULT '',
        container_name TEXT NOT NULL DEFAULT '',
        checkpoint TEXT NOT NULL,
        mode TEXT NOT NULL DEFAULT 'in_place',
        started_at TEXT NOT NULL,
        ended_at TEXT,
        duration_s REAL,
        result TEXT NOT NULL CHECK (result IN ('in_progress', 'ok', 'failed')),
        reason TEXT,
        message TEXT
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class CatalogError(CkptdError):
    """The catalog cannot be opened or used."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"catalog {path}: {reason}")


@dataclass(frozen=True)
class Attempt:
    """One checkpoint attempt as recorded."""

    id: int
    target: str
    container_id: str
    container_name: str
    image: str
    checkpoint: str | None
    origin: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    size_bytes: int | None
    result: str
    reason: str | None
    message: str | None
    criu_log: str | None
    deleted_at: datetime | None


@dataclass(frozen=True)
class CheckpointRecord:
    """A good checkpoint the catalog knows of: what retention, `list` and `status` read."""

    target: str
    container_id: str
    name: str
    created: datetime
    size_bytes: int | None


@dataclass(frozen=True)
class Restore:
    """One restore as recorded."""

    id: int
    target: str
    container_id: str
    container_name: str
    checkpoint: str
    mode: str
    started_at: datetime
    ended_at: datetime | None
    duration_s: float | None
    result: str
    reason: str | None
    message: str | None


def _stamp(when: datetime) -> str:
    """Return ``when`` as sortable UTC text."""
    if when.tzinfo is None:
        raise ValueError("the catalog stores timezone-aware times only")

    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_state_dir(path: Path) -> Path:
    """Create ``path`` mode 0700 (or tighten it to 0700) and return it; raise CatalogError."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode)

        if mode != 0o700:
            os.chmod(path, 0o700)
            log.warning("state_dir_mode_tightened", path=str(path), was=oct(mode))
    except OSError as error:
        raise CatalogError(path / FILENAME, f"cannot prepare the state folder: {error}") from None

    return path


class Catalog:
    """The SQLite catalog in one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.path = ensure_state_dir(state_dir) / FILENAME
        self._migrate()

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """Yield a connection in its own transaction; commit on success, roll back on error."""
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as error:
            raise CatalogError(self.path, str(error)) from None

        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # IMMEDIATE takes the write lock up front, so two writers queue instead of
            # failing halfway with SQLITE_BUSY on lock upgrade.
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise CatalogError(self.path, str(error)) from None
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def _migrate(self) -> None:
        """Create the schema or bring an older one up to SCHEMA_VERSION."""
        try:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)

            try:
                # WAL lets the CLI read while the daemon writes; the mode sticks to the file.
                connection.execute("PRAGMA journal_mode = WAL")
            finally:
                connection.close()
            os.chmod(self.path, 0o600)
        except (sqlite3.Error, OSError) as error:
            raise CatalogError(self.path, str(error)) from None

        with self._connect(write=True) as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])

            if version > SCHEMA_VERSION:
                raise CatalogError(
                    self.path,
                    f"schema version {version} was written by a newer ckptd "
                    f"(this one knows up to {SCHEMA_VERSION})",
                )

            for index in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        db.execute(statement)
                log.info("catalog_migrated", path=str(self.path), version=index + 1)

            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        """Return the schema version of the database on disk."""
        with self._connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _newest(self, table: str, target: str | None, limit: int) -> list[sqlite3.Row]:
        """Return the newest ``limit`` rows of ``table`` (of ``target``, when given)."""
        query = f"SELECT * FROM {table}"
        params: tuple[object, ...] = ()

        if target is not None:
            query += " WHERE target = ?"
            params = (target,)

        with self._connect() as db:
            return list(db.execute(query + " ORDER BY id DESC LIMIT ?", (*params, limit)))

    # Attempts

    def begin_attempt(
        self,
        target: str,
        container_id: str,
        container_name: str,
        image: str,
        checkpoint: str | None,
        origin: str = "schedule",
        started_at: datetime | None = None,
    ) -> int:
        """Record an attempt as ``in_progress`` (before the engine is asked); return its id."""
        with self._connect(write=True) as db:
            cursor = db.execute(
                "INSERT INTO attempts (target, container_id, container_name, image, checkpoint,"
                " origin, started_at, result) VALUES (?, ?, ?, ?, ?, ?, ?, 'in_progress')",
                (
                    target,
                    container_id,
                    container_name,
                    image,
                    checkpoint,
                    origin,
                    _stamp(started_at or _now()),
                ),
            )

            return int(cursor.lastrowid or 0)

    def finish_attempt(
        self,
        attempt_id: int,
        result: str,
        *,
        size_bytes: int | None = None,
        reason: str | None = None,
        message: str | None = None,
        criu_log: str | None = None,
        ended_at: datetime | None = None,
        duration_s: float | None = None,
    ) -> None:
        """Record how attempt ``attempt_id`` ended: ``ok``, ``failed`` or ``incomplete``.

        ``duration_s`` defaults to the time since the recorded start; pass a monotonic
        measurement when the wall clock may have jumped.
        """
        ended = ended_at or _now()

        with self._connect(write=True) as db:
            row = db.execute(
                "SELECT started_at FROM attempts WHERE id = ?", (attempt_id,)
            ).fetchone()

            if row is None:
                raise CatalogError(self.path, f"no attempt with id {attempt_id}")

            started = datetime.fromisoformat(row["started_at"])

            if duration_s is None:
                duration_s = max(0.0, (ended - started).total_seconds())

            db.execute(
                "UPDATE attempts SET result = ?, ended_at = ?, duration_s = ?, size_bytes = ?,"
                " reason = ?, message = ?, criu_log = ? WHERE id = ?",
                (
                    result,
                    _stamp(ended),
                    duration_s,
                    size_bytes,
                    reason,
                    message,
                    None if criu_log is None else criu_log[-MAX_CRIU_LOG_CHARS:],
                    attempt_id,
                ),
            )

    def record_failure(
        self,
        target: str,
        container_id: str,
        container_name: str,
        reason: str,
        message: str,
        origin: str = "schedule",
    ) -> int:
        """Record an attempt that failed before any checkpoint was named; return its id."""
        attempt_id = self.begin_attempt(target, container_id, container_name, "", None, origin)
        self.finish_attempt(attempt_id, "failed", reason=reason, message=message)

        return attempt_id

    def adopt(
        self,
        target: str,
        container_id: str,
        container_name: str,
        checkpoint: str,
        created: datetime,
        size_bytes: int | None,
    ) -> int:
        """Record a ckptd checkpoint found on the engine but not here, made at ``created``."""
        with self._connect(write=True) as db:
            stamp = _stamp(created)
            cursor = db.execute(
                "INSERT INTO attempts (target, container_id, container_name, checkpoint, origin,"
                " started_at, ended_at, size_bytes, result, message)"
                " VALUES (?, ?, ?, ?, 'adopted', ?, ?, ?, 'ok', ?)",
                (
                    target,
                    container_id,
                    container_name,
                    checkpoint,
                    stamp,
                    stamp,
                    size_bytes,
                    "found on the engine, not in the catalog; time taken from its name",
                ),
            )
            log.info("checkpoint_adopted", target=target, checkpoint=checkpoint)

            return int(cursor.lastrowid or 0)

    def attempt(self, attempt_id: int) -> Attempt | None:
        """Return attempt ``attempt_id``, or None."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()

        return None if row is None else _attempt(row)

    def attempts(self, target: str | None = None, limit: int = 100) -> list[Attempt]:
        """Return the newest ``limit`` attempts (of ``target``, when given), newest first."""
        return [_attempt(row) for row in self._newest("attempts", target, limit)]

    def in_progress(self) -> list[Attempt]:
        """Return every attempt still marked ``in_progress`` (after a crash: unresolved)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM attempts WHERE result = 'in_progress' ORDER BY id"
            ).fetchall()

        return [_attempt(row) for row in rows]

    def names(self, container_id: str) -> dict[str, str]:
        """Return every checkpoint name recorded for ``container_id`` with its latest result."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT checkpoint, result FROM attempts WHERE container_id = ?"
                " AND checkpoint IS NOT NULL ORDER BY id",
                (container_id,),
            ).fetchall()

        return {row["checkpoint"]: row["result"] for row in rows}

    def checkpoints(
        self, target: str | None = None, container_id: str | None = None
    ) -> list[CheckpointRecord]:
        """Return the good, not deleted checkpoints recorded, newest first."""
        query = (
            "SELECT target, container_id, checkpoint, started_at, size_bytes FROM attempts"
            " WHERE result = 'ok' AND deleted_at IS NULL AND checkpoint IS NOT NULL"
        )
        params: list[object] = []

        if target is not None:
            query += " AND target = ?"
            params.append(target)

        if container_id is not None:
            query += " AND container_id = ?"
            params.append(container_id)

        with self._connect() as db:
            rows = db.execute(query + " ORDER BY started_at DESC, id DESC", params).fetchall()

        return [
            CheckpointRecord(
                target=row["target"],
                container_id=row["container_id"],
                name=row["checkpoint"],
                created=datetime.fromisoformat(row["started_at"]),
                size_bytes=row["size_bytes"],
            )
            for row in rows
        ]

    def mark_deleted(
        self, container_id: str, checkpoint: str, when: datetime | None = None
    ) -> None:
        """Record that ``checkpoint`` of ``container_id`` no longer exists."""
        with self._connect(write=True) as db:
            db.execute(
                "UPDATE attempts SET deleted_at = ? WHERE container_id = ? AND checkpoint = ?"
                " AND deleted_at IS NULL",
                (_stamp(when or _now()), container_id, checkpoint),
            )

    # Prunes

    def begin_prune(self, target: str, container_id: str, checkpoint: str, reason: str) -> int:
        """Record a decision to delete ``checkpoint`` (before deleting it); return its id."""
        with self._connect(write=True) as db:
            cursor = db.execute(
                "INSERT INTO prunes (target, container_id, checkpoint, decided_at, reason, state)"
                " VALUES (?, ?, ?, ?, ?, 'deleting')",
                (target, container_id, checkpoint, _stamp(_now()), reason),
            )

            return int(cursor.lastrowid or 0)

    def finish_prune(self, prune_id: int, deleted: bool, message: str | None = None) -> None:
        """Record whether the deletion decided as ``prune_id`` happened."""
        with self._connect(write=True) as db:
            row = db.execute(
                "SELECT container_id, checkpoint FROM prunes WHERE id = ?", (prune_id,)
            ).fetchone()

            if row is None:
                raise CatalogError(self.path, f"no prune with id {prune_id}")

            state = "deleted" if deleted else "failed"
            db.execute(
                "UPDATE prunes SET state = ?, message = ? WHERE id = ?",
                (state, message, prune_id),
            )

            if deleted:
                db.execute(
                    "UPDATE attempts SET deleted_at = ? WHERE container_id = ? AND checkpoint = ?"
                    " AND deleted_at IS NULL",
                    (_stamp(_now()), row["container_id"], row["checkpoint"]),
                )

    def prunes(self, target: str | None = None, limit: int = 100) -> list[dict[str, object]]:
        """Return the newest ``limit`` prune decisions, newest first, as plain rows."""
        return [dict(row) for row in self._newest("prunes", target, limit)]

    # Restores (written by `ckptd restore` and restore drills)

    def begin_restore(
        self,
        target: str,
        container_id: str,
        container_name: str,
        checkpoint: str,
        mode: str = "in_place",
    ) -> int:
        """Record a restore as ``in_progress`` (before the engine is asked); return its id."""
        with self._connect(write=True) as db:
            cursor = db.execute(
                "INSERT INTO restores (target, container_id, container_name, checkpoint, mode,"
                " started_at, result) VALUES (?, ?, ?, ?, ?, ?, 'in_progress')",
                (target, container_id, container_name, checkpoint, mode, _stamp(_now())),
            )

            return int(cursor.lastrowid or 0)

    def finish_restore(
        self,
        restore_id: int,
        result: str,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        """Record how restore ``restore_id`` ended: ``ok`` or ``failed`` (with a reason)."""
        ended = _now()

        with self._connect(write=True) as db:
            row = db.execute(
                "SELECT started_at FROM restores WHERE id = ?", (restore_id,)
            ).fetchone()

            if row is None:
                raise CatalogError(self.path, f"no restore with id {restore_id}")

            started = datetime.fromisoformat(row["started_at"])
            db.execute(
                "UPDATE restores SET result = ?, ended_at = ?, duration_s = ?, reason = ?,"
                " message = ? WHERE id = ?",
                (
                    result,
                    _stamp(ended),
                    max(0.0, (ended - started).total_seconds()),
                    reason,
                    message,
                    restore_id,
                ),
            )

    def record_restore(
        self,
        target: str,
        container_id: str,
        container_name: str,
        checkpoint: str,
        result: str,
        *,
        mode: str = "in_place",
        reason: str | None = None,
        message: str | None = None,
    ) -> int:
        """Record a finished restore in one call; return its id."""
        restore_id = self.begin_restore(target, container_id, container_name, checkpoint, mode)
        self.finish_restore(restore_id, result, reason, message)

        return restore_id

    def restores(self, target: str | None = None, limit: int = 100) -> list[Restore]:
        """Return the newest ``limit`` restores (of ``target``, when given), newest first."""
        return [_restore(row) for row in self._newest("restores", target, limit)]


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(
        id=row["id"],
        target=row["target"],
        container_id=row["container_id"],
        container_name=row["container_name"],
        image=row["image"],
        checkpoint=row["checkpoint"],
        origin=row["origin"],
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=_time(row["ended_at"]),
        duration_s=row["duration_s"],
        size_bytes=row["size_bytes"],
        result=row["result"],
        reason=row["reason"],
        message=row["message"],
        criu_log=row["criu_log"],
        deleted_at=_time(row["deleted_at"]),
    )


def _restore(row: sqlite3.Row) -> Restore:
    return Restore(
        id=row["id"],
        target=row["target"],
        container_id=row["container_id"],
        container_name=row["container_name"],
        checkpoint=row["checkpoint"],
        mode=row["mode"],
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=_time(row["ended_at"]),
        duration_s=row["duration_s"],
        result=row["result"],
        reason=row["reason"],
        message=row["message"],
    )
