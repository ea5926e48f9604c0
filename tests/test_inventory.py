"""The one join of the engine's names with the catalog's times and sizes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ckptd.catalog import Catalog
from ckptd.engine import ContainerInfo
from ckptd.inventory import target_checkpoints
from ckptd.naming import CHECKPOINT_NAME, make_checkpoint_name
from ckptd.policy import _TARGET_NAME_RE

APP = ContainerInfo(id="c" * 64, name="app", running=True)
T0 = datetime(2026, 12, 3, 21, 45, tzinfo=UTC)


def test_unrecorded_names_are_adopted_and_others_left_out(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    writing = catalog.begin_attempt("t", APP.id, "app", "", "ckptd-t-20261203T214600Z")
    assert writing
    on_engine = [
        "ckptd-t-20261203T214500Z",  # never recorded: adopted
        "ckptd-t-20261203T214600Z",  # still being written: not a checkpoint yet
        "ckptd-other-20261203T214500Z",  # another target's
        "by-hand",  # not ckptd's
    ]

    records = target_checkpoints(catalog, "t", APP, on_engine, lambda name: 7)

    assert [("ckptd-t-20261203T214500Z", T0, 7)] == [
        (r.name, r.created, r.size_bytes) for r in records
    ]


def test_a_recorded_checkpoint_the_engine_lost_is_marked_deleted(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    attempt = catalog.begin_attempt("t", APP.id, "app", "", "ckptd-t-1", started_at=T0)
    catalog.finish_attempt(attempt, "ok")

    assert [] == target_checkpoints(catalog, "t", APP, [], lambda name: None)
    assert [] == catalog.checkpoints()


@given(name=st.from_regex(_TARGET_NAME_RE, fullmatch=True), seconds=st.integers(0, 10**9))
def test_every_name_made_is_one_folder_inside_the_checkpoints_folder(
    name: str, seconds: int
) -> None:
    when = datetime.fromtimestamp(seconds, UTC)
    checkpoint = make_checkpoint_name(name, when, {make_checkpoint_name(name, when, set())})
    base = Path("/var/lib/docker/containers/x/checkpoints")

    assert CHECKPOINT_NAME.fullmatch(checkpoint)
    assert (base / checkpoint).resolve().parent == base
