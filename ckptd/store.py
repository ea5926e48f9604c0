"""ckptd's own store of checkpoints, outside the containers' folders (``docker rm`` keeps them).

An entry is ``<store>/<container id>/<checkpoint>/`` holding ``images/`` (CRIU's files, hard
links to Docker's copy when both are on one filesystem), ``rootfs.tar`` (the container's
writable-layer changes at the dump) and ``manifest.json`` (what the checkpoint is of, and a
sha256 per file), written last: an entry without a manifest is incomplete and never used.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from ckptd.criuimage import regular_file_sizes
from ckptd.engine import EngineCalls
from ckptd.errors import CkptdError

log = structlog.get_logger("ckptd.store")

MANIFEST = "manifest.json"
VERIFIED = "verified.json"
IMAGES = "images"
ROOTFS = "rootfs.tar"
FORMAT = 1
_ID_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,199}")
_CHUNK = 1 << 20
# Kinds in GET /containers/{id}/changes.
_CHANGED, _ADDED, _DELETED = 0, 1, 2


class StoreError(CkptdError):
    """A store entry that is missing, incomplete or damaged."""


class DamagedCheckpointError(StoreError):
    """A stored checkpoint whose files do not match its manifest's checksums."""


@dataclass(frozen=True)
class StoreEntry:
    """One complete checkpoint in the store."""

    path: Path
    manifest: dict[str, Any]

    @property
    def container_id(self) -> str:
        """Return the id of the container the checkpoint was taken of."""
        return str(self.manifest["container"]["id"])

    @property
    def container_name(self) -> str:
        """Return that container's name at the dump."""
        return str(self.manifest["container"]["name"])

    @property
    def checkpoint(self) -> str:
        """Return the checkpoint's name."""
        return str(self.manifest["checkpoint"])

    @property
    def created(self) -> datetime:
        """Return when the dump ended."""
        return datetime.fromisoformat(str(self.manifest["created_at"]))

    @property
    def size_bytes(self) -> int:
        """Return the bytes of CRIU's files plus the writable-layer archive."""
        return sum(int(f["size"]) for f in self.manifest["files"])

    def verified(self) -> dict[str, Any] | None:
        """Return the last drill's record of this entry ({"ok", "at", ...}), if any."""
        try:
            return dict(json.loads((self.path / VERIFIED).read_text()))
        except (OSError, ValueError):
            return None


@dataclass(frozen=True)
class Staging:
    """How a checkpoint's files were put into a folder, and what it cost."""

    method: str
    seconds: float
    files: int


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()

    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)

    return digest.hexdigest()


def link_or_copy(source: Path, folder: Path) -> Staging:
    """Fill ``folder`` with the files of ``source`` (flat), hard-linked when possible."""
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    methods: set[str] = set()
    files = 0

    for item in sorted(source.iterdir()):
        if not item.is_file() or item.is_symlink():
            continue

        try:
            os.link(item, folder / item.name)
            methods.add("hardlink")
        except OSError as error:
            # Another filesystem, or one without hard links: a copy costs time, not safety.
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copy2(item, folder / item.name)
            methods.add("copy")
        files += 1

    method = "+".join(sorted(methods)) or "empty"
    return Staging(method, time.monotonic() - started, files)


def check_name(kind: str, value: str) -> str:
    """Return ``value`` when it is safe as one path component; raise StoreError otherwise."""
    pattern = _ID_RE if kind == "container id" else _NAME_RE

    if not pattern.fullmatch(value):
        raise StoreError(f"{kind} {value!r} cannot name a store folder")

    return value


class Store:
    """The checkpoints under one store folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, container_id: str, checkpoint: str) -> Path:
        """Return the folder of one entry (which may not exist)."""
        container = check_name("container id", container_id)
        return self.root / container / check_name("checkpoint", checkpoint)

    def save(
        self,
        calls: EngineCalls,
        data: dict[str, Any],
        checkpoint: str,
        target: str,
        dump_s: float,
    ) -> StoreEntry:
        """Keep the just-made ``checkpoint`` of the container ``data`` describes; return it.

        Runs after the dump, while the app runs again: links CRIU's files, archives the
        writable layer's changes (cut back to the sizes CRIU recorded), checksums everything
        and writes the manifest last. Raises StoreError or EngineError; a failure leaves no
        entry behind.
        """
        container_id = str(data["Id"])
        source = calls.container_folder(data) / "checkpoints" / checkpoint
        entry = self.folder(container_id, checkpoint)
        partial = entry.with_name(entry.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

        try:
            staging = link_or_copy(source, partial / IMAGES)
            sizes = regular_file_sizes(partial / IMAGES / "files.img")
            changes = capture_changes(calls, container_id, partial / ROOTFS, sizes)
            manifest = self._manifest(calls, data, checkpoint, target, dump_s, staging, changes)
            started = time.monotonic()
            manifest["files"] = [
                {"path": str(f.relative_to(partial)), "size": f.stat().st_size, "sha256": h}
                for f, h in ((f, sha256_of(f)) for f in _files_of(partial))
            ]
            manifest["checksum_s"] = round(time.monotonic() - started, 4)
            _write_json(partial / MANIFEST, manifest)
            shutil.rmtree(entry, ignore_errors=True)
            partial.rename(entry)
        except (OSError, ValueError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise StoreError(f"storing checkpoint {checkpoint!r} failed: {error}") from error
        except CkptdError:
            shutil.rmtree(partial, ignore_errors=True)
            raise

        if staging.method == "copy":
            # Hard links never cross a mount point, even on one disk (a bind-mounted
            # /var/lib/docker, say): each checkpoint then costs its size twice on disk.
            log.warning("store_copies_not_links", store=str(self.root), source=str(source))

        log.info(
            "checkpoint_stored",
            checkpoint=checkpoint,
            container=manifest["container"]["name"],
            staging=staging.method,
            staging_s=round(staging.seconds, 4),
            checksum_s=manifest["checksum_s"],
            changed_paths=len(changes["paths"]),
        )
        return StoreEntry(entry, manifest)

    def _manifest(
        self,
        calls: EngineCalls,
        data: dict[str, Any],
        checkpoint: str,
        target: str,
        dump_s: float,
        staging: Staging,
        changes: dict[str, Any],
    ) -> dict[str, Any]:
        """Return the manifest of a new entry, without its file list."""
        versions = calls.versions()
        versions["criu"] = criu_version() or "unknown"
        now = datetime.now(UTC)
        return {
            "format": FORMAT,
            "checkpoint": checkpoint,
            "target": target,
            "container": {
                "id": data["Id"],
                "name": str(data["Name"]).lstrip("/"),
                "image": data["Config"].get("Image"),
                "image_id": data["Image"],
                "config": data["Config"],
                "host_config": data["HostConfig"],
            },
            "versions": versions,
            "created_at": now.isoformat(),
            "dump_s": round(dump_s, 4),
            "staging": {"method": staging.method, "seconds": round(staging.seconds, 6)},
            "changes": changes,
        }

    def entries(self, container_id: str | None = None) -> list[StoreEntry]:
        """Return the complete entries (of one container, or all), newest first."""
        folders = [self.root / container_id] if container_id else self._container_folders()
        found: list[StoreEntry] = []

        for folder in folders:
            for manifest in folder.glob(f"*/{MANIFEST}"):
                try:
                    found.append(StoreEntry(manifest.parent, json.loads(manifest.read_text())))
                except (OSError, ValueError) as error:
                    log.warning("store_manifest_unreadable", path=str(manifest), error=str(error))

        return sorted(found, key=lambda e: e.created, reverse=True)

    def _container_folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []

        return [p for p in self.root.iterdir() if p.is_dir() and _ID_RE.fullmatch(p.name)]

    def find(self, container: str, checkpoint: str = "latest") -> StoreEntry:
        """Return the entry of ``checkpoint`` ("latest": the newest) of a container.

        ``container`` is an id, an id prefix or the name the container had at the dump, so a
        removed container's checkpoints are still found. Raises StoreError when none matches.
        """
        matches = [
            e
            for e in self.entries()
            if container in (e.container_name, e.container_id)
            or e.container_id.startswith(container)
        ]

        if checkpoint != "latest":
            matches = [e for e in matches if e.checkpoint == checkpoint]

        if not matches:
            which = "no checkpoint" if checkpoint == "latest" else f"no checkpoint {checkpoint!r}"
            raise StoreError(
                f"the store {self.root} has {which} of container {container!r} (checkpoints "
                "made before the store existed are only in Docker's folder: restore those with "
                "store: engine on the target)"
            )

        return matches[0]

    def verify(self, entry: StoreEntry) -> list[str]:
        """Return what is wrong with the entry's files (empty when every checksum matches)."""
        problems: list[str] = []
        listed = {str(f["path"]) for f in entry.manifest["files"]}

        for record in entry.manifest["files"]:
            path = entry.path / str(record["path"])

            if not path.is_file():
                problems.append(f"{record['path']}: missing")
            elif path.stat().st_size != int(record["size"]):
                problems.append(
                    f"{record['path']}: size {path.stat().st_size}, not {record['size']}"
                )
            elif sha256_of(path) != record["sha256"]:
                problems.append(f"{record['path']}: sha256 differs from the manifest")

        extra = {str(f.relative_to(entry.path)) for f in _files_of(entry.path)} - listed
        problems += [f"{name}: not in the manifest" for name in sorted(extra)]
        return problems

    def require_intact(self, entry: StoreEntry) -> float:
        """Raise StoreError naming the damage unless every checksum matches; return seconds."""
        started = time.monotonic()
        problems = self.verify(entry)

        if problems:
            raise DamagedCheckpointError(
                f"checkpoint {entry.checkpoint!r} in {entry.path} is damaged, not restored: "
                + "; ".join(problems[:5])
            )

        return time.monotonic() - started

    def mark_verified(self, entry: StoreEntry, ok: bool, detail: str) -> None:
        """Record a drill's result beside the entry (the manifest itself never changes)."""
        record = {"ok": ok, "at": datetime.now(UTC).isoformat(), "detail": detail}
        _write_json(entry.path / VERIFIED, record)

    def newest_verified(self, container_id: str) -> StoreEntry | None:
        """Return the newest entry of the container whose last drill passed."""
        for entry in self.entries(container_id):
            record = entry.verified()

            if record and record.get("ok"):
                return entry

        return None

    def remove(self, container_id: str, checkpoint: str) -> bool:
        """Delete one entry; return whether it existed."""
        folder = self.folder(container_id, checkpoint)

        if not folder.exists():
            return False

        shutil.rmtree(folder)
        return True

    def add(self, folder: Path) -> StoreEntry:
        """Move an unpacked entry (an import) into the store; raise StoreError when damaged."""
        manifest = json.loads((folder / MANIFEST).read_text())
        entry = StoreEntry(folder, manifest)
        self.require_intact(entry)
        target = self.folder(entry.container_id, entry.checkpoint)

        if target.exists():
            raise StoreError(
                f"the store already holds {entry.checkpoint!r} of {entry.container_id}"
            )

        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.move(str(folder), target)
        return StoreEntry(target, manifest)


def _files_of(folder: Path) -> list[Path]:
    """Return the entry's data files (every file but the manifest and drill record)."""
    skip = {folder / MANIFEST, folder / VERIFIED}
    return sorted(f for f in folder.rglob("*") if f.is_file() and f not in skip)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader sees all or nothing."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def criu_version() -> str | None:
    """Return the local CRIU's version, or None when it cannot be run here."""
    import subprocess

    try:
        out = subprocess.run(
            ["criu", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None

    match = re.search(r"Version:\s*(\S+)", out)
    return match[1] if match else None


def _paths_to_archive(changes: list[dict[str, Any]]) -> list[str]:
    """Return the changed paths whose archives together hold every change once.

    An added folder's archive holds all below it; a changed folder whose children are listed
    needs nothing of its own, since the children come separately.
    """
    kinds = {str(c["Path"]): int(c["Kind"]) for c in changes}
    added = [p for p, k in kinds.items() if k == _ADDED]
    chosen: list[str] = []

    for path, kind in sorted(kinds.items()):
        if kind == _DELETED:
            continue

        if any(path.startswith(a.rstrip("/") + "/") for a in added if a != path):
            continue

        if kind == _CHANGED and any(p.startswith(path.rstrip("/") + "/") for p in kinds):
            continue

        chosen.append(path)

    return chosen


def capture_changes(
    calls: EngineCalls, container_id: str, out: Path, sizes: dict[str, int]
) -> dict[str, Any]:
    """Write one tar of the container's changed paths (full paths); return what it holds.

    A file CRIU will size-check and that has grown since the dump is cut back to the dumped
    size (an append-only data file then reads as it did); one that shrank is listed in
    ``mismatched``, since its dump-time bytes are gone.
    """
    changes = calls.changes(container_id)
    paths = _paths_to_archive(changes)
    cut: list[str] = []
    mismatched: list[str] = []

    with tarfile.open(out, "w") as archive:
        for path in paths:
            stream, _stat = calls.get_archive(container_id, path)
            parent = os.path.dirname(path.rstrip("/"))
            blob = io.BytesIO(b"".join(stream))

            with tarfile.open(fileobj=blob, mode="r:") as part:
                for member in part.getmembers():
                    full = os.path.join(parent, member.name)
                    data = part.extractfile(member) if member.isfile() else None
                    member.name = full.lstrip("/")
                    recorded = sizes.get(full)

                    if data is not None and recorded is not None and recorded != member.size:
                        if recorded < member.size:
                            member.size = recorded
                            cut.append(full)
                        else:
                            mismatched.append(full)
                    archive.addfile(member, data)

    return {
        "archive": ROOTFS,
        "paths": paths,
        "deleted": sorted(str(c["Path"]) for c in changes if int(c["Kind"]) == _DELETED),
        "cut_to_dump_size": cut,
        "mismatched": mismatched,
    }
