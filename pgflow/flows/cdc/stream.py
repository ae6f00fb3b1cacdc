"""Stream a run's changes: read the slot in windows of a few batches, stage each batch on a
second sink connection while the applier commits the batch before it and confirms it on the
slot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from pgflow.flows.cdc.applier import Applier
from pgflow.flows.cdc.apply import prepare_target
from pgflow.flows.cdc.model import BatchResult, RunContext
from pgflow.flows.cdc.stage import drop_staged, stage_batch
from pgflow.sinks.postgres import ddl, staging, state
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources import cdc
from pgflow.sources.catalog import TableInfo
from pgflow.sources.changes import batches, table_changes
from pgflow.sources.postgres import PORTABLE_TEXT_SETTINGS, apply_settings

# Batches per read of the slot. A read always starts at the slot's position, so the next
# batch can be staged while one applies only if one read holds several; the server keeps a
# read's changes in a tuplestore (spilling to disk beyond work_mem).
WINDOW_BATCHES = 10


def stream(run: RunContext, info: TableInfo, applied: int) -> list[BatchResult]:
    """Apply the slot's changes after LSN `applied` (the stored position), up to where the
    WAL was when the run started; `info` is the source's catalog. What each batch did."""
    prepare_target(run.sink, run.target, info)  # staging tables take the target's column types
    with (
        run.connect_source() as reader,
        _sink_twin(run) as stager,
        Applier(run, info) as applier,
    ):
        _pin_text_settings(reader)
        reader.commit()
        # A run catches up to where the WAL was when it started, so it ends even while the
        # source keeps writing; what comes later is the next run's.
        upto = cdc.flush_lsn(run.control)
        stage_log = SqlLog(stager)
        staging.drop_orphaned_staging(stage_log, run.target.table)  # a killed run's leftovers
        _Windows(run, info, reader, stage_log, applier, applied, upto).read_all()
    return applier.results


def _pin_text_settings(conn: psycopg.Connection) -> None:
    """Render (reader: the decoding backend) and parse (stager: COPY) values alike."""
    apply_settings(conn, PORTABLE_TEXT_SETTINGS, local=False)


@contextmanager
def _sink_twin(run: RunContext) -> Iterator[psycopg.Connection]:
    """A second autocommit connection to the sink, opened the way the first was."""
    with run.connect_sink(autocommit=True) as twin:
        _pin_text_settings(twin)
        yield twin


class _Windows:
    """The reads of the slot, each of up to WINDOW_BATCHES batches, until one finds none."""

    def __init__(
        self,
        run: RunContext,
        info: TableInfo,
        reader: psycopg.Connection,
        stage_log: SqlLog,
        applier: Applier,
        applied: int,
        upto: int,
    ) -> None:
        self.run, self.info, self.reader, self.stage_log = run, info, reader, stage_log
        self.applier, self.applied, self.upto = applier, applied, upto
        self.changes = 0

    def read_all(self) -> None:
        limit = self.run.settings.max_changes
        while limit is None or self.changes < limit:
            staged_any = self._read()
            # The next read starts where the slot is: after every batch of this one.
            self.applier.drain()
            self.reader.rollback()
            if not staged_any:
                _advance_idle(self.run, self.applied, self.upto)
                break

    def _read(self) -> bool:
        """Stage and submit the batches of one read; False when it held none."""
        run, settings = self.run, self.run.settings
        messages = cdc.peek_changes(
            self.reader, settings.slot, settings.publication, self.upto, self._budget()
        )
        events = table_changes(messages, run.table, run.target.strategy.unique_key, self.applied)
        staged_any = False
        for relation, batch_events in batches(events, settings.batch_changes):
            staged = stage_batch(self.stage_log, run.target, self.info, batch_events, relation)
            if staged.result.end_lsn is None:
                drop_staged(self.stage_log, staged)
                continue
            staged_any = True
            self.changes += staged.result.changes
            self.applier.submit(staged)
            self.applied = staged.result.end_lsn
        return staged_any

    def _budget(self) -> int:
        """Changes this read may take: a window, within what is left of the run's limit."""
        settings = self.run.settings
        budget = settings.batch_changes * WINDOW_BATCHES
        if settings.max_changes is not None:
            budget = min(budget, settings.max_changes - self.changes)
        return budget


def _advance_idle(run: RunContext, applied: int, upto: int) -> None:
    """Nothing for the publication before `upto`: move sink position and slot there, so the
    slot does not pin WAL that other tables' traffic keeps writing."""
    if upto <= applied:
        return
    log = SqlLog(run.sink)
    with run.sink.transaction():
        ddl.lock_target(log, run.target.table)
        position = cdc.lsn_position(run.identity, upto)
        state.write_position(log, run.target.table, run.pipeline, position)
    cdc.advance_slot(run.control, run.settings.slot, upto)
