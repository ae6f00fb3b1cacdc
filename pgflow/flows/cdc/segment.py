"""One segment of a batch: changes of one table shape, streamed into an UNLOGGED staging
table with COPY text, one row per change, numbered in commit order.

Each chunk of lines is its own COPY statement, so no COPY stays open between changes: the
segments of a shared-slot group's tables, one per table, take turns on one stager connection.

Besides the table's columns, each staged row carries its number (keys.ORDER_COLUMN), its
operation (OP: 'U' upsert, 'D' delete), the columns whose TOAST value the change did not send
(UNCHANGED_COLUMNS) and, for the new version of a row whose key changed, the number of the
staged delete of its old key (FROM).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from pgflow.config.model import TableName
from pgflow.flows.cdc.copy_lines import ESCAPES, NULL_FIELD, array_literal, copy_escaped, plain_line
from pgflow.flows.cdc.model import AnyCdcTarget, BatchResult, CdcTarget
from pgflow.sinks.postgres import keys, staging
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import TableInfo
from pgflow.sources.changes import Removal, Upsert
from pgflow.sources.pgoutput_messages import UNCHANGED, Value

OP, UNCHANGED_COLUMNS, FROM = "_pgflow_op", "_pgflow_unchanged", "_pgflow_from"
# Lines per COPY statement: few statements per batch, little memory per open segment.
WRITE_CHUNK_BYTES = 1 << 18


@dataclass
class StagedSegment:
    """Changes COPied into a staging table, all of one table shape, not yet applied."""

    stage: TableName
    columns: tuple[str, ...]
    source: TableInfo
    rows: int
    unchanged: frozenset[int]
    key_changed_with_unchanged: bool


class Segment:
    """Changes staged since the last flush, all with the same table shape.

    Without `stage` it creates its own staging table (a Postgres target's); with one it COPYs
    into that table, which has every column it stages (a Delta member's batch table, shared
    by the batch's shapes), numbering on from `first_seq`."""

    def __init__(
        self,
        log: SqlLog,
        target: AnyCdcTarget,
        source: TableInfo,
        result: BatchResult,
        stage: TableName | None = None,
        first_seq: int = 0,
    ):
        self.log, self.target, self.source, self.result = log, target, source, result
        self.columns = source.column_names
        self.soft = bool(target.deleted_column and target.deleted_column in self.columns)
        # Generated columns the stream lacks, staged NULL and computed before the apply.
        self.computed = sum(1 for c in source.columns if c.generation)
        if stage is None:
            self.stage = self._create_stage()
            self._add_change_columns()
        else:
            self.stage = stage
        self.seq = first_seq
        self.unchanged: set[int] = set()
        self.key_changed_with_unchanged = False
        self.buffer: list[str] = []
        self.buffered = 0
        self.copy_statement = self._copy_statement()

    def _create_stage(self) -> TableName:
        log, target = self.log, self.target
        assert isinstance(target, CdcTarget), "a Delta member's stage is made by its stager"
        if not log.conn.autocommit:
            return staging.create_staging(log, target.table, self.columns)
        # Committed outside the apply: the table and its tag commit together, so a killed
        # run leaves either nothing or a tagged table the next run drops.
        with log.conn.transaction():
            stage = staging.create_staging(log, target.table, self.columns)
            staging.mark_committed_staging(log, stage, target.table)
        return stage

    def upsert(self, event: Upsert) -> None:
        self.result.upserts += 1
        origin = None
        if event.old_key_row is not None:
            origin = self._row("D", event.old_key_row, None, None)  # the old key leaves
        self._row("U", event.values, None, origin)

    def remove(self, event: Removal) -> None:
        self.result.deletes += 1
        self._row("D", event.key_row, event.commit_time, None)

    def _row(
        self, op: str, values: tuple[Value, ...], deleted_at: datetime | None, origin: int | None
    ) -> int:
        self.seq += 1
        line = plain_line(values)
        unchanged = NULL_FIELD
        if line is None:
            line, unchanged = self._escaped_line(values, origin)
        if self.computed:
            line += "\t\\N" * self.computed
        if self.soft:  # the soft-delete column
            line += "\t" + (deleted_at.isoformat() if deleted_at else NULL_FIELD)
        source = NULL_FIELD if origin is None else str(origin)
        line = f"{line}\t{self.seq}\t{op}\t{unchanged}\t{source}\n"
        self.buffer.append(line)
        self.buffered += len(line)
        if self.buffered >= WRITE_CHUNK_BYTES:
            self._write()
        return self.seq

    def _escaped_line(self, values: tuple[Value, ...], origin: int | None) -> tuple[str, str]:
        """The general case (values to escape, bytes, unchanged TOAST values): the values'
        fields and the unchanged columns' field."""
        fields = []
        unchanged = []
        for index, value in enumerate(values):
            if value is UNCHANGED:
                unchanged.append(self.columns[index])
                self.unchanged.add(index)
                fields.append(NULL_FIELD)
            elif value is None:
                fields.append(NULL_FIELD)
            elif isinstance(value, bytes):
                fields.append("\\\\x" + value.hex())
            else:
                fields.append(copy_escaped(value))
        if not unchanged:
            return "\t".join(fields), NULL_FIELD
        if origin is not None:
            self.key_changed_with_unchanged = True
        return "\t".join(fields), array_literal(unchanged).translate(ESCAPES)

    def _write(self) -> None:
        if not self.buffer:
            return
        data = "".join(self.buffer).encode()
        self.buffer.clear()
        self.buffered = 0
        with self.log.conn.cursor() as cursor, cursor.copy(self.copy_statement) as copy:
            copy.write(data)

    def flushed(self) -> StagedSegment:
        """COPY what is still buffered; what was staged, for the apply."""
        self._write()
        return self.staged()

    def staged(self) -> StagedSegment:
        return StagedSegment(
            self.stage,
            self.columns,
            self.source,
            self.seq,
            frozenset(self.unchanged),
            self.key_changed_with_unchanged,
        )

    def _add_change_columns(self) -> None:
        self.log.execute(
            sql.SQL(
                'ALTER TABLE {} ADD COLUMN {} bigint, ADD COLUMN {} "char",'
                " ADD COLUMN {} text[], ADD COLUMN {} bigint"
            ).format(
                self.stage.identifier(),
                sql.Identifier(keys.ORDER_COLUMN),
                sql.Identifier(OP),
                sql.Identifier(UNCHANGED_COLUMNS),
                sql.Identifier(FROM),
            )
        )

    def _copy_statement(self) -> sql.Composed:
        names = [*self.columns, keys.ORDER_COLUMN, OP, UNCHANGED_COLUMNS, FROM]
        return sql.SQL("COPY {} ({}) FROM STDIN").format(
            self.stage.identifier(),
            sql.SQL(", ").join(map(sql.Identifier, names)),
        )
