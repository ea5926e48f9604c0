"""Reconciling after a crash, on a fake engine: each in_progress attempt is resolved."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ckptd.catalog import Catalog
from ckptd.engine import ContainerInfo
from ckptd.errors import ContainerNotFoundError
from ckptd.reconcile import Reconciler

CID = "c" * 64
WHOLE = ["descriptors.json", "inventory.img", "pages-1.img", "pstree.img", "utsns-12.img"]


class FakeEngine:
    """Keeps checkpoint folders under ``root`` the way Docker does."""

    def __init__(self, root: Path, exists: bool = True) -> None:
        self.root = root
        self.exists = exists
        self.deleted: list[str] = []

    def container(self, ref: str) -> ContainerInfo:
        if not self.exists:
            raise ContainerNotFoundError(ref)

        return ContainerInfo(id=CID, name="app", running=True)

    def list_checkpoints(self, container: str) -> list[str]:
        return sorted(p.name for p in self.root.iterdir())

    def checkpoint_dir(self, container: str, name: str) -> Path | None:
        return self.root / name

    def checkpoint_size(self, container: str, name: str) -> int | None:
        return sum(f.stat().st_size for f in (self.root / name).iterdir())

    def delete_checkpoint(self, container: str, name: str) -> None:
        for file in (self.root / name).iterdir():
            file.unlink()
        (self.root / name).rmdir()
        self.deleted.append(name)


@contextmanager
def no_lock(container: ContainerInfo) -> Iterator[None]:
    yield


def folder(root: Path, name: str, files: list[str]) -> None:
    (root / name).mkdir(parents=True)
    for file in files:
        (root / name / file).write_bytes(b"x")


def begin(catalog: Catalog, name: str | None) -> int:
    return catalog.begin_attempt("t", CID, "app", "", name, started_at=datetime.now(UTC))


def test_each_kind_of_leftover_is_resolved(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    folder(root, "ckptd-t-whole", WHOLE)
    folder(root, "ckptd-t-half", WHOLE[:2])
    catalog = Catalog(tmp_path / "state")
    whole, half, gone = (begin(catalog, n) for n in ["ckptd-t-whole", "ckptd-t-half", "ckptd-t-x"])
    engine = FakeEngine(root)

    resolutions = Reconciler(engine, catalog, no_lock, idle_s=0.1).run()  # type: ignore[arg-type]

    assert {whole: "ok", half: "incomplete", gone: "failed"} == {
        r.attempt_id: r.outcome for r in resolutions
    }
    assert ["ckptd-t-half"] == engine.deleted
    assert ["ckptd-t-whole"] == [r.name for r in catalog.checkpoints()]
    assert [] == catalog.in_progress()
    ok = catalog.attempt(whole)
    assert ok is not None and ok.size_bytes == len(WHOLE)


def test_an_attempt_of_a_removed_container_is_closed(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "state")
    attempt = begin(catalog, "ckptd-t-1")
    (tmp_path / "checkpoints").mkdir()

    Reconciler(FakeEngine(tmp_path / "checkpoints", exists=False), catalog, no_lock).run()  # type: ignore[arg-type]

    closed = catalog.attempt(attempt)
    assert closed is not None
    assert ("failed", "cancelled") == (closed.result, closed.reason)


def test_an_attempt_finished_by_its_own_process_meanwhile_is_left_alone(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "state")
    attempt = begin(catalog, "ckptd-t-1")
    (tmp_path / "checkpoints").mkdir()

    @contextmanager
    def lock_held_by_a_live_cli(container: ContainerInfo) -> Iterator[None]:
        # The CLI that held the lock finishes its attempt before reconcile gets the lock.
        catalog.finish_attempt(attempt, "ok", size_bytes=1)
        yield

    engine = FakeEngine(tmp_path / "checkpoints")
    [resolution] = Reconciler(engine, catalog, lock_held_by_a_live_cli).run()  # type: ignore[arg-type]

    assert "ok" == resolution.outcome
    assert [] == engine.deleted
