"""full_refresh `method: exchange` with `parallelism: N`: N COPY streams fill the new table.

One sink session can hold only one COPY, and on a large table that one stream is the limit
(the sink's COPY FROM, a single backend, is the slowest step). So the new table is created
and committed first, N connection pairs fill it at once, each reading one block range of
the source in the same exported snapshot (`snapshot_slices`), and one transaction then
indexes it and swaps it in, exactly as the one-stream exchange does.

What makes that safe:
- The new table lives in the staging schema under a name no reader uses, until the swap
  moves it into place: readers see the old table, then the whole new one.
- It carries the staging mark with the load's backend; the load drops it when it fails, and
  a later run drops it when the load was killed (`staging.drop_orphaned_staging`).
- The load holds the target's session lock from start to swap, so no other run of the
  target interleaves.
- Anything the one-stream load would do inside its transaction that a committed table
  cannot take (creating the target, altering its columns) keeps the load at one stream.

Rows are not written frozen (COPY FREEZE needs the table created in the COPY's own
transaction), so the first VACUUM sets their hint bits and freezes them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.abc import Buffer

from pgflow.config.model import TableName
from pgflow.sinks.postgres import copy_format, ddl, exchange, staging
from pgflow.sinks.postgres.schema_drift import find_drift
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import CopyFormat
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.postgres import PostgresTableSource, set_portable_text_format
from pgflow.sources.snapshot_slices import SharedSnapshot, read_slice


@dataclass(frozen=True)
class Streams:
    """How to open each further stream's connections; the load's own are not reused."""

    count: int
    connect_source: Callable[[], psycopg.Connection]
    connect_sink: Callable[[], psycopg.Connection]


@dataclass(frozen=True)
class Prepared:
    """The committed, empty new table and what the streams need to fill it."""

    shadow: TableName
    tag: str  # names the swap's temporary objects
    target_info: TableInfo
    copy_format: CopyFormat


def one_stream_reason(log: SqlLog, source: PostgresTableSource, target: TableName) -> str | None:
    """Why this load must stay one stream, or None; run in a transaction on the sink."""
    if not table_exists(log.conn, target):
        return "the first load creates the target in its own transaction"
    if find_drift(log, source.info, describe_table(log.conn, target)):
        return "the load changes the target's columns in its own transaction"
    return None


def prepare(
    log: SqlLog, source: PostgresTableSource, target: TableName, fillfactor: int | None
) -> Prepared:
    """Commit an empty new table beside the target (autocommit `log`); refuses a target the
    swap would break before anything is created."""
    with log.conn.transaction():
        set_portable_text_format(log.conn)
        ddl.lock_target(log, target)
        staging.drop_orphaned_staging(log, target)
        exchange.plan_exchange(log.conn, target)  # raises ExchangeRefused
        ddl.ensure_enums(log, source.info, target.schema)  # new labels must be committed
        ddl.ensure_fillfactor(log, target, fillfactor)
        target_info = describe_table(log.conn, target)
        ddl.create_shared_object(
            log,
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(staging.STAGING_SCHEMA)
            ),
        )
        tag = secrets.token_hex(4)
        shadow = TableName(staging.STAGING_SCHEMA, exchange.shadow_name(target, tag))
        exchange.create_shadow(log, target, shadow)
        staging.mark_committed_staging(log, shadow, target)
    return Prepared(shadow, tag, target_info, copy_format.choose(source.info, target_info))


class StreamStopped(Exception):
    """Another stream of the load failed; this one stopped where it was."""


def fill(
    log: SqlLog,
    source: PostgresTableSource,
    shared: SharedSnapshot,
    prepared: Prepared,
    streams: Streams,
    progress: staging.ProgressCallback | None,
) -> tuple[staging.CopyStats, ...]:
    """Stream every block range into the new table at once, each range committed by its own
    sink connection; each stream's COPY is recorded in `log`. The first failure stops the
    other streams and is raised."""
    columns = source.info.column_names
    report = _SummedProgress(len(shared.ranges), progress)
    logs = [SqlLog(log.conn) for _ in shared.ranges]
    stop = _Stop()

    def copy_range(index: int) -> staging.CopyStats:
        with ExitStack() as stack:
            src = stop.track(stack.enter_context(closing(streams.connect_source())))
            logs[index].conn = dst = stop.track(
                stack.enter_context(closing(streams.connect_sink()))
            )
            copy = source.copy_query(
                columns, prepared.copy_format, shared.ranges[index].condition()
            )
            chunks = stack.enter_context(closing(read_slice(src, shared.snapshot_id, copy)))
            with dst.transaction():
                set_portable_text_format(dst)
                return staging.copy_into(
                    logs[index], prepared.shadow, columns, stop.checked(chunks),
                    prepared.copy_format, lambda rows, size: report(index, rows, size),
                )  # fmt: skip

    with ThreadPoolExecutor(len(shared.ranges), thread_name_prefix="pgflow-copy") as pool:
        futures = [pool.submit(copy_range, i) for i in range(len(shared.ranges))]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failure = next((e for f in futures if f in done and (e := f.exception()) is not None), None)
        if failure is not None:
            stop.all()
            wait(futures)
            raise failure
    for stream_log in logs:
        log.statements.extend(stream_log.statements)
    return tuple(f.result() for f in futures)


class _Stop:
    """Stops every stream of a load: each checks between chunks, and the statements they
    wait on are cancelled (rows already in flight would otherwise be read to their end)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[psycopg.Connection] = []

    def track(self, conn: psycopg.Connection) -> psycopg.Connection:
        with self._lock:
            self._conns.append(conn)
        return conn

    def checked(self, chunks: Iterable[Buffer]) -> Iterator[Buffer]:
        for chunk in chunks:
            if self._event.is_set():
                raise StreamStopped("another COPY stream of this load failed")
            yield chunk

    def all(self) -> None:
        self._event.set()
        with self._lock:
            for conn in self._conns:
                with suppress(psycopg.Error):
                    conn.cancel_safe()


def swap(log: SqlLog, target: TableName, prepared: Prepared) -> None:
    """Move the filled table into the target's schema and swap it in (the load's transaction)."""
    plan = exchange.plan_exchange(log.conn, target)
    shadow = prepared.shadow
    staged = shadow.identifier()
    log.execute(sql.SQL("COMMENT ON TABLE {} IS NULL").format(staged))  # the staging mark
    log.execute(
        sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(staged, sql.Identifier(target.schema))
    )
    exchange.swap(log, target, TableName(target.schema, shadow.name), plan, prepared.tag)


def drop_unswapped(log: SqlLog, shadow: TableName) -> None:
    """After a failure, the new table goes (a lost sink leaves it to the next run)."""
    with suppress(psycopg.Error):
        log.conn.rollback()
        staging.drop_staging(log, shadow)


class _SummedProgress:
    """Adds up the streams' progress; reports at most once per staging.PROGRESS_EVERY_SECONDS."""

    def __init__(self, count: int, progress: staging.ProgressCallback | None):
        self._each = [(0, 0)] * count
        self._progress = progress
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def __call__(self, index: int, rows: int, size: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._each[index] = (rows, size)
            now = time.monotonic()
            if now - self._last < staging.PROGRESS_EVERY_SECONDS * 0.9:
                return
            self._last = now
            self._progress(sum(r for r, _ in self._each), sum(b for _, b in self._each))


def total(copies: Sequence[staging.CopyStats], seconds: float) -> staging.CopyStats:
    return staging.CopyStats(
        rows=sum(c.rows for c in copies), bytes=sum(c.bytes for c in copies), seconds=seconds
    )
