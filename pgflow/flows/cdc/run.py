"""One CDC run of a pipeline: set up, snapshot when needed, then stream batches.

Order of effects, which is what makes it exactly-once:
1. a batch is applied in ONE sink transaction that also stores the batch's end LSN;
2. only then is the slot advanced to that LSN.
A crash between 1 and 2 leaves the slot behind the sink: the next run advances it to the
stored LSN first, and skips any transaction that ends at or before it. A crash before 1 loses
nothing: the slot still holds the changes.
"""

from __future__ import annotations

import psycopg

from pgflow.config.model import TableName
from pgflow.flows.cdc.model import CdcResult, CdcSettings, CdcTarget, ConnectSink, RunContext
from pgflow.flows.cdc.snapshot import check_slot_is_ours, start
from pgflow.flows.cdc.stream import stream
from pgflow.sinks.postgres import ddl, position_owner, state
from pgflow.sources import cdc, publication
from pgflow.sources.base import Position
from pgflow.sources.catalog import describe_table
from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text


def replicate(
    connect_source: cdc.ConnectSource,
    connect_sink: ConnectSink,
    sink: psycopg.Connection,
    table: TableName,
    target: CdcTarget,
    settings: CdcSettings,
    pipeline: str,
) -> CdcResult:
    """Bring `target` up to date with `table` through the slot; `sink` is autocommit.

    `connect_source` and `connect_sink` open the run's further connections (the connection
    resource's, so that secrets stay with it). The target's lock is held for the whole run,
    not only per batch: a second run of the same pipeline starts once this one is done, from
    the position this one stored."""
    with ddl.holding_target(sink, target.table), connect_source(autocommit=True) as control:
        run = RunContext(
            connect_source, connect_sink, control, sink, table, target, settings, pipeline
        )
        result = _bring_up_to_date(run)
    result.position_after = state.read_position(sink, target.table)
    return result


def _bring_up_to_date(run: RunContext) -> CdcResult:
    control, settings = run.control, run.settings
    info = describe_table(control, run.table)
    cdc.check_prerequisites(control, run.table)
    _check_key_is_identity(control, run.table, run.target)
    owned = position_owner.owned_position(run.sink, run.target.table)  # a dropped target: snapshot
    result = CdcResult(position_before=owned.position, position_reset=owned.reset)
    reason = owned.reset or _snapshot_reason(owned.position, run.identity, settings.reset)
    if reason and cdc.slot_info(control, settings.slot) is not None:
        check_slot_is_ours(control, settings, run.pipeline)  # start() drops and recreates it
    owner = publication.Ownership(run.pipeline, settings.slot, settings.auto_cleanup)
    result.publication_changed = publication.ensure_publication(
        control, settings.publication, run.table, owner
    )
    if reason:
        result.snapshot_reason = reason
        result.snapshot = start(run, reason)
    database = control.info.dbname
    slot = cdc.check_slot(cdc.slot_info(control, settings.slot), settings.slot, database)
    applied = _stored_lsn(run)
    result.caught_up_slot = _align_slot(control, settings.slot, slot, applied)
    result.batches.extend(stream(run, info, applied))
    result.slot = cdc.slot_info(control, settings.slot)
    return result


def _snapshot_reason(stored: Position | None, identity: str, reset: bool) -> str | None:
    if reset:
        return "reset requested"
    if stored is None:
        return "first run: no stored position"
    if stored.source != identity:
        return f"the stored position is for {stored.source}, this pipeline reads {identity}"
    return None


def _check_key_is_identity(conn: psycopg.Connection, table: TableName, target: CdcTarget) -> None:
    identity = cdc.identity_columns(conn, table)
    key = target.strategy.unique_key
    if identity is not None and not set(key) <= set(identity):
        raise cdc.ReplicationError(
            f"sink.strategy.unique_key ({', '.join(key)}) must be among the replica identity "
            f"columns of {table} ({', '.join(identity)}): deletes carry only those. Use them as "
            f"the key, or ALTER TABLE {table} REPLICA IDENTITY FULL"
        )


def _stored_lsn(run: RunContext) -> int:
    stored = state.read_position(run.sink, run.target.table)
    assert stored is not None and stored.source == run.identity, "set up by start()"
    return lsn_to_int(stored.value)


def _align_slot(control: psycopg.Connection, name: str, slot: cdc.SlotInfo, applied: int) -> bool:
    assert slot.confirmed_flush is not None
    if applied > slot.confirmed_flush:
        cdc.advance_slot(control, name, applied)  # the last run died before advancing
        return True
    if applied < slot.confirmed_flush:
        raise cdc.ReplicationError(
            f"replication slot {name} is at {lsn_to_text(slot.confirmed_flush)}, ahead of the "
            f"position stored with the target ({lsn_to_text(applied)}): changes in between were "
            "consumed but never applied here (a restored target, or another consumer?); "
            "re-snapshot: materialize with run config reset: true"
        )
    return False
