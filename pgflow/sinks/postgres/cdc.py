"""One CDC run of a pipeline: set up, snapshot when needed, then stream batches.

Order of effects, which is what makes it exactly-once:
1. a batch is applied in ONE sink transaction that also stores the batch's end LSN;
2. only then is the slot advanced to that LSN.
A crash between 1 and 2 leaves the slot behind the sink: the next run advances it to the
stored LSN first, and skips any transaction that ends at or before it. A crash before 1 loses
nothing: the slot still holds the changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from pgflow.config.model import TableName
from pgflow.sinks.postgres import ddl, state
from pgflow.sinks.postgres.cdc_apply import (
    BatchResult,
    CdcTarget,
    apply_batch,
    with_deleted_column,
)
from pgflow.sinks.postgres.load import LoadResult, load_table
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc
from pgflow.sources.base import Position
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.changes import table_changes
from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS

DEFAULT_BATCH_CHANGES = 100_000


@dataclass(frozen=True)
class CdcSettings:
    slot: str
    publication: str
    snapshot: str = "initial"  # initial | never
    batch_changes: int = DEFAULT_BATCH_CHANGES
    max_changes: int | None = None  # per run
    reset: bool = False
    auto_cleanup: bool = False  # `pgflow cdc cleanup` may drop slot and publication


@dataclass
class CdcResult:
    position_before: Position | None
    position_after: Position | None = None
    snapshot: LoadResult | None = None
    snapshot_reason: str = ""
    batches: list[BatchResult] = field(default_factory=list)
    slot: cdc.SlotInfo | None = None
    publication_changed: bool = False
    caught_up_slot: bool = False  # the slot was behind the sink (a run died before advancing)

    @property
    def changes(self) -> int:
        return sum(b.changes for b in self.batches)

    @property
    def rows_applied(self) -> int:
        return sum(b.rows_applied for b in self.batches)


def position_source(table: TableName, slot: str) -> str:
    return f"cdc:{table}:{slot}"


def replicate(
    connect_source: cdc.ConnectSource,
    sink: psycopg.Connection,
    table: TableName,
    target: CdcTarget,
    settings: CdcSettings,
    pipeline: str,
) -> CdcResult:
    """Bring `target` up to date with `table` through the slot; `sink` is autocommit."""
    identity = position_source(table, settings.slot)
    with connect_source(autocommit=True) as control:
        info = describe_table(control, table)
        cdc.check_prerequisites(control, table)
        _check_key_is_identity(control, table, target)
        stored = state.read_position(sink, target.table)
        result = CdcResult(position_before=stored)
        reason = _snapshot_reason(stored, identity, settings.reset)
        if reason and cdc.slot_info(control, settings.slot) is not None:
            _check_slot_is_ours(control, settings, pipeline)  # _start drops and recreates it
        owner = cdc.Ownership(pipeline, settings.slot, settings.auto_cleanup)
        result.publication_changed = cdc.ensure_publication(
            control, settings.publication, table, owner
        )
        if reason:
            _start(
                connect_source,
                control,
                sink,
                table,
                target,
                settings,
                identity,
                reason,
                pipeline,
                result,
            )
        database = control.info.dbname
        slot = cdc.check_slot(cdc.slot_info(control, settings.slot), settings.slot, database)
        applied = _stored_lsn(sink, target.table, identity)
        result.caught_up_slot = _align_slot(control, settings.slot, slot, applied)
        _stream(
            connect_source,
            control,
            sink,
            info,
            table,
            target,
            settings,
            identity,
            pipeline,
            applied,
            result,
        )
        result.slot = cdc.slot_info(control, settings.slot)
    result.position_after = state.read_position(sink, target.table)
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


def _check_slot_is_ours(control: psycopg.Connection, settings: CdcSettings, pipeline: str) -> None:
    owner = cdc.publication_owner(control, settings.publication)
    if owner is None or (owner.pipeline, owner.slot) != (pipeline, settings.slot):
        raise cdc.ReplicationError(
            f"replication slot {settings.slot} already exists and pgflow did not create it for "
            f"pipeline '{pipeline}'; starting over would drop it and the changes it holds. "
            "Choose another source.options.slot_name, or drop the slot if it is unused"
        )


def _start(
    connect_source: cdc.ConnectSource,
    control: psycopg.Connection,
    sink: psycopg.Connection,
    table: TableName,
    target: CdcTarget,
    settings: CdcSettings,
    identity: str,
    reason: str,
    pipeline: str,
    result: CdcResult,
) -> None:
    """A fresh slot, and the target as of the slot's start (snapshot) or left as it is."""
    existing = cdc.slot_info(control, settings.slot)
    if existing is not None:
        # The sink holds no position from it, so nothing depends on what it retained: an
        # invalidated slot is replaced too, which is how a reset recovers from one.
        cdc.check_slot_usable(existing, settings.slot, control.info.dbname)
        cdc.drop_slot(control, settings.slot)
    result.snapshot_reason = reason
    if settings.snapshot == "never":
        start = cdc.create_slot(control, settings.slot)
        _store_start(sink, table, target, identity, start, pipeline, control)
        return
    with (
        cdc.exported_snapshot_slot(connect_source, settings.slot) as (start, snapshot_name),
        connect_source() as reader,
    ):
        source = cdc.SnapshotSource(
            reader,
            table,
            identity,
            snapshot_name,
            start,
            f"initial snapshot ({reason})",
            extra_null_columns=_extra_columns(target),
        )
        result.snapshot = load_table(
            sink, source, target.table, target.strategy, pipeline=pipeline, reset=True
        )


def _extra_columns(target: CdcTarget) -> tuple[str, ...]:
    return (target.deleted_column,) if target.deleted_column else ()


def _store_start(
    sink: psycopg.Connection,
    table: TableName,
    target: CdcTarget,
    identity: str,
    start: int,
    pipeline: str,
    control: psycopg.Connection,
) -> None:
    """snapshot: never: create the target if missing and start streaming from the slot."""
    info = with_deleted_column(describe_table(control, table), target.deleted_column)
    log = SqlLog(sink)
    with sink.transaction():
        ddl.lock_target(log, target.table)
        if not table_exists(sink, target.table):
            ddl.create_target(log, info, target.table, target.strategy.unique_key)
        position = Position("cdc", identity, lsn_to_text(start), cdc.LSN_TYPE)
        state.write_position(log, target.table, pipeline, position)


def _stored_lsn(sink: psycopg.Connection, target: TableName, identity: str) -> int:
    stored = state.read_position(sink, target)
    assert stored is not None and stored.source == identity, "set up by _start"
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


def _stream(
    connect_source: cdc.ConnectSource,
    control: psycopg.Connection,
    sink: psycopg.Connection,
    info: TableInfo,
    table: TableName,
    target: CdcTarget,
    settings: CdcSettings,
    identity: str,
    pipeline: str,
    applied: int,
    result: CdcResult,
) -> None:
    changes = 0
    with connect_source() as reader:
        # The decoding backend renders values with its own settings: pin them for the session.
        for name, value in PORTABLE_TEXT_SETTINGS.items():
            reader.execute("SELECT set_config(%s, %s, false)", (name, value))
        reader.commit()
        # A run catches up to where the WAL was when it started, so it ends even while the
        # source keeps writing; what comes later is the next run's.
        upto = cdc.flush_lsn(control)
        while settings.max_changes is None or changes < settings.max_changes:
            budget = settings.batch_changes
            if settings.max_changes is not None:
                budget = min(budget, settings.max_changes - changes)
            messages = cdc.peek_changes(reader, settings.slot, settings.publication, upto, budget)
            events = table_changes(messages, table, target.strategy.unique_key, applied)
            batch = apply_batch(sink, target, info, events, identity, pipeline)
            reader.rollback()
            if batch.end_lsn is None:
                _advance_idle(
                    sink, control, settings.slot, target, identity, applied, upto, pipeline
                )
                return
            result.batches.append(batch)
            cdc.advance_slot(control, settings.slot, batch.end_lsn)
            applied = batch.end_lsn
            changes += batch.changes


def _advance_idle(
    sink: psycopg.Connection,
    control: psycopg.Connection,
    slot: str,
    target: CdcTarget,
    identity: str,
    applied: int,
    upto: int,
    pipeline: str,
) -> None:
    """Nothing for the publication before `upto`: move sink position and slot there, so the
    slot does not pin WAL that other tables' traffic keeps writing."""
    if upto <= applied:
        return
    log = SqlLog(sink)
    with sink.transaction():
        ddl.lock_target(log, target.table)
        position = Position("cdc", identity, lsn_to_text(upto), cdc.LSN_TYPE)
        state.write_position(log, target.table, pipeline, position)
    cdc.advance_slot(control, slot, upto)
