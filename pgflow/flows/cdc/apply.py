"""Apply a batch of row changes to a Postgres target in one transaction, with its LSN.

Changes stream into UNLOGGED staging tables (segment.py, stage.py), so memory does not grow
with the batch or with one huge source transaction. Then, set-based (segment_apply.py):
unchanged TOAST values are filled from the row's previous version (earlier in the batch, else
the target: never NULL), each key keeps its last change, deletes are applied (hard, or a
timestamp in `deleted_column`), and the upserts go through the pipeline's keyed strategy. A
TRUNCATE or a new column splits the batch into segments applied in order. The batch's last
commit LSN is stored in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import psycopg
from psycopg import sql

from pgflow.flows.cdc.model import BatchResult, CdcApplyError, CdcTarget
from pgflow.flows.cdc.segment_apply import apply_segment
from pgflow.flows.cdc.stage import StagedBatch, stage_batch
from pgflow.sinks.postgres import ddl, ledger, schema_drift, state
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.cdc import lsn_position, with_deleted_column
from pgflow.sources.changes import ChangeEvent, Truncation
from pgflow.sources.postgres import set_portable_text_format


def apply_batch(
    conn: psycopg.Connection,
    target: CdcTarget,
    source: TableInfo,
    events: Iterable[ChangeEvent],
    position_source: str,
    pipeline: str,
) -> BatchResult:
    """Apply `events` on `conn` (autocommit; one transaction); `source` is the source catalog.

    Stages and applies on the one connection, inside the transaction; `replicate` stages on a
    second connection instead (`stage_batch`), while this one applies the batch before."""
    log = SqlLog(conn)
    with conn.transaction():
        _begin_apply(log, target, source)
        staged = stage_batch(log, target, source, iter(events))
        return _apply_steps(log, target, staged, position_source, pipeline)


def prepare_target(conn: psycopg.Connection, target: CdcTarget, source: TableInfo) -> None:
    """Create or reconcile the target in a transaction of its own, so that staging tables
    made on another connection can take its column types before the first batch applies."""
    log = SqlLog(conn)
    with conn.transaction():
        ddl.lock_target(log, target.table)
        _prepare_target(log, target, source)


def apply_staged(
    conn: psycopg.Connection,
    target: CdcTarget,
    source: TableInfo,
    staged: StagedBatch,
    position_source: str,
    pipeline: str,
) -> BatchResult:
    """Apply a staged batch on `conn` (autocommit): its changes, the drop of its staging
    tables and its end LSN commit together."""
    log = SqlLog(conn)
    with conn.transaction():
        _begin_apply(log, target, source)
        return _apply_steps(log, target, staged, position_source, pipeline)


def _begin_apply(log: SqlLog, target: CdcTarget, source: TableInfo) -> None:
    """The start of an apply's transaction: text settings, the target's lock, its shape."""
    set_portable_text_format(log.conn)
    ddl.lock_target(log, target.table)
    _prepare_target(log, target, source)


def _apply_steps(
    log: SqlLog, target: CdcTarget, staged: StagedBatch, position_source: str, pipeline: str
) -> BatchResult:
    result = staged.result
    for step in staged.steps:
        if isinstance(step, Truncation):
            _truncate(log, target, step.commit_time, result)
        else:
            apply_segment(log, target, step, result)
    if result.end_lsn is not None:
        position = lsn_position(position_source, result.end_lsn)
        change = ledger.settled(log, target.table, result.row_change)
        state.write_position(log, target.table, pipeline, position, change)
    result.statements = log.statements
    return result


def create_missing_target(log: SqlLog, target: CdcTarget, source: TableInfo) -> bool:
    """Create the target in the source's shape (plus the soft-delete column) unless it
    exists; True when it was created."""
    if table_exists(log.conn, target.table):
        return False
    source = with_deleted_column(source, target.deleted_column)
    fillfactor = ddl.fillfactor_for(target.strategy)
    ddl.create_target(log, source, target.table, target.strategy.unique_key, fillfactor)
    return True


def _prepare_target(log: SqlLog, target: CdcTarget, source: TableInfo) -> None:
    """Create the target, or reconcile it with the source's shape (new columns, enums)."""
    source = with_deleted_column(source, target.deleted_column)
    if not create_missing_target(log, target, source):
        ddl.ensure_enums(log, source, target.table.schema)
        ddl.ensure_fillfactor(log, target.table, target.strategy.fillfactor)
    info = describe_table(log.conn, target.table)
    schema_drift.reconcile(log, source, info, target.strategy.on_schema_change)


def _truncate(log: SqlLog, target: CdcTarget, commit_time: datetime, result: BatchResult) -> None:
    if target.on_truncate == "fail":
        raise CdcApplyError(
            f"the source table was truncated (committed {commit_time.isoformat()}) and "
            "source.options.on_truncate is fail; nothing of this batch was applied. Set "
            "on_truncate: apply, or re-snapshot with reset: true"
        )
    result.truncates += 1
    table = target.table.identifier()
    if target.deleted_column is None:
        log.execute(sql.SQL("TRUNCATE {}").format(table))
        result.row_change = RowChange.exact(0)
    else:  # soft: every row stays, marked
        log.execute(
            sql.SQL("UPDATE {} SET {d} = {} WHERE {d} IS NULL").format(
                table, sql.Literal(commit_time), d=sql.Identifier(target.deleted_column)
            )
        )
