"""CPU time a local PostgreSQL cluster spends, read from /proc (Linux), for the CDC benches.

A cluster's CPU is its postmaster's and every child's (backends, walsenders, checkpointer,
walwriter, autovacuum): the user + system time of the live children in /proc/<pid>/stat, plus
the postmaster's own and its cutime/cstime, where the kernel adds the time of the children it
has reaped (a walsender that exited with its stream). Differences of two readings are the CPU
seconds spent in between; resolution one clock tick (10 ms).
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

_TICK = os.sysconf("SC_CLK_TCK")


def postmaster_pid(uri: str) -> int:
    """The postmaster of the cluster at `uri`: the parent of a backend of ours."""
    with psycopg.connect(uri) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return _stat(int(row[0]))[1]  # while the backend lives: it exits with the connection


def cluster_cpu_s(postmaster: int) -> float:
    """Seconds of CPU the cluster has used so far (see the module's doc)."""
    ticks, _ = _cpu_and_parent(postmaster, with_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == postmaster:
            continue
        try:
            own, parent = _cpu_and_parent(int(entry.name), with_children=False)
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
        if parent == postmaster:
            ticks += own
    return ticks / _TICK


def _cpu_and_parent(pid: int, *, with_children: bool) -> tuple[int, int]:
    fields, parent = _stat(pid)
    # After "(comm)": state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks, parent


def _stat(pid: int) -> tuple[list[str], int]:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # comm may hold spaces and parentheses
    return fields, int(fields[1])
