"""Sizes in the policy ("20GiB", "500MB", 1048576) and back into short text for people."""

from __future__ import annotations

import re
from decimal import Decimal

SIZE_FORMS = (
    "bytes (1048576) or a number with a unit: B, kB, MB, GB, TB, PB (powers of 1000) or "
    "KiB, MiB, GiB, TiB, PiB (powers of 1024), e.g. 20GiB, 1.5TB"
)
_SIZE_RE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?) ?(?P<unit>[a-zA-Z]*)")
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}
_BINARY = (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def parse_size(text: object) -> int:
    """Return the number of bytes `text` names, e.g. 21474836480 for "20GiB".

    Raises ValueError naming the accepted forms when `text` is none of them.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"expected a size: {SIZE_FORMS}")

    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text} is negative; expected {SIZE_FORMS}")

        return text

    match = _SIZE_RE.fullmatch(text.strip())
    unit = "b" if match is None or not match["unit"] else match["unit"].lower()

    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; expected {SIZE_FORMS}")

    return int(Decimal(match["number"]) * _UNITS[unit])


def format_size(size: int | None) -> str:
    """Return `size` bytes in binary units, e.g. "1.5GiB" or "20GiB"; "?" when unknown."""
    if size is None:
        return "?"

    for unit, factor in _BINARY:
        if size >= factor:
            number = f"{size / factor:.1f}".removesuffix(".0")
            return f"{number}{unit}"

    return f"{size}B"
