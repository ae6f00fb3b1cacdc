"""Stage a Delta member's part of a batch: its changes COPied into ONE temporary table of a
source session that lives for the batch (sink_connections.BatchConnections).

The table is typed like the source (`CREATE TEMP TABLE ... AS SELECT <the run's catalog
columns> FROM <source> WITH NO DATA`), so the apply reads it back exactly as a snapshot read
reads the source, plus the soft-delete column and the change columns segment.py describes.
Each streamed shape COPYs its own column list into that one table (an older shape just lacks
the newer columns), numbered on across shapes. A TRUNCATE discards what the batch staged
before it and is recorded: the apply empties the table (or fails, on_truncate: fail).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.cdc.model import BatchResult, DeltaCdcTarget
from pgflow.flows.cdc.segment import FROM, OP, UNCHANGED_COLUMNS, Segment
from pgflow.flows.cdc.stage import SegmentedStager, segment_info
from pgflow.sinks.postgres import keys
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import TableInfo
from pgflow.sources.cdc import with_deleted_column
from pgflow.sources.changes import (
    RelationSeen,
    Truncation,
)

TEMP_PREFIX = "_pgflow_cdc_"


@dataclass
class DeltaStaged:
    """One Delta member's staged batch: a temporary table on `log`'s session."""

    log: SqlLog
    stage: TableName
    catalog: TableInfo  # the staged data columns: the run's catalog plus the soft-delete one
    rows: int  # rows staged (after a TRUNCATE: since it)
    unchanged: frozenset[str]  # columns some change left unchanged (TOAST)
    key_changed_with_unchanged: bool
    truncated_at: datetime | None  # the batch's first TRUNCATE (None: none)
    result: BatchResult = field(default_factory=BatchResult)
    relation: RelationSeen | None = None
    soft_deleted: int = 0  # staged deletes a soft-delete merge applies (counted by the apply)


class DeltaStager(SegmentedStager):
    """Sorts one batch's events of one table into its temporary table ."""

    def __init__(
        self,
        log: SqlLog,
        target: DeltaCdcTarget,
        source: TableInfo,
        relation: RelationSeen | None,
        number: int,
    ) -> None:
        self.stage = TableName("pg_temp", f"{TEMP_PREFIX}{number}")
        create_batch_table(
            log, self.stage, source, with_deleted_column(source, target.deleted_column)
        )
        self.seq = 0
        self.unchanged: set[str] = set()
        self.key_changed_with_unchanged = False
        self.truncated_at: datetime | None = None
        super().__init__(log, target, source, relation)

    def finish(self) -> DeltaStaged:
        self._close_segment()
        return DeltaStaged(
            self.log,
            self.stage,
            self.catalog,
            self.seq,
            frozenset(self.unchanged),
            self.key_changed_with_unchanged,
            self.truncated_at,
            self.batch.result,
            self.batch.relation,
        )

    def abort(self) -> None:
        """The table dies with the batch's session; drop it now if the session is usable."""
        self.segment = None
        with suppress(psycopg.Error):
            self.log.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.stage.identifier()))

    def _truncate(self, event: Truncation) -> None:
        """What was staged before a TRUNCATE is gone at the source: discard it."""
        self._close_segment()
        self.log.execute(sql.SQL("TRUNCATE {}").format(self.stage.identifier()))
        self.unchanged.clear()
        self.key_changed_with_unchanged = False
        self.batch.result.truncates += 1
        if self.truncated_at is None:
            self.truncated_at = event.commit_time
        self.segment = self._new_segment()

    def _close_segment(self) -> None:
        segment, self.segment = self.segment, None
        if segment is None:
            return
        staged = segment.flushed()
        self.seq = staged.rows  # the segment numbered on from self.seq
        self.unchanged.update(staged.columns[i] for i in staged.unchanged)
        self.key_changed_with_unchanged |= staged.key_changed_with_unchanged

    def _new_segment(self) -> Segment:
        info = segment_info(self.catalog, self.shape, self.target)
        return Segment(self.log, self.target, info, self.batch.result, self.stage, self.seq)


def create_batch_table(
    log: SqlLog, stage: TableName, source: TableInfo, catalog: TableInfo
) -> None:
    """The batch's temporary table: the source's columns with their types, the soft-delete
    column (when the source lacks it), then the change columns."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in source.column_names)
    log.execute(
        sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            stage.identifier(), columns, source.table.identifier()
        )
    )
    extra = [
        sql.SQL("ADD COLUMN {} timestamptz").format(sql.Identifier(c.name))
        for c in catalog.columns
        if source.column(c.name) is None
    ]
    extra += [
        sql.SQL("ADD COLUMN {} bigint").format(sql.Identifier(keys.ORDER_COLUMN)),
        sql.SQL("ADD COLUMN {} text").format(sql.Identifier(OP)),
        sql.SQL("ADD COLUMN {} text[]").format(sql.Identifier(UNCHANGED_COLUMNS)),
        sql.SQL("ADD COLUMN {} bigint").format(sql.Identifier(FROM)),
    ]
    log.execute(sql.SQL("ALTER TABLE {} {}").format(stage.identifier(), sql.SQL(", ").join(extra)))
