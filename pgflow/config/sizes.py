"""Byte sizes in specs: `512MB`, `1 GB`, `2GiB`, or a plain number of bytes."""

from __future__ import annotations

import re

_UNITS = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
    "tb": 1024**4,
    "tib": 1024**4,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_size(value: object) -> int:
    """Bytes; like Postgres settings, kB/MB/GB are powers of 1024. Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _PATTERN.match(str(value).lower()) if isinstance(value, str) else None
    if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
        raise ValueError(
            f"'{value}' is not a size; write a positive number and a unit, e.g. 512MB or 1GB"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2) or "b"])
