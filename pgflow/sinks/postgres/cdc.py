"""One CDC run of a pipeline: set up, snapshot when needed, then stream batches.

Order of effects, which is what makes it exactly-once:
1. a batch is applied in ONE sink transaction that also stores the batch's end LSN;
2. only then is the slot advanced to that LSN.
A crash between 1 and 2 leaves the slot behind the sink: the next run advances it to the
stored LSN first, and skips any transaction that ends at or before it. A crash before 1 loses
nothing: the slot still holds the changes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import make_conninfo

from pgflow.config.model import TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres import ddl, position_owner, staging, state
from pgflow.sinks.postgres.cdc_apply import (
    BatchResult,
    CdcTarget,
    StagedBatch,
    apply_staged,
    drop_staged,
    prepare_target,
    stage_batch,
    with_deleted_column,
)
from pgflow.sinks.postgres.cdc_apply import apply_batch as apply_batch  # the one-connection form
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc
from pgflow.sources.base import Position
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.changes import batches, table_changes
from pgflow.sources.pgoutput import lsn_to_int, lsn_to_text
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS

DEFAULT_BATCH_CHANGES = 100_000
# Batches per read of the slot. A read always starts at the slot's position, so the next
# batch can be staged while one applies only if one read holds several; the server keeps a
# read's changes in a tuplestore (spilling to disk beyond work_mem).
WINDOW_BATCHES = 10


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
    position_reset: str | None = None  # why the stored LSN was discarded (position_owner)

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
    """Bring `target` up to date with `table` through the slot; `sink` is autocommit.

    The target's lock is held for the whole run, not only per batch: a second run of the same
    pipeline starts once this one is done, from the position this one stored."""
    identity = position_source(table, settings.slot)
    with ddl.holding_target(sink, target.table), connect_source(autocommit=True) as control:
        info = describe_table(control, table)
        cdc.check_prerequisites(control, table)
        _check_key_is_identity(control, table, target)
        owned = position_owner.owned_position(sink, target.table)  # a dropped target: snapshot
        stored = owned.position
        result = CdcResult(position_before=stored, position_reset=owned.reset)
        reason = owned.reset or _snapshot_reason(stored, identity, settings.reset)
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
            fillfactor = ddl.fillfactor_for(target.strategy)
            ddl.create_target(log, info, target.table, target.strategy.unique_key, fillfactor)
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
    """Read the slot in windows of a few batches; stage each batch on a second sink
    connection while the batch before it is applied (and the slot advanced) in a thread."""
    changes = 0
    prepare_target(sink, target, info)  # staging tables take the target's column types
    with (
        connect_source() as reader,
        _sink_twin(sink) as stager,
        _Applier(sink, control, settings.slot, target, info, identity, pipeline) as applier,
    ):
        _pin_text_settings(reader)
        reader.commit()
        # A run catches up to where the WAL was when it started, so it ends even while the
        # source keeps writing; what comes later is the next run's.
        upto = cdc.flush_lsn(control)
        stage_log = SqlLog(stager)
        staging.drop_orphaned_staging(stage_log, target.table)  # a killed run's leftovers
        while settings.max_changes is None or changes < settings.max_changes:
            budget = settings.batch_changes * WINDOW_BATCHES
            if settings.max_changes is not None:
                budget = min(budget, settings.max_changes - changes)
            messages = cdc.peek_changes(reader, settings.slot, settings.publication, upto, budget)
            events = table_changes(messages, table, target.strategy.unique_key, applied)
            staged_any = False
            for relation, batch_events in batches(events, settings.batch_changes):
                staged = stage_batch(stage_log, target, info, batch_events, relation)
                if staged.result.end_lsn is None:
                    drop_staged(stage_log, staged)
                    continue
                staged_any = True
                changes += staged.result.changes
                applier.submit(staged)
                applied = staged.result.end_lsn
            # The next read starts where the slot is: after every batch of this one.
            applier.drain()
            reader.rollback()
            if not staged_any:
                _advance_idle(
                    sink, control, settings.slot, target, identity, applied, upto, pipeline
                )
                break
    result.batches.extend(applier.results)


def _pin_text_settings(conn: psycopg.Connection) -> None:
    """Render (reader: the decoding backend) and parse (stager: COPY) values alike."""
    for name, value in PORTABLE_TEXT_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


@contextmanager
def _sink_twin(sink: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A second autocommit connection to the sink, with the same parameters."""
    with psycopg.connect(_conninfo(sink), autocommit=True) as twin:
        _pin_text_settings(twin)
        yield twin


def _conninfo(conn: psycopg.Connection) -> str:
    """The parameters `conn` was opened with (password included: libpq keeps it)."""
    return make_conninfo(**{o.keyword.decode(): o.val.decode() for o in conn.pgconn.info if o.val})


class _Applier:
    """Applies staged batches in order, each in ONE sink transaction with its end LSN, and
    advances the slot after each commit; in a thread, so that the next batch is decoded and
    staged meanwhile. At most one batch waits while one applies (staging is on the sink)."""

    def __init__(
        self,
        sink: psycopg.Connection,
        control: psycopg.Connection,
        slot: str,
        target: CdcTarget,
        info: TableInfo,
        identity: str,
        pipeline: str,
    ) -> None:
        self.sink, self.control, self.slot = sink, control, slot
        self.target, self.info, self.identity, self.pipeline = target, info, identity, pipeline
        self.results: list[BatchResult] = []
        self._queue: queue.Queue[StagedBatch | None] = queue.Queue(maxsize=1)
        self._pending: list[StagedBatch] = []  # submitted, not yet committed
        self._error: BaseException | None = None
        self._cancel = False
        self._thread = threading.Thread(target=self._run, name="pgflow-cdc-apply", daemon=True)

    def __enter__(self) -> _Applier:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._cancel = kind is not None  # batches still queued are not applied
        self._queue.put(None)
        self._thread.join()
        self._drop_unapplied()
        if kind is None:
            self._raise()

    def submit(self, batch: StagedBatch) -> None:
        self._pending.append(batch)  # first: dropped on exit if never applied
        self._raise()
        self._queue.put(batch)

    def drain(self) -> None:
        """Wait until every submitted batch is committed and its slot advanced."""
        self._queue.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None and not self._cancel:
                    self._apply(batch)
            except BaseException as exc:  # handed to the main thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _apply(self, batch: StagedBatch) -> None:
        done = apply_staged(self.sink, self.target, self.info, batch, self.identity, self.pipeline)
        self._pending.remove(batch)  # its staging tables were dropped in its transaction
        self.results.append(done)
        assert done.end_lsn is not None
        cdc.advance_slot(self.control, self.slot, done.end_lsn)

    def _drop_unapplied(self) -> None:
        """Staging tables are committed on the stager: drop those no apply consumed."""
        if not self._pending:
            return
        with suppress(psycopg.Error), psycopg.connect(_conninfo(self.sink)) as conn:
            conn.autocommit = True
            log = SqlLog(conn)
            for batch in self._pending:
                drop_staged(log, batch)
        self._pending.clear()


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
