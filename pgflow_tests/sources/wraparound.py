"""Push a throw-away local cluster's transaction counter to just below 2^32 (pg_resetwal -x).

For tests only: it rewrites the cluster's control file. The steps, and why each is needed:

1. VACUUM FREEZE every database. pg_resetwal moves the counter, not the rows: a row written by
   transaction 700 and not frozen would, with the next ID at 2^32 - 20,000, look as if a future
   transaction wrote it, and vanish (even the pg_database row of "postgres").
2. Stop the server; run ``pg_resetwal -x XID -u OLDEST`` as the server's OS user. Since
   PostgreSQL 13, -x no longer moves oldestXid: -u puts it 100M transactions back, far from the
   vacuum, warn and stop limits it anchors.
3. Create the pg_xact (commit log) segment covering XID, which the server expects to exist:
   32 pages x 32,768 transactions (2 status bits each) = 2^20 transactions and 256 kB per
   segment, named by ``XID // 2^20`` in 4 hex digits (0FFF here), all zeros ("in progress").
   Past the wrap the server zeroes page 0 of the existing segment 0000 itself (at XID 3).
4. Start again and VACUUM FREEZE once more, so relfrozenxid/datfrozenxid are recent instead of
   "in the future" (vacuum logs "overwrote invalid relfrozenxid"): the cluster then looks like
   one that really ran ~2^32 transactions. Not template0: it refuses connections, and opening
   it writes a pg_database row its own stale relfrozenxid makes VACUUM reject ("found xmin ...
   from before relfrozenxid"). initdb froze all of it, so its only trace is a datfrozenxid "in
   the future" until the wrap, hence the server log's harmless "some databases have not been
   vacuumed in over 2 billion transactions" warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from psycopg import sql

from pgflow.localdb.cluster import ClusterInfo, LocalPostgres

XID_SPACE = 2**32
NEAR_WRAP_XID = XID_SPACE - 20_000
OLDEST_XID_LAG = 100_000_000
CLOG_PAGE_XIDS = 32_768  # 8 kB page, 2 status bits per transaction
CLOG_SEGMENT_PAGES = 32
CLOG_SEGMENT_XIDS = CLOG_PAGE_XIDS * CLOG_SEGMENT_PAGES
CLOG_SEGMENT_BYTES = 8192 * CLOG_SEGMENT_PAGES


def push_near_wraparound(cluster: LocalPostgres, xid: int = NEAR_WRAP_XID) -> ClusterInfo:
    """Restart the (fresh, disposable) cluster with ``xid`` as its next transaction ID."""
    freeze_all(cluster.start())
    cluster.stop()
    cluster.run_tool(
        "pg_resetwal",
        "-x",
        str(xid),
        "-u",
        str(xid - OLDEST_XID_LAG),
        "-D",
        str(cluster.data_dir),
    )
    add_clog_segment(cluster.data_dir, xid)
    info = cluster.start()
    freeze_all(info)
    now = current_xid(info.uri("postgres"))
    if not xid <= now < xid + 1_000:
        raise RuntimeError(f"pg_resetwal -x {xid} did not take: next transaction ID is {now}")
    return info


def freeze_all(info: ClusterInfo) -> None:
    """VACUUM FREEZE every database that accepts connections (template0: see the docstring)."""
    with psycopg.connect(info.uri("postgres"), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for name in names:
        with psycopg.connect(info.uri(name), autocommit=True) as conn:
            conn.execute("VACUUM FREEZE")


def add_clog_segment(data_dir: Path, xid: int) -> Path:
    """The zero-filled pg_xact segment holding ``xid``, owned like the data directory."""
    segment = data_dir / "pg_xact" / f"{xid // CLOG_SEGMENT_XIDS:04X}"
    if not segment.exists():
        segment.write_bytes(bytes(CLOG_SEGMENT_BYTES))
        owner = data_dir.stat()  # as root we write it, but the server user must own it
        os.chown(segment, owner.st_uid, owner.st_gid)
        segment.chmod(0o600)
    return segment


def current_xid(uri: str) -> int:
    """A new transaction's epoch-extended (64-bit) ID: it consumes one ID."""
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def burn_xids(uri: str, count: int) -> int:
    """Commit ``count`` transactions that each take an ID; the epoch-extended ID after them."""
    body = (
        f"BEGIN FOR i IN 1..{int(count)} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END"
    )
    with psycopg.connect(uri, autocommit=True) as conn:
        # A DO block may COMMIT when it runs outside a transaction block (autocommit).
        conn.execute(sql.SQL("DO {}").format(sql.Literal(body)))
    return current_xid(uri)


def burn_past_wraparound(uri: str, margin: int = 10_000) -> int:
    """Burn IDs until the 32-bit counter has wrapped and gone ``margin`` further."""
    return burn_xids(uri, XID_SPACE + margin - current_xid(uri))
