"""Benchmark (not a test): reading a logical slot, the two ways PostgreSQL offers.

    python -m bench.slot_read                     # 1,000,000 inserts in 100 transactions
    BENCH_SLOT_READ_ROWS=200000 python -m bench.slot_read

On a throwaway local cluster: one table, its publication and a pgoutput slot; N rows inserted
in 100 transactions; then the same changes read (and counted, not decoded) twice, each from a
copy of the slot made before the first read:
- stream: pgflow's ReplicationStream (START_REPLICATION over the copy-both protocol), then
  the confirmation at exit;
- peek + advance: `pg_logical_slot_peek_binary_changes` through a server-side cursor, then
  `pg_replication_slot_advance`, the way pgflow read slots before the stream.
Reported per way: wall seconds, messages/s, and the serving backend's CPU seconds (read from
/proc: the cluster runs on this machine). Why it matters: the stream is what lets a slot that
several tables share be read once from the group's lowest position; a peek always starts at
the slot's confirmed position.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from pgflow.localdb.cluster import LocalPostgres
from pgflow.sources.cdc import flush_lsn
from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text
from pgflow.sources.replication_stream import ReplicationStream

ROWS = int(os.environ.get("BENCH_SLOT_READ_ROWS", "1000000"))
TRANSACTIONS = 100
PEEK = (
    "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, NULL,"
    " 'proto_version', '1', 'publication_names', 'pub', 'messages', 'false')"
)


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare(uri: str) -> tuple[int, int]:
    """The table, publication, slot and its copy; N inserts. (start LSN, upto LSN)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION pub FOR TABLE t"
        )
        row = conn.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot('s_stream', 'pgoutput')"
        ).fetchone()
        assert row is not None
        conn.execute("SELECT pg_copy_logical_replication_slot('s_stream', 's_peek')")
        step = ROWS // TRANSACTIONS
        for k in range(TRANSACTIONS):
            conn.execute(
                "INSERT INTO t SELECT g, 'v' FROM generate_series(%s::int, %s::int) g",
                (k * step + 1, (k + 1) * step),
            )
        return lsn_to_int(row[0]), flush_lsn(conn)


def read_stream(uri: str, start: int, upto: int) -> dict[str, Any]:
    @contextmanager
    def connect(**kwargs: Any) -> Any:
        with psycopg.connect(uri, **kwargs) as conn:
            yield conn

    started = time.perf_counter()
    with ReplicationStream(connect, "s_stream", "pub", start, upto) as stream:
        count = sum(1 for _ in stream.messages())
        assert stream.backend_pid is not None
        cpu = backend_cpu_s(stream.backend_pid)
        stream.confirm(upto)
    return _figures("stream", count, time.perf_counter() - started, cpu)


def read_peek(uri: str, upto: int) -> dict[str, Any]:
    started = time.perf_counter()
    with psycopg.connect(uri) as conn:
        with conn.cursor(name="changes", binary=True) as cursor:
            cursor.itersize = 5000
            cursor.execute(PEEK, ("s_peek", lsn_to_text(upto)))
            count = sum(1 for _ in cursor)
        conn.rollback()
        conn.execute(
            "SELECT pg_replication_slot_advance('s_peek', %s::pg_lsn)", (lsn_to_text(upto),)
        )
        conn.commit()
        cpu = backend_cpu_s(conn.info.backend_pid)
    return _figures("peek + advance", count, time.perf_counter() - started, cpu)


def _figures(way: str, count: int, seconds: float, cpu: float) -> dict[str, Any]:
    return {
        "way": way,
        "messages": count,
        "wall_s": seconds,
        "per_s": count / seconds,
        "server_cpu_s": cpu,
    }


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="pgflow-bench-slot-", dir="/tmp"))
    root.chmod(0o755)  # the server may run as another OS user (as root: postgres)
    cluster = LocalPostgres(root / "localdb")
    info = cluster.start(["source"])
    try:
        start, upto = prepare(info.uri("source"))
        for figures in (
            read_stream(info.uri("source"), start, upto),
            read_peek(info.uri("source"), upto),
        ):
            print(
                f"{figures['way']:>15}: {figures['messages']:,} messages in {figures['wall_s']:.2f} s"
                f" = {figures['per_s']:,.0f}/s; serving backend CPU {figures['server_cpu_s']:.2f} s"
            )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
