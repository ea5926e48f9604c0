"""CRIU's dump statistics: how long the dumped processes were frozen.

CRIU writes a ``stats-dump`` image into its work folder after every dump. No Python reader of
CRIU images is packaged (Debian's `crit` comes with a CRIU too old for these kernels), and the
file is one small protobuf message, so it is decoded here. The layout, from CRIU's
``images/stats.proto`` and ``criu/include/magic.h``:

- two little-endian u32 magics: the service-image magic, then the stats magic;
- one entry: a u32 length, then a ``stats_entry`` message whose field 1 is a
  ``dump_stats_entry`` (times in microseconds: 1 freezing_time, 2 frozen_time,
  3 memdump_time, 4 memwrite_time; 5 pages_scanned, 7 pages_written).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ckptd.errors import CkptdError

SERVICE_MAGIC = 0x55105940
STATS_MAGIC = 0x57093306
_HEADER = struct.Struct("<III")
_VARINT, _LENGTH_DELIMITED = 0, 2
# dump_stats_entry field numbers (stats.proto).
_DUMP = 1
_FREEZING, _FROZEN, _MEMDUMP, _MEMWRITE, _PAGES_SCANNED, _PAGES_WRITTEN = 1, 2, 3, 4, 5, 7


class StatsFormatError(CkptdError):
    """A stats-dump file that is not what CRIU writes."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: not a CRIU stats-dump image: {reason}")


@dataclass(frozen=True)
class DumpStats:
    """The times (seconds) and page counts CRIU recorded for one dump."""

    freezing_s: float
    frozen_s: float
    memdump_s: float
    memwrite_s: float
    pages_scanned: int
    pages_written: int


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """Return the varint at ``offset`` and the offset after it; raise ValueError if cut off."""
    value, shift = 0, 0
    while True:
        if offset >= len(data) or shift > 63:
            raise ValueError("truncated varint")

        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def _fields(data: bytes) -> dict[int, int | bytes]:
    """Return the varint and length-delimited fields of one protobuf message, by number."""
    fields: dict[int, int | bytes] = {}
    offset = 0
    while offset < len(data):
        key, offset = read_varint(data, offset)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            fields[number], offset = read_varint(data, offset)
        elif wire_type == _LENGTH_DELIMITED:
            length, offset = read_varint(data, offset)
            if offset + length > len(data):
                raise ValueError(f"field {number} runs past the end")

            fields[number] = data[offset : offset + length]
            offset += length
        else:
            raise ValueError(f"field {number} has wire type {wire_type}, not used by stats.proto")

    return fields


def parse_dump_stats(data: bytes, source: str = "stats-dump") -> DumpStats:
    """Return the dump statistics in the bytes of a stats-dump image.

    Raises StatsFormatError when the magics, the length or the message are wrong.
    """
    if len(data) < _HEADER.size:
        raise StatsFormatError(source, f"{len(data)} bytes, shorter than its header")

    service, magic, length = _HEADER.unpack_from(data)
    if (service, magic) != (SERVICE_MAGIC, STATS_MAGIC):
        raise StatsFormatError(source, f"magics {service:#x} {magic:#x}")

    body = data[_HEADER.size : _HEADER.size + length]
    try:
        dump = _fields(body).get(_DUMP)
        if not isinstance(dump, bytes):
            raise ValueError("no dump statistics in it (a restore's stats file?)")

        stats = _fields(dump)
    except ValueError as error:
        raise StatsFormatError(source, str(error)) from None

    def number(field: int) -> int:
        value = stats.get(field, 0)
        return value if isinstance(value, int) else 0

    return DumpStats(
        freezing_s=number(_FREEZING) / 1e6,
        frozen_s=number(_FROZEN) / 1e6,
        memdump_s=number(_MEMDUMP) / 1e6,
        memwrite_s=number(_MEMWRITE) / 1e6,
        pages_scanned=number(_PAGES_SCANNED),
        pages_written=number(_PAGES_WRITTEN),
    )


def read_dump_stats(path: Path) -> DumpStats:
    """Return the statistics of the stats-dump image at ``path``; raise StatsFormatError."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise StatsFormatError(path, error.strerror or str(error)) from None

    return parse_dump_stats(data, str(path))
