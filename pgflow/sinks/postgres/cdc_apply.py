"""Apply a batch of row changes to a Postgres target in one transaction, with its LSN.

Changes stream into an UNLOGGED staging table (COPY text, one row per change, numbered in
commit order), so memory does not grow with the batch or with one huge source transaction.
Then, set-based: unchanged TOAST values are filled from the row's previous version (earlier in
the batch, else the target: never NULL), each key keeps its last change, deletes are applied
(hard, or a timestamp in `deleted_column`), and the upserts go through the pipeline's keyed
strategy. A TRUNCATE or a new column splits the batch into segments applied in order. The
batch's last commit LSN is stored in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime

import psycopg
from psycopg import pq, sql

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import ddl, keys, schema_drift, staging, state
from pgflow.sinks.postgres.apply import (
    ApplyContext,
    few_staged_rows,
    insert_from_staging,
    prefer_index_probes,
)
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategies import staged_strategy_for
from pgflow.sources.base import Position
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.cdc import with_timestamptz_column
from pgflow.sources.changes import (
    ChangeEvent,
    RelationSeen,
    Removal,
    TransactionEnd,
    Truncation,
    Upsert,
)
from pgflow.sources.pgoutput import UNCHANGED, RelationColumn, Value, lsn_to_text
from pgflow.sources.postgres import set_portable_text_format

OP, UNCHANGED_COLUMNS, FROM = "_pgflow_op", "_pgflow_unchanged", "_pgflow_from"
WRITE_CHUNK_BYTES = 1 << 16
NULL_FIELD = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class CdcApplyError(RuntimeError):
    """The stream asks for something the target cannot take; the message says what to do."""


@dataclass
class BatchResult:
    transactions: int = 0
    upserts: int = 0
    deletes: int = 0
    truncates: int = 0
    rows_applied: int = 0
    rows_deleted: int = 0
    end_lsn: int | None = None
    statements: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return self.upserts + self.deletes + self.truncates


@dataclass(frozen=True)
class CdcTarget:
    table: TableName
    strategy: StrategySpec
    deleted_column: str | None = None  # soft deletes: the commit time of the delete
    on_truncate: str = "apply"


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
        set_portable_text_format(conn)
        ddl.lock_target(log, target.table)
        catalog = with_deleted_column(source, target.deleted_column)
        _prepared_target(log, target, catalog)
        staged = stage_batch(log, target, source, iter(events))
        return _apply_steps(log, target, staged, position_source, pipeline)


def prepare_target(conn: psycopg.Connection, target: CdcTarget, source: TableInfo) -> None:
    """Create or reconcile the target in a transaction of its own, so that staging tables
    made on another connection can take its column types before the first batch applies."""
    log = SqlLog(conn)
    with conn.transaction():
        ddl.lock_target(log, target.table)
        _prepared_target(log, target, with_deleted_column(source, target.deleted_column))


@dataclass
class StagedSegment:
    """Changes COPied into a staging table, all of one table shape, not yet applied."""

    stage: TableName
    columns: tuple[str, ...]
    source: TableInfo
    rows: int
    unchanged: frozenset[int]
    key_changed_with_unchanged: bool


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
    per read, not per batch). Staging tables of a failed call are dropped."""
    catalog = with_deleted_column(source, target.deleted_column)
    batch = StagedBatch(relation=relation)
    result = batch.result
    segment: _Segment | None = None
    shape: tuple[RelationColumn, ...] = ()
    if relation is not None:
        shape = relation.relation.columns
        segment = _Segment(log, target, segment_info(catalog, shape, target), result)
    try:
        for event in events:
            if isinstance(event, Upsert):
                assert segment is not None, "pgoutput sends a Relation before changes"
                segment.upsert(event)
            elif isinstance(event, Removal):
                assert segment is not None, "pgoutput sends a Relation before changes"
                segment.remove(event)
            elif isinstance(event, TransactionEnd):
                result.transactions += 1
                result.end_lsn = event.end_lsn
            elif isinstance(event, Truncation):
                if segment is not None:
                    batch.steps.append(segment.flushed())
                batch.steps.append(event)
                segment = _Segment(log, target, segment_info(catalog, shape, target), result)
            elif isinstance(event, RelationSeen):
                batch.relation = event
                if event.relation.columns != shape:
                    if segment is not None:
                        batch.steps.append(segment.flushed())
                    shape = event.relation.columns
                    _follow_relation(catalog, shape)
                    segment = _Segment(log, target, segment_info(catalog, shape, target), result)
        if segment is not None:
            batch.steps.append(segment.flushed())
    except BaseException as exc:
        if segment is not None:
            segment.abort(exc)  # end the COPY first, or the rollback waits on it
            batch.steps.append(segment.staged())
        if log.conn.info.transaction_status == pq.TransactionStatus.IDLE:
            with suppress(psycopg.Error):  # committed tables (autocommit); the error matters
                drop_staged(log, batch)
        raise
    return batch


def drop_staged(log: SqlLog, batch: StagedBatch) -> None:
    for stage in batch.stages:
        staging.drop_staging(log, stage)


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
        set_portable_text_format(conn)
        ddl.lock_target(log, target.table)
        _prepared_target(log, target, with_deleted_column(source, target.deleted_column))
        return _apply_steps(log, target, staged, position_source, pipeline)


def _apply_steps(
    log: SqlLog, target: CdcTarget, staged: StagedBatch, position_source: str, pipeline: str
) -> BatchResult:
    result = staged.result
    for step in staged.steps:
        if isinstance(step, Truncation):
            _truncate(log, target, step.commit_time, result)
        else:
            _apply_segment(log, target, step, result)
    if result.end_lsn is not None:
        position = Position("cdc", position_source, lsn_to_text(result.end_lsn), "pg_lsn")
        state.write_position(log, target.table, pipeline, position)
    result.statements = log.statements
    return result


def with_deleted_column(source: TableInfo, deleted_column: str | None) -> TableInfo:
    """The source's shape plus the soft-delete column the target keeps."""
    if deleted_column is None:
        return source
    return with_timestamptz_column(source, deleted_column)


def _prepared_target(log: SqlLog, target: CdcTarget, source: TableInfo) -> TableInfo:
    if not table_exists(log.conn, target.table):
        fillfactor = ddl.fillfactor_for(target.strategy)
        ddl.create_target(log, source, target.table, target.strategy.unique_key, fillfactor)
    else:
        ddl.ensure_enums(log, source, target.table.schema)
        ddl.ensure_fillfactor(log, target.table, target.strategy.fillfactor)
    info = describe_table(log.conn, target.table)
    if schema_drift.reconcile(log, source, info, target.strategy.on_schema_change):
        info = describe_table(log.conn, target.table)
    return info


class _Segment:
    """Changes staged since the last flush, all with the same table shape."""

    def __init__(self, log: SqlLog, target: CdcTarget, source: TableInfo, result: BatchResult):
        self.log, self.target, self.source, self.result = log, target, source, result
        self.columns = source.column_names
        self.soft = bool(target.deleted_column and target.deleted_column in self.columns)
        # Generated columns the stream lacks, staged NULL and computed before the apply.
        self.computed = sum(1 for c in source.columns if c.generation)
        if log.conn.autocommit:
            # Committed outside the apply: the table and its tag commit together, so a killed
            # run leaves either nothing or a tagged table the next run drops.
            with log.conn.transaction():
                self.stage = staging.create_staging(log, target.table, self.columns)
                staging.mark_committed_staging(log, self.stage, target.table)
        else:
            self.stage = staging.create_staging(log, target.table, self.columns)
        self._add_change_columns()
        self.seq = 0
        self.unchanged: set[int] = set()
        self.key_changed_with_unchanged = False
        self.buffer: list[str] = []
        self.buffered = 0
        self._open = ExitStack()
        cursor = self._open.enter_context(log.conn.cursor())
        self.copy = self._open.enter_context(cursor.copy(self._copy_statement()))

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
        line = _plain_line(values)
        unchanged = "\\N"
        if line is None:
            line, unchanged = self._escaped_line(values, origin)
        if self.computed:
            line += "\t\\N" * self.computed
        if self.soft:  # the soft-delete column
            line += "\t" + (deleted_at.isoformat() if deleted_at else "\\N")
        source = "\\N" if origin is None else str(origin)
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
                fields.append("\\N")
            elif value is None:
                fields.append("\\N")
            elif isinstance(value, bytes):
                fields.append("\\\\x" + value.hex())
            else:
                fields.append(_copy_escaped(value))
        if not unchanged:
            return "\t".join(fields), "\\N"
        if origin is not None:
            self.key_changed_with_unchanged = True
        return "\t".join(fields), _array_literal(unchanged).translate(_ESCAPES)

    def _write(self) -> None:
        self.copy.write("".join(self.buffer).encode())
        self.buffer.clear()
        self.buffered = 0

    def abort(self, exc: BaseException) -> None:
        """End an unfinished COPY, which fails it; the transaction can then roll back."""
        self._open.__exit__(type(exc), exc, exc.__traceback__)

    def flushed(self) -> StagedSegment:
        """Complete the COPY; what was staged, for `_apply_segment`."""
        self.flush()
        return self.staged()

    def flush(self) -> None:
        self._write()
        self._open.close()  # completes the COPY

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


def _apply_segment(
    log: SqlLog, target: CdcTarget, staged: StagedSegment, result: BatchResult
) -> None:
    """Apply what a segment staged, in order, and drop its staging table."""
    if staged.rows:
        _SegmentApply(log, target, staged, result).run()
    staging.drop_staging(log, staged.stage)


class _SegmentApply:
    """The set-based SQL that applies one staged segment to the target."""

    def __init__(self, log: SqlLog, target: CdcTarget, staged: StagedSegment, result: BatchResult):
        self.log, self.target, self.result = log, target, result
        self.columns = staged.columns
        self.unchanged = staged.unchanged
        self.key_changed_with_unchanged = staged.key_changed_with_unchanged
        target_info = describe_table(log.conn, target.table)
        self.ctx = ApplyContext(
            log,
            target.table,
            staged.stage,
            staged.columns,
            target.strategy,
            staged.source,
            target_info,
        )

    def run(self) -> None:
        # Statistics on the key let the planner join staging by index, not by hashing
        # the whole target; cheap, as it samples only these columns.
        self.log.execute(
            sql.SQL("ANALYZE {} ({}, {}, {})").format(
                self.ctx.staging_sql,
                keys.key_list(self.ctx),
                sql.Identifier(keys.ORDER_COLUMN),
                sql.Identifier(OP),
            )
        )
        self._resolve_unchanged()
        self._compute_generated()
        keys.keep_last(self.ctx)
        if self._deletes_in_the_merge_pass():
            self._delete_every_staged_key()
            self.result.rows_applied += insert_from_staging(self.ctx)
        else:
            self._apply_deletes()
            self.result.rows_applied += (
                staged_strategy_for(self.target.strategy).apply(self.ctx).rows
            )

    def _deletes_in_the_merge_pass(self) -> bool:
        """delete_insert with hard deletes: the target rows a staged delete removes and those
        a staged row replaces go in one DELETE, one pass over the target instead of two."""
        strategy = self.target.strategy
        return (
            self.target.deleted_column is None
            and strategy.mode == "incremental_merge"
            and strategy.merge_policy == "delete_insert"
        )

    def _delete_every_staged_key(self) -> None:
        ctx = self.ctx
        if few_staged_rows(ctx):
            prefer_index_probes(ctx)
        op = sql.Identifier(OP)
        statement = sql.SQL(
            "WITH gone AS (DELETE FROM {} t USING {} s WHERE {} RETURNING s.{})"
            " SELECT count(*) FILTER (WHERE {} = 'D') FROM gone"
        ).format(ctx.target_sql, ctx.staging_sql, keys.key_match(ctx, "t", "s"), op, op)
        row = self.log.execute(statement).fetchone()
        self.result.rows_deleted += row[0] if row else 0
        self.log.execute(sql.SQL("DELETE FROM {} WHERE {} = 'D'").format(ctx.staging_sql, op))

    def _resolve_unchanged(self) -> None:
        if not self.unchanged:
            return
        names = [self.columns[i] for i in sorted(self.unchanged)]
        self.log.execute(
            sql.SQL("CREATE INDEX ON {} ({}, {})").format(
                self.ctx.staging_sql, keys.key_list(self.ctx), sql.Identifier(keys.ORDER_COLUMN)
            )
        )
        if self.key_changed_with_unchanged:
            for (seq,) in self.log.execute(
                sql.SQL(
                    "SELECT {seq} FROM {s} WHERE {origin} IS NOT NULL AND {u} IS NOT NULL"
                    " ORDER BY {seq}"
                ).format(
                    seq=sql.Identifier(keys.ORDER_COLUMN),
                    s=self.ctx.staging_sql,
                    origin=sql.Identifier(FROM),
                    u=sql.Identifier(UNCHANGED_COLUMNS),
                )
            ).fetchall():
                self._fill_from_previous_version(names, seq)
        self._fill_from_previous_version(names, None)

    def _fill_from_previous_version(self, names: list[str], key_change_seq: int | None) -> None:
        """Fill UNCHANGED columns from the latest earlier staged version that knows the value,
        else from the target's row. A row whose key changed looks up its old key (row `d`, the
        staged delete of that key), one at a time in order so chains of key changes resolve;
        the other rows look up their own key (`r`), all at once."""
        ctx = self.ctx
        alias = "r" if key_change_seq is None else "d"
        seq, u, origin = (sql.Identifier(n) for n in (keys.ORDER_COLUMN, UNCHANGED_COLUMNS, FROM))
        assignments = [
            sql.SQL(
                "{c} = CASE WHEN {name} = ANY(r.{u}) THEN coalesce("
                "(SELECT p.{c} FROM {s} p WHERE {p_match} AND p.{seq} < {a}.{seq} AND p.{op} = 'U'"
                " AND NOT ({name} = ANY(coalesce(p.{u}, '{{}}'))) ORDER BY p.{seq} DESC LIMIT 1),"
                " (SELECT t.{c} FROM {t} t WHERE {t_match})) ELSE r.{c} END"
            ).format(
                c=sql.Identifier(name),
                name=sql.Literal(name),
                u=u,
                s=ctx.staging_sql,
                p_match=keys.key_match(ctx, "p", alias),
                seq=seq,
                a=sql.Identifier(alias),
                op=sql.Identifier(OP),
                t=ctx.target_sql,
                t_match=keys.key_match(ctx, "t", alias),
            )
            for name in names
        ]
        if key_change_seq is None:
            rows = sql.SQL(" WHERE r.{u} IS NOT NULL AND r.{origin} IS NULL").format(
                u=u, origin=origin
            )
        else:
            rows = sql.SQL(" FROM {s} d WHERE d.{seq} = r.{origin} AND r.{seq} = {n}").format(
                s=ctx.staging_sql, seq=seq, origin=origin, n=sql.Literal(key_change_seq)
            )
        self.log.execute(
            sql.SQL("UPDATE {} r SET {}, {} = NULL{}").format(
                ctx.staging_sql, sql.SQL(", ").join(assignments), u, rows
            )
        )

    def _compute_generated(self) -> None:
        """Compute the source's generated columns (which logical replication does not send)
        from their expressions, once every other value of the row is known."""
        computed = [c for c in self.ctx.source.columns if c.generation]
        if not computed:
            return
        # The expressions come from the source catalog (pg_get_expr): trusted SQL.
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = ({})").format(sql.Identifier(c.name), sql.SQL(c.generation))
            for c in computed
        )
        statement = sql.SQL("UPDATE {} SET {} WHERE {} = 'U'").format(
            self.ctx.staging_sql, assignments, sql.Identifier(OP)
        )
        try:
            with self.log.conn.transaction():
                self.log.execute(statement)
        except psycopg.Error as error:
            names = ", ".join(f"{c.name} (GENERATED ALWAYS AS ({c.generation}))" for c in computed)
            raise CdcApplyError(
                f"logical replication does not send the source's generated column(s) {names}; "
                f"pgflow computes them in the sink, where this failed: {error}. Create the "
                "functions and types the expression uses in the sink, or re-snapshot with "
                "reset: true after making the column a plain one"
            ) from error

    def _apply_deletes(self) -> None:
        ctx = self.ctx
        op = sql.Identifier(OP)
        deleted = self.target.deleted_column
        if deleted is None:
            statement = sql.SQL("DELETE FROM {} t USING {} s WHERE s.{} = 'D' AND {}").format(
                ctx.target_sql, ctx.staging_sql, op, keys.key_match(ctx, "t", "s")
            )
        else:
            statement = sql.SQL(
                "UPDATE {} t SET {d} = s.{d} FROM {} s WHERE s.{} = 'D' AND {}"
            ).format(
                ctx.target_sql,
                ctx.staging_sql,
                op,
                keys.key_match(ctx, "t", "s"),
                d=sql.Identifier(deleted),
            )
        self.result.rows_deleted += self.log.execute(statement).rowcount
        self.log.execute(sql.SQL("DELETE FROM {} WHERE {} = 'D'").format(ctx.staging_sql, op))


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
    else:
        log.execute(
            sql.SQL("UPDATE {} SET {d} = {} WHERE {d} IS NULL").format(
                table, sql.Literal(commit_time), d=sql.Identifier(target.deleted_column)
            )
        )


def segment_info(
    catalog: TableInfo, shape: tuple[RelationColumn, ...], target: CdcTarget
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


def _follow_relation(catalog: TableInfo, shape: tuple[RelationColumn, ...]) -> None:
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


def _plain_line(values: tuple[Value, ...]) -> str | None:
    """The COPY text fields of `values` when they are all text or NULL and none needs
    escaping (the usual change), else None. Counting in C beats a Python loop per value: a
    value with a backslash, tab or line break shows as a count off by its own."""
    fields = [NULL_FIELD if v is None else v for v in values]
    try:
        line = "\t".join(fields)  # type: ignore[arg-type]
    except TypeError:  # bytes or an unchanged TOAST value
        return None
    if (
        line.count("\t") != len(fields) - 1
        or line.count("\\") != values.count(None)  # not fields: a value may be "\\N"
        or "\n" in line
        or "\r" in line
    ):
        return None
    return line


def _copy_escaped(value: str) -> str:
    # translate() with multi-character replacements is slow; most values need none.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


def _array_literal(names: list[str]) -> str:
    quoted = ('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names)
    return "{" + ",".join(quoted) + "}"
