"""The pass: its batches, each one sink transaction with the position after it, then the
finishing transaction (deletes, finished=true, ANALYZE when worth it).

Retried as a whole after a transient error (retries.py): it goes on from the position this
run stored last, or from the plan's start when nothing was committed since the plan; a
position another run stored meanwhile stops the run (ConcurrentSync).
"""

from __future__ import annotations

import contextlib

import polars as pl
import psycopg

from pgflow.flows.delta_sync import deletes, upsert
from pgflow.flows.delta_sync.batches import duplicate_error, rendered
from pgflow.flows.delta_sync.context import SyncRun
from pgflow.flows.delta_sync.errors import ConcurrentSync
from pgflow.flows.delta_sync.plan import Plan
from pgflow.flows.delta_sync.position import SyncState
from pgflow.flows.delta_sync.prefetch import prefetched
from pgflow.flows.delta_sync.result import SyncResult, finished_result
from pgflow.sinks.postgres import ledger, state
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.statistics import analyze, worth_analyzing

# Sink batches read and rendered ahead of the one being applied.
PREFETCH_BATCHES = 2


def stream(run: SyncRun, plan: Plan) -> SyncResult:
    """Apply the plan's batches from where this run stands, then finish."""
    request = run.request
    log_ = run.session.sql_log()
    stored = SyncState.from_position(
        state.read_position(log_.conn, request.target), plan.snapshot.table_uri
    )
    if stored is not None and stored.run == run.run_id:  # this run's own progress
        if stored.finished:
            return finished_result(run, plan, stored)
        start_file, start_row = stored.next_file, stored.next_row
    elif stored == run.initial:  # nothing committed since the plan was made
        start_file, start_row = plan.start_file, plan.start_row
    else:
        raise ConcurrentSync(
            f"the position stored for {request.target} changed while this run was retrying "
            f"(another run synced it?); this run stops, run again to continue"
        )
    run.session.ensure_stage(plan.snapshot.column_names)
    ahead = rendered(plan, request.settings, request.key, start_file, start_row)
    batches = prefetched(ahead, PREFETCH_BATCHES)
    with contextlib.closing(batches):  # on failure the reader thread stops now
        for frame, data, next_file, next_row in batches:
            apply(run, plan, frame, data, next_file, next_row)
    return finish(run, plan)


def apply(
    run: SyncRun, plan: Plan, frame: pl.DataFrame, data: bytes, next_file: int, next_row: int
) -> None:
    """One sink transaction: the batch's rows and the position after them."""
    request, snapshot = run.request, plan.snapshot
    log_ = run.session.sql_log()
    after = SyncState(plan.version, False, plan.synced, plan.base, len(plan.files),
                      next_file, next_row, run.run_id, snapshot.table_id)  # fmt: skip
    conn = log_.conn
    with conn.transaction():
        # Durable enough: a crash loses this batch and its position together.
        conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
        try:
            inserted, updated, run.insert_only = upsert.apply_batch(
                log_, request.target, snapshot.column_names, request.key, data,
                run.insert_only, run.verify,
            )  # fmt: skip
        except psycopg.errors.CardinalityViolation:
            raise duplicate_error(frame, request.key, snapshot.table_uri) from None
        _store(run, log_, plan, after, RowChange.added(inserted))
    run.counts.rows_read += frame.height
    run.counts.inserted += inserted
    run.counts.updated += updated
    run.retrier.progressed()


def finish(run: SyncRun, plan: Plan) -> SyncResult:
    """The last transaction: deletes, the finished position, ANALYZE when worth it."""
    request = run.request
    log_ = run.session.sql_log()
    how: str = request.deletes
    gone = None
    if how == "cdf":
        gone, how = deletes.cdf_deletes(request, plan, run.created)
    done = SyncState(plan.version, True, plan.version, plan.base, len(plan.files),
                     len(plan.files), 0, run.run_id, plan.snapshot.table_id)  # fmt: skip
    with log_.conn.transaction():
        deleted = 0
        if how.startswith("key_pass"):
            deleted = deletes.delete_missing_keys(log_, request, plan.snapshot)
        elif gone is not None and gone.height:
            deleted = deletes.delete_keys(log_, request.target, request.key, gone)
        _store(run, log_, plan, done, RowChange.added(-deleted))
        changed = run.counts.inserted + run.counts.updated + deleted
        if run.created or worth_analyzing(changed, run.estimated_rows):
            analyze(log_, request.target)
    run.counts.deleted += deleted
    run.deletes_applied = how
    run.retrier.progressed()
    return finished_result(run, plan, done)


def _store(run: SyncRun, log_: SqlLog, plan: Plan, position: SyncState, change: RowChange) -> None:
    """Store `position` for the target, and the target's rows after `change` (the ledger:
    the row count runs and checks read instead of counting), in the caller's transaction."""
    request = run.request
    stored = position.position(plan.snapshot.table_uri)
    rows = ledger.settled(log_, request.target, change)
    state.write_position(log_, request.target, request.pipeline, stored, rows)
