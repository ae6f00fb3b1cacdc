"""Stage a batch: its changes COPied into staging tables, one per table shape, in commit
order, with the TRUNCATEs between them; nothing is applied to the target yet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import pq

from pgflow.config.model import TableName
from pgflow.flows.cdc.model import AnyCdcTarget, BatchResult, CdcApplyError, CdcTarget
from pgflow.flows.cdc.segment import Segment, StagedSegment
from pgflow.sinks.postgres import staging
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import TableInfo
from pgflow.sources.cdc import with_deleted_column
from pgflow.sources.changes import (
    ChangeEvent,
    RelationSeen,
    Removal,
    TransactionEnd,
    Truncation,
    Upsert,
)
from pgflow.sources.pgoutput_messages import RelationColumn


@dataclass
class StagedBatch:
    """Whole transactions staged for one apply: segments and truncates, in commit order."""

    steps: list[StagedSegment | Truncation] = field(default_factory=list)
    result: BatchResult = field(default_factory=BatchResult)
    relation: RelationSeen | None = None  # the shape at the end: the next batch starts with it

    @property
    def stages(self) -> list[TableName]:
        return [s.stage for s in self.steps if isinstance(s, StagedSegment)]


def stage_batch(
    log: SqlLog,
    target: CdcTarget,
    source: TableInfo,
    events: Iterator[ChangeEvent],
    relation: RelationSeen | None = None,
) -> StagedBatch:
    """COPY `events` into staging tables on `log` (new segment on TRUNCATE or a new shape).

    `relation` is the shape the stream had before these events (a Relation is sent once
    per stream, not per batch). Staging tables of a failed call are dropped."""
    stager = Stager(log, target, source, relation)
    try:
        for event in events:
            stager.take(event)
        return stager.finish()
    except BaseException:
        stager.abort()
        raise


def drop_staged(log: SqlLog, batch: StagedBatch) -> None:
    for stage in batch.stages:
        staging.drop_staging(log, stage)


class SegmentedStager:
    """Sorts one batch's events of one table into segments: a new one on a new table shape
    (and what a TRUNCATE does: `_truncate`). Events are taken one at a time, so that a group's
    tables stage side by side. Subclasses say where segments go (Stager: a staging table each,
    for a Postgres target; delta_stage.DeltaStager: one temporary table)."""

    def __init__(
        self, log: SqlLog, target: AnyCdcTarget, source: TableInfo, relation: RelationSeen | None
    ) -> None:
        self.log, self.target = log, target
        self.catalog = with_deleted_column(source, target.deleted_column)
        self.batch = StagedBatch(relation=relation)
        self.shape: tuple[RelationColumn, ...] = ()
        self.segment: Segment | None = None
        if relation is not None:
            self.shape = relation.relation.columns
            self.segment = self._new_segment()

    def take(self, event: ChangeEvent) -> None:
        if isinstance(event, Upsert):
            self._current().upsert(event)
        elif isinstance(event, Removal):
            self._current().remove(event)
        elif isinstance(event, TransactionEnd):
            self.batch.result.transactions += 1
            self.batch.result.end_lsn = event.end_lsn
        elif isinstance(event, Truncation):
            self._truncate(event)
        elif isinstance(event, RelationSeen):
            self.batch.relation = event
            if event.relation.columns != self.shape:
                self._close_segment()
                self.shape = event.relation.columns
                follow_relation(self.catalog, self.shape)
                self.segment = self._new_segment()

    def _truncate(self, event: Truncation) -> None:
        raise NotImplementedError

    def _close_segment(self) -> None:
        raise NotImplementedError

    def _new_segment(self) -> Segment:
        raise NotImplementedError

    def _current(self) -> Segment:
        assert self.segment is not None, "pgoutput sends a Relation before changes"
        return self.segment


class Stager(SegmentedStager):
    """Segments staged for a Postgres target, one staging table each; a TRUNCATE is a step
    between them."""

    def finish(self) -> StagedBatch:
        """The staged batch, every segment's lines copied."""
        self._close_segment()
        return self.batch

    def abort(self) -> None:
        """Drop what this batch staged (committed tables, on an autocommit connection)."""
        if self.segment is not None:
            self.batch.steps.append(self.segment.staged())
            self.segment = None
        if self.log.conn.info.transaction_status == pq.TransactionStatus.IDLE:
            with suppress(psycopg.Error):  # the error that stopped the staging matters
                drop_staged(self.log, self.batch)

    def _truncate(self, event: Truncation) -> None:
        """A TRUNCATE ends the segment and is applied where it stood in the stream."""
        self._close_segment()
        self.batch.steps.append(event)
        self.segment = self._new_segment()

    def _close_segment(self) -> None:
        if self.segment is not None:
            staged = self.segment.flushed()  # on failure abort() still finds the segment
            self.segment = None
            self.batch.steps.append(staged)

    def _new_segment(self) -> Segment:
        info = segment_info(self.catalog, self.shape, self.target)
        return Segment(self.log, self.target, info, self.batch.result)


def segment_info(
    catalog: TableInfo, shape: tuple[RelationColumn, ...], target: AnyCdcTarget
) -> TableInfo:
    """The columns changes arrive with (the stream's Relation), typed from the catalog, then
    the generated columns the stream lacks, then the soft-delete column."""
    streamed = [catalog.column(c.name) for c in shape]
    # A generated column the stream does carry is a plain value; one it lacks (PostgreSQL
    # 15 never sends them) follows the streamed ones and is computed in the sink.
    columns = [replace(c, generation="") for c in streamed if c is not None]
    names = {c.name for c in shape}
    computed = [c for c in catalog.columns if c.generation and c.name not in names]
    soft = catalog.column(target.deleted_column) if target.deleted_column else None
    kept = columns + computed + ([soft] if soft else [])
    return replace(catalog, columns=tuple(kept))


def follow_relation(catalog: TableInfo, shape: tuple[RelationColumn, ...]) -> None:
    """Check the stream's shape against the source's catalog read at the start of the run
    (whose new columns the target already got, per on_schema_change). A catalog column the
    stream lacks was added after these changes: fine. A streamed column the catalog lacks, or
    with another type, stops the run."""
    missing = [c.name for c in shape if catalog.column(c.name) is None]
    retyped = [
        c.name
        for c in shape
        if (known := catalog.column(c.name)) is not None and known.type_oid != c.type_oid
    ]
    if missing or retyped:
        what = ", ".join(
            [f"{n} (gone from the source)" for n in missing]
            + [f"{n} (type changed)" for n in retyped]
        )
        raise CdcApplyError(
            f"the source table changed shape under pending changes: {what}; pgflow does not "
            "guess how to carry them over. If a column was just added, run again; otherwise "
            "re-snapshot with reset: true"
        )
