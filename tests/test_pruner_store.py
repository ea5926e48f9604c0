"""Retention records of a target with a store: a checkpoint with no store copy is marked so."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ckptd.catalog import Catalog
from ckptd.engine import ContainerInfo
from ckptd.pruner import build_records
from ckptd.retention import plan_retention

CID = "c" * 64
NAMES = ["ckptd-t-20261204T100000Z", "ckptd-t-20261204T110000Z", "ckptd-t-20261204T120000Z"]


class ListingEngine:
    """An engine that lists three checkpoints of target ``t``."""

    def list_checkpoints(self, container: str) -> list[str]:
        return list(NAMES)

    def checkpoint_size(self, container: str, name: str) -> int:
        return 1


def test_the_newest_with_a_store_copy_is_kept_as_the_newest_good(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "state")
    container = ContainerInfo(id=CID, name="app", running=True)

    for name in NAMES:
        at = datetime.strptime(name.removeprefix("ckptd-t-"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        attempt = catalog.begin_attempt("t", CID, "app", "", name, started_at=at)
        catalog.finish_attempt(attempt, "ok", size_bytes=1)

    records = build_records(
        ListingEngine(),  # type: ignore[arg-type]
        catalog,
        container,
        "t",
        stored=NAMES[:2],
    )
    plan = plan_retention(records, {"keep_last": 1}, datetime(2026, 12, 5, tzinfo=UTC))

    assert [NAMES[2]] == [r.name for r in records if r.unstored]
    assert {NAMES[2]: ("last",), NAMES[1]: ("newest good",)} == {
        d.name: d.reasons for d in plan.keep
    }
    assert [NAMES[0]] == [d.name for d in plan.delete]
