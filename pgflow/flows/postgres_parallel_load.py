"""A full_refresh exchange filled by several COPY streams (`parallelism`), or why it cannot be.

The new table is committed beside the target, the streams fill it over one shared snapshot
(pgflow.sinks.postgres.parallel_exchange), and one transaction swaps it in and analyzes it.
The caller (postgres_load.load_table) holds the target's session lock throughout, and falls
back to one stream when this says why it must.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import parallel_exchange, staging, state, statistics
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import CopyFormat
from pgflow.sources.catalog import TableInfo
from pgflow.sources.postgres import PostgresTableSource, set_portable_text_format
from pgflow.sources.snapshot_slices import share_snapshot


@dataclass(frozen=True)
class ParallelCopy:
    """What the streams copied into the table now in place of the target."""

    target_info: TableInfo
    copy_format: CopyFormat
    copied: staging.CopyStats  # all streams together
    streams: int
    statements: list[str]


def load_in_parallel(
    conn: psycopg.Connection,
    source: PostgresTableSource,
    target: TableName,
    strategy: StrategySpec,
    streams: Streams,
    progress: staging.ProgressCallback | None,
    pipeline: str = "",
) -> ParallelCopy | str:
    """The exchange filled by `streams`, or why the load must stay one stream (nothing was
    written then, and the source is open)."""
    log = SqlLog(conn)
    source.open()
    with conn.transaction():
        set_portable_text_format(conn)
        reason = parallel_exchange.one_stream_reason(log, source, target)
    if reason is not None:
        return reason
    shared = share_snapshot(source, streams.count)
    if isinstance(shared, str):
        return shared
    prepared = parallel_exchange.prepare(log, source, target, strategy.fillfactor)
    try:
        filling = time.monotonic()
        copies = parallel_exchange.fill(log, source, shared, prepared, streams, progress)
        copied = parallel_exchange.total(copies, time.monotonic() - filling)
        source.close()
        with conn.transaction():
            set_portable_text_format(conn)
            parallel_exchange.swap(log, target, prepared)
            # The ledger: the swapped-in table holds exactly the rows the streams copied.
            state.write_position(log, target, pipeline, None, RowChange.exact(copied.rows))
            statistics.analyze(log, target)
    except BaseException:
        parallel_exchange.drop_unswapped(log, prepared.shadow)
        raise
    return ParallelCopy(
        prepared.target_info, prepared.copy_format, copied, len(copies), log.statements
    )
