"""The catalog: attempts written before the action, schema migration, concurrent readers."""

from __future__ import annotations

import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ckptd.catalog import FILENAME, SCHEMA_VERSION, Catalog, CatalogError

T0 = datetime(2026, 12, 3, 21, 45, tzinfo=UTC)


def test_a_new_catalog_has_the_current_schema_in_a_private_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    catalog = Catalog(state)

    assert SCHEMA_VERSION == catalog.schema_version()
    assert 0o700 == stat.S_IMODE(state.stat().st_mode)
    assert 0o600 == stat.S_IMODE((state / FILENAME).stat().st_mode)
    with sqlite3.connect(state / FILENAME) as db:
        assert "wal" == db.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_loose_state_folder_is_tightened_to_0700(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)

    Catalog(state)

    assert 0o700 == stat.S_IMODE(state.stat().st_mode)


def test_an_attempt_is_in_progress_until_finished(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    attempt_id = catalog.begin_attempt(
        "solver", "c1d", "solver-1", "app:1", "ckptd-solver-x", "cli", T0
    )

    assert [attempt_id] == [a.id for a in catalog.in_progress()]
    assert [] == catalog.checkpoints()

    catalog.finish_attempt(attempt_id, "ok", size_bytes=4096, duration_s=1.5)

    attempt = catalog.attempt(attempt_id)
    assert attempt is not None
    assert ("ok", 4096, 1.5, "cli", "app:1") == (
        attempt.result,
        attempt.size_bytes,
        attempt.duration_s,
        attempt.origin,
        attempt.image,
    )
    assert [] == catalog.in_progress()
    [record] = catalog.checkpoints(target="solver")
    assert ("ckptd-solver-x", T0, 4096) == (record.name, record.created, record.size_bytes)


def test_a_failure_keeps_reason_message_and_criu_log_and_is_no_checkpoint(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    attempt_id = catalog.begin_attempt("solver", "c1d", "solver-1", "", "ckptd-solver-x")
    catalog.finish_attempt(
        attempt_id, "failed", reason="criu_failed", message="criu failed", criu_log="Error (x)"
    )

    attempt = catalog.attempt(attempt_id)
    assert attempt is not None
    assert ("failed", "criu_failed", "Error (x)") == (
        attempt.result,
        attempt.reason,
        attempt.criu_log,
    )
    assert [] == catalog.checkpoints()
    assert {"ckptd-solver-x": "failed"} == catalog.names("c1d")


def test_checkpoints_are_newest_first_and_deleted_ones_left_out(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    for minutes in (0, 10, 5):
        name = f"ckptd-s-{minutes}"
        attempt_id = catalog.begin_attempt(
            "s", "c", "c", "", name, started_at=T0 + timedelta(minutes=minutes)
        )
        catalog.finish_attempt(attempt_id, "ok")
    prune_id = catalog.begin_prune("s", "c", "ckptd-s-5", "beyond keep_last 2")
    [decision] = catalog.prunes()
    assert "deleting" == decision["state"]
    catalog.finish_prune(prune_id, deleted=True)

    assert ["ckptd-s-10", "ckptd-s-0"] == [r.name for r in catalog.checkpoints()]
    assert "deleted" == catalog.prunes(target="s")[0]["state"]


def test_adopted_checkpoints_take_the_time_given(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.adopt("s", "c", "name", "ckptd-s-20261203T214500Z", T0, 123)

    [record] = catalog.checkpoints(container_id="c")
    assert (T0, 123) == (record.created, record.size_bytes)
    assert "adopted" == catalog.attempts()[0].origin


def test_restores_are_recorded_for_the_restore_command(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    restore_id = catalog.begin_restore("s", "c", "name", "ckptd-s-1", mode="into")
    assert "in_progress" == catalog.restores()[0].result

    catalog.finish_restore(restore_id, "failed", reason="timeout", message="no answer")
    catalog.record_restore("s", "c", "name", "ckptd-s-1", "ok")

    newest, oldest = catalog.restores(target="s")
    assert ("ok", "in_place") == (newest.result, newest.mode)
    assert ("failed", "timeout", "into") == (oldest.result, oldest.reason, oldest.mode)


def test_an_older_schema_is_migrated_and_a_newer_refused(tmp_path: Path) -> None:
    (tmp_path / FILENAME).touch()
    catalog = Catalog(tmp_path)  # version 0: an empty file
    assert SCHEMA_VERSION == catalog.schema_version()

    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(CatalogError, match="newer ckptd"):
        Catalog(tmp_path)


def test_a_reader_sees_consistent_rows_while_writers_write(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for index in range(40):
                attempt_id = catalog.begin_attempt("s", "c", "c", "", f"ckptd-s-{worker}-{index}")
                catalog.finish_attempt(attempt_id, "ok")
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for thread in writers:
        thread.start()

    reader = Catalog(tmp_path)
    while any(thread.is_alive() for thread in writers):
        assert all(record.name.startswith("ckptd-s-") for record in reader.checkpoints())

    for thread in writers:
        thread.join()

    assert [] == errors
    assert 120 == len(reader.checkpoints())
