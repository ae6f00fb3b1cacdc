"""Durations and byte counts as people write them, for check and sensor texts."""

from __future__ import annotations

from datetime import timedelta


def human(duration: timedelta) -> str:
    """A duration as people write it: 45.2s, 5m 3s, 2h 10m, 3d 4h (two largest units)."""
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    parts = [(whole // 86400, "d"), (whole % 86400 // 3600, "h"), (whole % 3600 // 60, "m")]
    parts.append((whole % 60, "s"))
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:2])


def human_bytes(size: int) -> str:
    """A byte count in the unit that reads best, powers of 1024 like Postgres: 300.0 kB, 1.5 GB."""
    value, unit = float(size), "bytes"
    for next_unit in ("kB", "MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{size} bytes" if unit == "bytes" else f"{value:,.1f} {unit}"
