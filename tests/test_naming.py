"""Checkpoint names: made unique, parsed back, and foreign names left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ckptd.naming import checkpoints_of, make_checkpoint_name, parse_checkpoint_name

WHEN = datetime(2026, 12, 3, 21, 45, 7, 999000, tzinfo=UTC)


def test_name_is_target_and_utc_second() -> None:
    assert "ckptd-solver-20261203T214507Z" == make_checkpoint_name("solver", WHEN, [])


def test_local_time_is_written_as_utc() -> None:
    berlin = WHEN.astimezone(timezone(timedelta(hours=1)))

    assert "ckptd-solver-20261203T214507Z" == make_checkpoint_name("solver", berlin, [])


def test_same_second_gets_a_sequence_suffix() -> None:
    taken = ["ckptd-solver-20261203T214507Z", "ckptd-solver-20261203T214507Z-2"]

    assert "ckptd-solver-20261203T214507Z-3" == make_checkpoint_name("solver", WHEN, taken)


def test_names_are_accepted_by_docker() -> None:
    name = make_checkpoint_name("game_server.eu1", WHEN, [])

    assert name[0].isalnum()
    assert all(c.isalnum() or c in "_.-" for c in name)


def test_parse_round_trip() -> None:
    ref = parse_checkpoint_name("ckptd-solver-20261203T214507Z-2")

    assert ref is not None
    assert ("solver", WHEN.replace(microsecond=0), 2) == (ref.target, ref.created, ref.seq)


@pytest.mark.parametrize(
    "name",
    [
        "by-hand-1",
        "ckptd-solver",
        "ckptd-solver-20261203T214507",
        "ckptd--20261203T214507Z",
        "ckptd-solver-20261203T214507Z-1",
        "ckptd-solver-20261203T214507Z-x",
        "xckptd-solver-20261203T214507Z",
    ],
)
def test_foreign_names_are_not_ckptds(name: str) -> None:
    assert parse_checkpoint_name(name) is None


def test_checkpoints_of_selects_one_target_newest_first() -> None:
    names = [
        "ckptd-solver-20261203T214507Z",
        "ckptd-solver-20261203T214507Z-2",
        "ckptd-solver-20261203T204507Z",
        "ckptd-other-20261203T224507Z",
        "manual",
    ]

    refs = checkpoints_of("solver", names)

    assert [
        "ckptd-solver-20261203T214507Z-2",
        "ckptd-solver-20261203T214507Z",
        "ckptd-solver-20261203T204507Z",
    ] == [ref.name for ref in refs]
