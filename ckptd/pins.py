"""Pinned checkpoints: ones the operator asked ckptd never to delete (`ckptd pin`).

Pins live in one small JSON file, ``pins.json`` under the daemon's ``state_dir``, mapping each
target to the names pinned for it. The daemon reads it and the CLI writes it, possibly at the same
moment, so every change holds an exclusive flock on a lock file beside it and replaces the file
atomically (write a temporary file, fsync, rename): a reader sees the old set or the new one,
never half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ckptd.errors import CkptdError

PINS_FILE = "pins.json"
_LOCK_FILE = ".pins.lock"
_VERSION = 1


class PinsError(CkptdError):
    """The pins file cannot be read or written."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"pins file {path}: {reason}")


def load_pins(state_dir: Path) -> dict[str, set[str]]:
    """Return the pinned checkpoint names by target; empty when nothing was ever pinned.

    Raises PinsError when the file exists but cannot be read or is not a pins file.
    """
    path = state_dir / PINS_FILE

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise PinsError(path, error.strerror or str(error)) from None

    return _decode(path, text)


def pinned(state_dir: Path, target: str) -> set[str]:
    """Return the names pinned for `target`."""
    return load_pins(state_dir).get(target, set())


def pin(state_dir: Path, target: str, name: str) -> bool:
    """Pin checkpoint `name` of `target`; return False when it was pinned already."""
    with _locked(state_dir):
        pins = load_pins(state_dir)
        names = pins.setdefault(target, set())

        if name in names:
            return False

        names.add(name)
        _write(state_dir, pins)

    return True


def unpin(state_dir: Path, target: str, name: str) -> bool:
    """Unpin checkpoint `name` of `target`; return False when it was not pinned."""
    with _locked(state_dir):
        pins = load_pins(state_dir)
        names = pins.get(target, set())

        if name not in names:
            return False

        names.discard(name)

        if not names:
            del pins[target]

        _write(state_dir, pins)

    return True


def _decode(path: Path, text: str) -> dict[str, set[str]]:
    """Return the pins `text` holds; raise PinsError when it is not what ckptd writes."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PinsError(path, f"not JSON ({error})") from None

    pins = data.get("pins") if isinstance(data, dict) else None
    valid = isinstance(pins, dict) and all(
        isinstance(names, list) and all(isinstance(name, str) for name in names)
        for names in pins.values()
    )

    if not valid or not isinstance(pins, dict):
        raise PinsError(path, 'expected {"version": 1, "pins": {"<target>": ["<name>", ...]}}')

    return {str(target): set(names) for target, names in pins.items()}


def _ensure_dir(state_dir: Path) -> None:
    """Create the state folder private to its owner, or make it so."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

        if stat.S_IMODE(state_dir.stat().st_mode) != 0o700:
            # The pins say what must never be deleted; nobody else may change them.
            os.chmod(state_dir, 0o700)
    except OSError as error:
        raise PinsError(state_dir / PINS_FILE, error.strerror or str(error)) from None


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Hold the pins lock across processes for one read-change-write."""
    _ensure_dir(state_dir)

    with open(state_dir / _LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)

        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(state_dir: Path, pins: dict[str, set[str]]) -> None:
    """Replace the pins file atomically with `pins`."""
    data = {"version": _VERSION, "pins": {t: sorted(n) for t, n in sorted(pins.items())}}
    path = state_dir / PINS_FILE
    descriptor, temporary = tempfile.mkstemp(dir=state_dir, prefix=".pins-", suffix=".tmp")

    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise PinsError(path, error.strerror or str(error)) from None
