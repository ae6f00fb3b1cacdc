"""Durations and byte counts as people write them."""

from __future__ import annotations

from pgflow.bindings.humanize import human_bytes


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1024, 300 * 1024 + 512, 5 * 1024**2, 1024**3)] == [
        "512 bytes",
        "1.0 kB",
        "300.5 kB",
        "5.0 MB",
        "1.0 GB",
    ]
