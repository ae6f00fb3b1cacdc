"""One read of a table split into block (ctid) ranges that several connections stream at once.

The source's read transaction exports its snapshot (`pg_export_snapshot`); every slice's
connection imports it (`SET TRANSACTION SNAPSHOT`) before its first query, so the slices
together hold exactly the rows the single read would have streamed: no row twice, none
missed, whatever commits on the source meanwhile. The ranges split the table's blocks as
they were once the read held its lock; the last range is open-ended. Postgres 14 and later
scan a ctid range by its blocks only (TID Range Scan), so each slice reads its own part.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.abc import Buffer

from pgflow.sources.postgres import PostgresTableSource, set_portable_text_format

# A slice below this many 8 kB blocks (16 MB) gains less than its connections cost.
MIN_BLOCKS_PER_SLICE = 2048
TID_RANGE_SCAN_VERSION = 140000


@dataclass(frozen=True)
class BlockRange:
    """Blocks [start, end) of a table; `end` None reaches to its end."""

    start: int
    end: int | None

    def condition(self) -> sql.Composable:
        lower = sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({self.start},0)"))
        if self.end is None:
            return lower
        upper = sql.SQL("ctid < {}::tid").format(sql.Literal(f"({self.end},0)"))
        return sql.SQL("{} AND {}").format(lower, upper)


@dataclass(frozen=True)
class SharedSnapshot:
    """The read's exported snapshot and the ranges its slices stream."""

    snapshot_id: str
    ranges: tuple[BlockRange, ...]


def block_ranges(blocks: int, slices: int) -> tuple[BlockRange, ...]:
    """`slices` ranges of about `blocks / slices` blocks each; the last one is open-ended."""
    step = -(-blocks // slices)
    starts = [i * step for i in range(slices)]
    return tuple(
        BlockRange(start, starts[i + 1] if i + 1 < slices else None)
        for i, start in enumerate(starts)
    )


def slices_for(blocks: int, wanted: int) -> int:
    """How many slices a table of `blocks` blocks is worth: at most `wanted`, at least one."""
    return max(1, min(wanted, blocks // MIN_BLOCKS_PER_SLICE))


def share_snapshot(source: PostgresTableSource, wanted: int) -> SharedSnapshot | str:
    """Export an open source's snapshot and split its table for `wanted` slices.

    Returns why the read stays one stream instead, when it must: the table is not a plain
    table, the server cannot scan ctid ranges, or the table is too small to be worth it.
    """
    conn = source.connection
    if conn.info.server_version < TID_RANGE_SCAN_VERSION:
        return "the source server is older than PostgreSQL 14 (no TID range scans)"
    blocks = _lock_and_count_blocks(conn, source.table_sql)
    if blocks is None:
        return f"the source {source.info.table} is not a plain table"
    slices = slices_for(blocks, wanted)
    if slices == 1:
        return (
            f"the source {source.info.table} has {blocks} blocks; two slices need "
            f"{MIN_BLOCKS_PER_SLICE} blocks each ({MIN_BLOCKS_PER_SLICE * 8 // 1024} MB)"
        )
    row = conn.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    return SharedSnapshot(row[0], block_ranges(blocks, slices))


def _lock_and_count_blocks(conn: psycopg.Connection, table: sql.Composable) -> int | None:
    """The table's size in blocks, under a lock that keeps it from being rewritten (VACUUM
    FULL, CLUSTER) while the slices read; None for anything but a plain table."""
    regclass = sql.SQL("{}::regclass").format(sql.Literal(table.as_string(conn)))
    kind = conn.execute(sql.SQL("SELECT relkind FROM pg_class WHERE oid = {}").format(regclass))
    if kind.fetchone() != ("r",):
        return None
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(table))
    size = conn.execute(
        sql.SQL("SELECT pg_relation_size({}) / current_setting('block_size')::int").format(regclass)
    ).fetchone()
    assert size is not None
    return int(size[0])


def read_slice(
    conn: psycopg.Connection, snapshot_id: str, copy: sql.Composed
) -> Generator[Buffer, None, None]:
    """Stream `copy` (a source's COPY TO STDOUT for one range) in the shared snapshot.

    `conn` is the slice's own connection, not in autocommit mode; the read ends its
    transaction when the stream is done or closed."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        # The import must be the transaction's first statement: it replaces its snapshot.
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
        set_portable_text_format(conn)
        with conn.cursor() as cur, cur.copy(copy) as stream:
            yield from stream
    finally:
        conn.rollback()
