"""What counts as a complete checkpoint folder after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptd.reconcile import is_complete

WHOLE = [
    "cgroup.img",
    "descriptors.json",
    "inventory.img",
    "pages-1.img",
    "pstree.img",
    "utsns-12.img",
]


def make(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_a_whole_image_set_is_complete(tmp_path: Path) -> None:
    assert is_complete(make(tmp_path / "c", WHOLE))


@pytest.mark.parametrize(
    "missing", ["descriptors.json", "inventory.img", "pstree.img", "utsns-12.img"]
)
def test_a_folder_missing_a_file_docker_unpacks_is_incomplete(tmp_path: Path, missing: str) -> None:
    assert not is_complete(make(tmp_path / "c", [n for n in WHOLE if n != missing]))


def test_an_empty_folder_is_incomplete(tmp_path: Path) -> None:
    assert not is_complete(make(tmp_path / "c", []))
