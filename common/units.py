"""Byte budgets as people write them: `320KB`, `320KiB`, `327680`, `1MB`.

Microcontroller datasheets use binary units, so KB == KiB == 1024 bytes and
MB == MiB == 1024 * 1024 bytes.
"""
from __future__ import annotations

import re

from .errors import UserError

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
          "m": 1024 ** 2, "mb": 1024 ** 2, "mib": 1024 ** 2}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value, what: str = "budget") -> int:
    """Return a byte count; raise UserError naming `what` if it does not parse."""
    if isinstance(value, bool):
        raise UserError(f"{what}: expected a size like 320KB, 320KiB or 327680, got {value!r}")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        match = _PATTERN.match(str(value))
        if not match:
            raise UserError(f"{what}: cannot parse {value!r}; write a size like 320KB, 320KiB or 327680")
        number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise UserError(f"{what}: unknown unit {unit!r} in {value!r}; use B, KB/KiB or MB/MiB")
    size = number * _UNITS[unit]
    if size <= 0 or size != int(size):
        raise UserError(f"{what}: {value!r} is not a positive whole number of bytes")
    return int(size)


def format_bytes(n: int) -> str:
    if n >= 1024 ** 2 and n % 1024 ** 2 == 0:
        return f"{n // 1024 ** 2} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB".replace(".0 KiB", " KiB")
    return f"{n} B"
