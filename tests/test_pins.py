"""Pins: a JSON file in the state folder, changed under a lock and replaced atomically."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from ckptd.pins import PINS_FILE, PinsError, load_pins, pin, pinned, unpin


def test_nothing_is_pinned_before_the_first_pin(tmp_path: Path) -> None:
    assert {} == load_pins(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_pin_and_unpin(tmp_path: Path) -> None:
    state = tmp_path / "state"

    assert pin(state, "solver", "ckptd-solver-20261203T214500Z")
    assert not pin(state, "solver", "ckptd-solver-20261203T214500Z")
    assert pin(state, "db", "ckptd-db-20261203T214500Z")

    assert {"ckptd-solver-20261203T214500Z"} == pinned(state, "solver")
    assert unpin(state, "solver", "ckptd-solver-20261203T214500Z")
    assert not unpin(state, "solver", "ckptd-solver-20261203T214500Z")
    assert {"db": {"ckptd-db-20261203T214500Z"}} == load_pins(state)


def test_the_state_folder_is_private_and_the_file_is_plain_json(tmp_path: Path) -> None:
    state = tmp_path / "state"

    pin(state, "solver", "a")

    assert 0o700 == stat.S_IMODE(state.stat().st_mode)
    data = json.loads((state / PINS_FILE).read_text())
    assert {"version": 1, "pins": {"solver": ["a"]}} == data
    assert [PINS_FILE] == [p.name for p in state.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("text", ["{", "[]", '{"pins": {"a": "b"}}', '{"pins": {"a": [1]}}'])
def test_a_damaged_file_is_reported_not_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / PINS_FILE).write_text(text)

    with pytest.raises(PinsError, match=PINS_FILE):
        load_pins(tmp_path)


def test_concurrent_pins_are_all_kept(tmp_path: Path) -> None:
    names = [f"ckptd-solver-20261203T2145{i:02d}Z" for i in range(40)]
    threads = [threading.Thread(target=pin, args=(tmp_path, "solver", n)) for n in names]

    for thread in threads:
        thread.start()

    for thread in threads:
        thread.join()

    assert set(names) == pinned(tmp_path, "solver")


def test_a_state_folder_open_to_others_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)

    pin(state, "solver", "a")

    assert 0o700 == stat.S_IMODE(state.stat().st_mode)
