"""The store's pure parts: which changed paths to archive, checksums, staging, verification."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ckptd.criuimage import regular_file_sizes
from ckptd.restore import create_body
from ckptd.retention import CheckpointRecord, plan_retention
from ckptd.store import (
    MANIFEST,
    DamagedCheckpointError,
    Store,
    StoreEntry,
    StoreError,
    _paths_to_archive,
    check_name,
    link_or_copy,
    sha256_of,
)

CONTAINER = "a" * 64
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "archived"),
    [
        # An added folder's archive holds its children; they are not fetched again.
        ([("/data", 1), ("/data/a", 1), ("/data/b", 1)], ["/data"]),
        # A changed folder with listed children needs nothing of its own.
        ([("/tmp", 0), ("/tmp/x", 1)], ["/tmp/x"]),
        # A changed file is fetched; a deleted one cannot be and is only listed.
        ([("/etc/app.conf", 0), ("/old", 2)], ["/etc/app.conf"]),
        ([("/journal.log", 1), ("/app-state.txt", 1)], ["/app-state.txt", "/journal.log"]),
    ],
)
def test_paths_to_archive(changes: list[tuple[str, int]], archived: list[str]) -> None:
    rows = [{"Path": path, "Kind": kind} for path, kind in changes]

    assert archived == _paths_to_archive(rows)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 201])
def test_unsafe_checkpoint_names_cannot_name_a_folder(name: str) -> None:
    with pytest.raises(StoreError, match="cannot name a store folder"):
        check_name("checkpoint", name)


def test_container_ids_must_be_full_ids() -> None:
    with pytest.raises(StoreError):
        check_name("container id", "abc")


def test_link_or_copy_links_on_one_filesystem(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "pages-1.img").write_bytes(b"x" * 100)

    staging = link_or_copy(source, tmp_path / "dst")

    assert ("hardlink", 1) == (staging.method, staging.files)
    assert (source / "pages-1.img").stat().st_ino == (tmp_path / "dst/pages-1.img").stat().st_ino


def make_entry(store: Store, checkpoint: str = "ckptd-it-20261204T120000Z") -> StoreEntry:
    """Write a small but complete entry by hand."""
    folder = store.folder(CONTAINER, checkpoint)
    (folder / "images").mkdir(parents=True)
    (folder / "images/pages-1.img").write_bytes(b"p" * 4096)
    (folder / "rootfs.tar").write_bytes(b"")
    files = [
        {"path": str(f.relative_to(folder)), "size": f.stat().st_size, "sha256": sha256_of(f)}
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    ]
    manifest = {
        "checkpoint": checkpoint,
        "created_at": NOW.isoformat(),
        "container": {"id": CONTAINER, "name": "solver", "image_id": "sha256:1"},
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return StoreEntry(folder, manifest)


def test_an_intact_entry_verifies_and_is_found_by_name(tmp_path: Path) -> None:
    store = Store(tmp_path)
    entry = make_entry(store)

    assert [] == store.verify(entry)
    assert entry.path == store.find("solver").path
    assert entry.path == store.find(CONTAINER[:12], entry.checkpoint).path


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: f.write_bytes(b"q" * 4096), "sha256 differs"),
        (lambda f: f.write_bytes(b"p"), "size 1, not 4096"),
        (lambda f: f.unlink(), "missing"),
        (lambda f: f.with_name("extra.img").write_bytes(b""), "not in the manifest"),
    ],
)
def test_damage_is_found_and_restores_are_refused(tmp_path: Path, damage, problem: str) -> None:
    store = Store(tmp_path)
    entry = make_entry(store)
    damage(entry.path / "images/pages-1.img")

    assert any(problem in line for line in store.verify(entry))
    with pytest.raises(DamagedCheckpointError, match="damaged, not restored"):
        store.require_intact(entry)


def test_newest_verified_skips_failed_drills(tmp_path: Path) -> None:
    store = Store(tmp_path)
    older = make_entry(store, "ckptd-it-20261204T110000Z")
    newer = make_entry(store, "ckptd-it-20261204T120000Z")
    store.mark_verified(older, True, "ok")
    store.mark_verified(newer, False, "clone died")

    found = store.newest_verified(CONTAINER)

    assert found is not None
    assert older.checkpoint == found.checkpoint


def test_retention_keeps_the_newest_verified_checkpoint() -> None:
    records = [
        CheckpointRecord("new", NOW - timedelta(hours=1)),
        CheckpointRecord("verified", NOW - timedelta(hours=2), verified=True),
        CheckpointRecord("old", NOW - timedelta(hours=3)),
    ]

    plan = plan_retention(records, {"keep_last": 1}, NOW)

    assert ["old"] == [decision.name for decision in plan.delete]
    assert "newest verified" in {d.name: d.reasons for d in plan.decisions()}["verified"]


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)

    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_regular_file_sizes_reads_names_and_sizes(tmp_path: Path) -> None:
    sized = _field(1, 7) + _field(6, b"/journal.log") + _field(8, 49)
    unsized = _field(1, 8) + _field(6, b"/var/log/app.log")
    entries = [_field(1, 1) + _field(2, 7) + _field(3, sized), _field(1, 1) + _field(3, unsized)]
    image = tmp_path / "files.img"
    image.write_bytes(
        struct.pack("<II", 0x54564319, 0x56474F30)
        + b"".join(struct.pack("<I", len(e)) + e for e in entries)
    )

    assert {"/journal.log": 49} == regular_file_sizes(image)


def test_a_drill_clone_is_isolated_from_the_original(tmp_path: Path) -> None:
    entry = make_entry(Store(tmp_path))
    entry.manifest["container"]["config"] = {"Image": "app", "Labels": {"app": "solver"}}
    entry.manifest["container"]["host_config"] = {
        "Binds": ["/srv/data:/data", "/srv/conf:/conf:rw,z"],
        "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"}],
        "PortBindings": {"8080/tcp": [{"HostPort": "8080"}]},
        "RestartPolicy": {"Name": "always"},
    }

    clone = create_body(entry, "none", isolated=True)
    moved = create_body(entry, None)

    assert {} == clone["Labels"]
    assert ["/srv/data:/data:ro", "/srv/conf:/conf:ro,z"] == clone["HostConfig"]["Binds"]
    assert clone["HostConfig"]["Mounts"][0]["ReadOnly"] is True
    assert ("none", "no") == (
        clone["HostConfig"]["NetworkMode"],
        clone["HostConfig"]["RestartPolicy"]["Name"],
    )
    assert "sha256:1" == clone["Image"]
    assert {"app": "solver"} == moved["Labels"]
    assert "PortBindings" not in clone["HostConfig"]
    assert "8080/tcp" in moved["HostConfig"]["PortBindings"]
