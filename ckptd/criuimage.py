"""What CRIU's files.img says about a dumped process's regular files: their paths and sizes.

CRIU checks on restore that each regular file the process had open (except write-only append
logs) has the size it had at the dump. The store captures the container's files just after the
dump, while the app runs again, so a file may have grown by then; these sizes let the store cut
its copy back to the dump's.

An image is two 32-bit magics, then entries, each a 32-bit little-endian length and a protobuf
``file_entry`` message. Only a few fields are read, so a tiny protobuf reader does.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ckptd.criu import read_varint

# file_entry: 3 = reg (a reg_file_entry); reg_file_entry: 6 = name, 8 = size.
_FILE_ENTRY_REG = 3
_REG_NAME = 6
_REG_SIZE = 8
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """Return the (field number, value) pairs of a protobuf message: ints or raw bytes."""
    found: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(message):
        key, pos = read_varint(message, pos)
        number, kind = key >> 3, key & 7
        value: int | bytes

        if kind == _VARINT:
            value, pos = read_varint(message, pos)
        elif kind == _LENGTH:
            length, pos = read_varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif kind == _FIXED64:
            value, pos = int.from_bytes(message[pos : pos + 8], "little"), pos + 8
        elif kind == _FIXED32:
            value, pos = int.from_bytes(message[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {kind}")

        found.append((number, value))

    return found


def regular_file_sizes(files_img: Path) -> dict[str, int]:
    """Return path -> size for the regular files whose size CRIU will check on restore.

    Raises ValueError when the image is not one CRIU wrote.
    """
    data = files_img.read_bytes()
    sizes: dict[str, int] = {}
    pos = 8
    while pos + 4 <= len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        entry = data[pos + 4 : pos + 4 + length]
        pos += 4 + length

        for number, value in _fields(entry):
            if number == _FILE_ENTRY_REG and isinstance(value, bytes):
                reg = dict(_fields(value))
                name, size = reg.get(_REG_NAME), reg.get(_REG_SIZE)

                if isinstance(name, bytes) and isinstance(size, int):
                    sizes[name.decode(errors="replace")] = size

    return sizes
