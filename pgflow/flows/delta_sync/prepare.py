"""The run's first step: lock, pin the Delta version, read the stored position, skip an
already synced version, create or reconcile the target, and plan the pass.

Retried as a whole after a transient error (retries.py); what it learns goes on the run
(context.py).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.delta_sync import schema
from pgflow.flows.delta_sync.context import SyncRun
from pgflow.flows.delta_sync.errors import DeltaSyncError
from pgflow.flows.delta_sync.plan import Plan, PlanInputs, choose_plan
from pgflow.flows.delta_sync.position import SyncState
from pgflow.flows.delta_sync.result import SyncResult, skipped_result
from pgflow.flows.delta_sync.target import SOURCE_REPLACED, claim_position, forget_position
from pgflow.sinks.postgres import ddl
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import delta
from pgflow.sources.catalog import table_exists

log = logging.getLogger(__name__)


def prepare(run: SyncRun, full_pass: bool) -> Plan | SyncResult:
    """The plan of the pass, or the result of a run that has nothing to do."""
    request = run.request
    run.verify = full_pass
    log_ = run.session.sql_log()
    snapshot = delta.open_snapshot(request.path, storage_options=request.storage_options)
    schema.check_columns(snapshot, request.key)
    if request.deletes == "cdf" and not snapshot.change_data_feed:
        raise DeltaSyncError(
            f"deletes='cdf' needs the change data feed: Delta table {snapshot.table_uri} "
            f"does not set delta.enableChangeDataFeed=true. Enable it, or use "
            f"deletes='key_pass'"
        )
    stored, reset = claim_position(log_, request.target, request.pipeline)
    run.position_reset = run.position_reset or reset
    stored_state = SyncState.from_position(stored, snapshot.table_uri)
    run.initial = initial = _same_table(run, log_, snapshot, stored_state)
    exists = table_exists(log_.conn, request.target)
    if exists and not full_pass and _already_synced(initial, snapshot):
        return skipped_result(run, snapshot, stored)
    added = _prepare_target(run, log_, snapshot, exists)
    if exists:
        run.columns_added = added
    else:
        run.created = True  # stays True should a retry find the target this run created
    inputs = PlanInputs(
        path=request.path,
        snapshot=snapshot,
        storage_options=request.storage_options,
        full_pass=full_pass or bool(run.columns_added),
        columns_added=bool(run.columns_added),
        existed=exists,
        source_replaced=run.position_reset == SOURCE_REPLACED,
    )
    return choose_plan(inputs, initial)


def _already_synced(initial: SyncState | None, snapshot: delta.DeltaSnapshot) -> bool:
    return initial is not None and initial.finished and initial.version == snapshot.version


def _same_table(
    run: SyncRun, log_: SqlLog, snapshot: delta.DeltaSnapshot, stored: SyncState | None
) -> SyncState | None:
    """`stored`, unless it describes another Delta table once at this path (then it is
    forgotten): a re-created table's versions restart, so its numbers would claim rows
    the target never got. Its rows stay; the full pass's deletes (key_pass) remove theirs."""
    if stored is None or stored.table_id in ("", snapshot.table_id):
        return stored
    request = run.request
    forget_position(log_, request.target, request.pipeline, empty=False)
    run.position_reset = run.position_reset or SOURCE_REPLACED
    log.warning("sync into %s: %s", request.target, SOURCE_REPLACED)
    return None


def _prepare_target(
    run: SyncRun, log_: SqlLog, snapshot: delta.DeltaSnapshot, exists: bool
) -> tuple[str, ...]:
    """Create the target, or reconcile it with the Delta table (returns the columns added);
    note its size and whether it is empty. One transaction."""
    request = run.request
    added: tuple[str, ...] = ()
    with log_.conn.transaction():
        if exists:
            added = schema.reconcile_target(log_, snapshot, request.target, request.key)
            ddl.ensure_fillfactor(log_, request.target, request.fillfactor)
        else:
            fillfactor = request.fillfactor or ddl.UPSERT_FILLFACTOR
            schema.create_target(log_, snapshot, request.target, request.key, fillfactor)
        run.estimated_rows = _estimated_rows(log_.conn, request.target)
        run.insert_only = _is_empty(log_.conn, request.target)
    return added


def _is_empty(conn: psycopg.Connection, table: TableName) -> bool:
    query = sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(table.identifier())
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def _estimated_rows(conn: psycopg.Connection, table: TableName) -> int | None:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
        (table.identifier().as_string(conn),),
    ).fetchone()
    return None if row is None or row[0] < 0 else int(row[0])
