"""Checkpoint archives for another host: one store entry as a zstd-compressed tar.

The manifest is the archive's first member, so ``inspect`` reads it without unpacking the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

import zstandard

from ckptd.errors import UsageError
from ckptd.store import MANIFEST, VERIFIED, Store, StoreEntry, StoreError

LEVEL = 3


def check_output(out: Path, force: bool = False) -> None:
    """Raise UsageError unless an export can be written to ``out``."""
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: the folder {out.parent} does not exist")

    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")

    # --force replaces an old export, never a device, a folder or a pipe (the rename would).
    if out.exists() and not out.is_file():
        raise UsageError(f"{out} exists and is not a regular file; export writes files only")


def export_entry(entry: StoreEntry, out: Path, force: bool = False) -> int:
    """Write ``entry`` to ``out`` (.tar.zst), manifest first; return the archive's bytes.

    The file holds the process's whole memory, so it is created readable by its owner only.
    Raises UsageError when ``out`` exists (unless ``force``) or its folder does not, and
    StoreError when writing fails; a failure leaves no partial file behind.
    """
    check_output(out, force)
    partial = out.with_name(out.name + ".partial")
    members = [entry.path / MANIFEST] + sorted(
        f for f in entry.path.rglob("*") if f.is_file() and f.name not in (MANIFEST, VERIFIED)
    )

    try:
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

        with (
            open(descriptor, "wb") as raw,
            zstandard.ZstdCompressor(level=LEVEL).stream_writer(raw) as compressed,
            tarfile.open(fileobj=compressed, mode="w|") as archive,
        ):
            for member in members:
                archive.add(member, arcname=str(member.relative_to(entry.path)), recursive=False)

        partial.rename(out)
    except (OSError, tarfile.TarError, zstandard.ZstdError) as error:
        partial.unlink(missing_ok=True)
        raise StoreError(f"exporting {entry.checkpoint!r} to {out} failed: {error}") from error

    return out.stat().st_size


def read_manifest(path: Path) -> dict[str, Any]:
    """Return the manifest inside the archive at ``path``; raise StoreError when it has none."""
    try:
        with (
            open(path, "rb") as raw,
            zstandard.ZstdDecompressor().stream_reader(raw) as plain,
            tarfile.open(fileobj=plain, mode="r|") as archive,
        ):
            first = archive.next()

            if first is None or first.name != MANIFEST:
                raise StoreError(f"{path} is not a ckptd archive: {MANIFEST} does not come first")

            handle = archive.extractfile(first)

            if handle is None:
                raise StoreError(f"{path}: {MANIFEST} is not a file")

            return dict(json.loads(handle.read()))
    except (OSError, tarfile.TarError, zstandard.ZstdError, ValueError) as error:
        raise StoreError(f"{path} cannot be read as a ckptd archive: {error}") from error


def import_archive(path: Path, store: Store) -> StoreEntry:
    """Unpack the archive into ``store`` after checking every checksum; return the entry."""
    read_manifest(path)
    store.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    unpacked = store.root / f".import-{uuid.uuid4().hex[:12]}"
    unpacked.mkdir(mode=0o700)

    try:
        with (
            open(path, "rb") as raw,
            zstandard.ZstdDecompressor().stream_reader(raw) as plain,
            tarfile.open(fileobj=plain, mode="r|") as archive,
        ):
            # The data filter refuses absolute paths, "..", links out and device files.
            archive.extractall(unpacked, filter="data")

        return store.add(unpacked)
    except (OSError, tarfile.TarError, zstandard.ZstdError, ValueError) as error:
        raise StoreError(f"importing {path} failed: {error}") from error
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def describe_manifest(manifest: dict[str, Any]) -> str:
    """Return a few lines saying what a checkpoint is of."""
    container = manifest["container"]
    versions = manifest.get("versions", {})
    size = sum(int(f["size"]) for f in manifest["files"])
    changes = manifest.get("changes", {})
    lines = [
        f"checkpoint  {manifest['checkpoint']} (target {manifest.get('target')})",
        f"container   {container['name']} {container['id'][:12]}",
        f"image       {container.get('image')} {container['image_id']}",
        f"created     {manifest['created_at']}",
        f"size        {size} bytes in {len(manifest['files'])} files",
        f"files kept  {len(changes.get('paths', []))} changed path(s) of the writable layer",
        "versions    " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
    ]
    return "\n".join(lines)
