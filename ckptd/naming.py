"""Checkpoint names: how ckptd writes them and recognises its own.

A name is ``ckptd-<target>-<UTC time>``, e.g. ``ckptd-solver-20261203T214500Z``. Docker accepts
only ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``; target names have no hyphen, so the name parses back
unambiguously. When a name of that second exists already, ``-2``, ``-3``… is appended.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

# What Docker accepts as a container name or id and as a checkpoint name. The SDK leaves "/"
# unescaped in URL paths, so anything else could address another endpoint ("../../x"), and a
# checkpoint name is a folder name under the container's checkpoints/.
CONTAINER_REF = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,253}")
CHECKPOINT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,253}")
PREFIX = "ckptd-"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(
    r"^ckptd-(?P<target>[a-zA-Z0-9][a-zA-Z0-9_.]*)-(?P<time>\d{8}T\d{6}Z)(?:-(?P<seq>[2-9]|[1-9]\d+))?$"
)


@dataclass(frozen=True, order=True)
class CheckpointRef:
    """A checkpoint ckptd made, as read back from its name; orders oldest first."""

    created: datetime
    seq: int
    target: str
    name: str


def make_checkpoint_name(target: str, when: datetime, existing: Collection[str]) -> str:
    """Return a name for a checkpoint of ``target`` at ``when`` not among ``existing``."""
    base = f"{PREFIX}{target}-{when.astimezone(UTC).strftime(TIME_FORMAT)}"
    name = base
    seq = 1

    while name in existing:
        seq += 1
        name = f"{base}-{seq}"

    return name


def parse_checkpoint_name(name: str) -> CheckpointRef | None:
    """Return what a ckptd checkpoint name says, or None for a name ckptd did not make."""
    match = _NAME.match(name)
    if match is None:
        return None

    created = datetime.strptime(match["time"], TIME_FORMAT).replace(tzinfo=UTC)
    return CheckpointRef(created, int(match["seq"] or 1), match["target"], name)


def checkpoints_of(target: str, names: Collection[str]) -> list[CheckpointRef]:
    """Return ``target``'s checkpoints among ``names``, newest first."""
    refs = [ref for ref in map(parse_checkpoint_name, names) if ref and ref.target == target]
    return sorted(refs, reverse=True)
