"""CRIU's stats-dump image: the freeze time ckptd reports comes from it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ckptd.criu import (
    SERVICE_MAGIC,
    STATS_MAGIC,
    StatsFormatError,
    parse_dump_stats,
    read_dump_stats,
)

# Written by CRIU 4.2.1 (through runc 1.1.5) dumping the example app with a 16 MiB table.
REAL = Path(__file__).resolve().parent / "data" / "criu-4.2.1-stats-dump"


def image(message: bytes, magic: int = STATS_MAGIC) -> bytes:
    """Return a stats image holding one entry, ``message``."""
    return struct.pack("<III", SERVICE_MAGIC, magic, len(message)) + message


def test_a_real_stats_file_gives_criu_times_in_seconds() -> None:
    stats = read_dump_stats(REAL)

    assert 0.147814 == stats.frozen_s
    assert 0.101109 == stats.freezing_s
    assert 0.006586 == stats.memdump_s
    assert 0.005133 == stats.memwrite_s
    assert 4122 == stats.pages_scanned
    # 16 MiB of table in 4 KiB pages, and a few more.
    assert 4114 == stats.pages_written


def test_multi_byte_varints_and_unknown_fields_are_read() -> None:
    # dump { frozen_time: 300 (0xac 0x02), field 15: 1 } after a restore-less stats_entry.
    dump = bytes([0x10, 0xAC, 0x02, 0x78, 0x01])
    stats = parse_dump_stats(image(bytes([0x0A, len(dump)]) + dump))

    assert 0.0003 == stats.frozen_s
    assert 0 == stats.pages_written


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x40\x59", "shorter than its header"),
        (image(b"", magic=0x12345678), "magics"),
        (image(bytes([0x12, 0x00])), "no dump statistics"),
        (image(bytes([0x0A, 0x05, 0x10])), "runs past the end"),
        (image(bytes([0x0A, 0x02, 0x10, 0x80])), "truncated varint"),
        (image(bytes([0x0A, 0x01, 0x0D])), "wire type 5"),
    ],
)
def test_anything_but_a_stats_image_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(StatsFormatError, match=reason):
        parse_dump_stats(data)


def test_a_missing_file_is_a_format_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StatsFormatError, match="stats-dump"):
        read_dump_stats(tmp_path / "stats-dump")
