"""Load one source table into a Postgres target: staging-first, in one transaction.

lock target -> open the source snapshot -> (incremental: read the stored position, plan the
read) -> create the target on the first load -> check it fits -> UNLOGGED staging -> COPY
the source into staging -> duplicate policy -> apply the strategy -> store the new position
-> ANALYZE -> drop staging -> COMMIT. Any failure rolls all of it back, so the target and its
position are either both old or both new, never a mix.

full_refresh skips the staging table: its COPY lands in a table no other session can see
before the commit (the target it truncated, a new table it swaps in, or a target it created),
which is what staging is for, without writing every row twice. So does the first load of the
other strategies, into the target it creates (`fills_new_target_directly`): the initial load
of a large table is written once, frozen, and its key is built after the rows are in.

Strategies by the spec's key: strategies.py; a parallel exchange: postgres_parallel_load.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_fill import SourceFill
from pgflow.flows.postgres_parallel_load import ParallelCopy, load_in_parallel
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres import (
    copy_format,
    cursor_boundary,
    ddl,
    full_refresh,
    index_rebuild,
    keys,
    ledger,
    position_owner,
    rejects,
    rejects_cursor,
    schema_drift,
    staging,
    state,
    statistics,
)
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sinks.postgres.strategies import strategy_for
from pgflow.sinks.postgres.strategy import (
    Applied,
    DirectStrategy,
    PostgresStrategy,
    StagedStrategy,
)
from pgflow.sinks.registry import UnsupportedStrategy
from pgflow.sources.base import (
    CopyFormat,
    Position,
    ReadPlan,
    TableSource,
    as_incremental,
)
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.postgres import PostgresTableSource, set_portable_text_format


@dataclass(frozen=True)
class LoadResult:
    target: TableName
    target_info: TableInfo
    rows: int
    bytes: int
    copy_format: CopyFormat
    created_target: bool
    statements: list[str]
    seconds: float
    copy_seconds: float
    strategy: str
    duplicates_dropped: int = 0
    rows_read: int = 0  # rows copied from the source (rows = rows the strategy wrote)
    read: ReadPlan | None = None  # incremental sources: what was read and why
    position_after: Position | None = None  # incremental sources: the position now stored
    streams: int = 1  # COPY streams that filled the target (parallelism)
    one_stream_reason: str | None = None  # why a load asked to run in parallel did not
    position_reset: str | None = None  # why the stored position was discarded (position_owner)
    # What the strategy did beyond the rows written (PostgresStrategy.metadata: rows_deleted)
    strategy_metadata: dict[str, int] = field(default_factory=dict)
    boundary_rows: int | None = None  # column cursors: rows at the new mark kept to skip next
    write_seconds: float = 0.0  # in the statements that wrote the target (a COPY into it too)
    batches: int = 1  # transactions that wrote the target: a table load commits once


def load_table(
    conn: psycopg.Connection,
    source: TableSource,
    target: TableName,
    strategy: StrategySpec,
    progress: staging.ProgressCallback | None = None,
    *,
    partition_slice: PartitionSlice | None = None,
    pipeline: str = "",
    reset: bool = False,
    streams: Streams | None = None,
    run_id: str = "",  # marks the rows an `on_bad_rows: reject` load rejects
) -> LoadResult:
    """Run one load on `conn` (autocommit mode; this opens and commits its own transaction).

    `partition_slice` (partition_replace only) is the slice the run replaces. For an
    IncrementalSource, the position stored for `target` decides what is read; the new one
    is stored, under `pipeline`'s name, in the same transaction. `reset` reads everything
    and makes the target exactly the source, whatever the strategy. `streams` lets a
    full_refresh exchange fill the new table over several connections (`parallel_exchange`).
    """
    load = _TableLoad(SqlLog(conn), source, target, strategy, progress, pipeline)
    load.rejects.run_id, load.rejects.progress = run_id, progress
    if streams is None or streams.count < 2 or not load.strategy.parallel:
        return load.run(partition_slice, reset)
    if not isinstance(source, PostgresTableSource) or load.incremental is not None:
        raise UnsupportedStrategy("a parallel load reads a whole Postgres table")
    with ddl.holding_target(conn, target):  # from the snapshot to the swap
        started = time.monotonic()
        parallel = load_in_parallel(conn, source, target, strategy, streams, progress, pipeline)
        if isinstance(parallel, ParallelCopy):
            return _parallel_result(target, strategy, parallel, started)
        result = load.run(partition_slice, reset)
        return dataclasses.replace(result, one_stream_reason=parallel)


def fills_new_target_directly(spec: StrategySpec, strategy: PostgresStrategy) -> bool:
    """Whether the load that creates the target COPYs into it without staging. A new target
    has nothing to merge or replace, so every strategy's first load inserts all it read, except
    where staging does more: replace checks its predicate there, and keep_last drops repeated
    keys by their order of arrival."""
    if strategy.stages_first_load:
        return False
    return not (spec.keyed and spec.duplicate_policy == "keep_last")


def needs_analyze(
    strategy: PostgresStrategy, created: bool, rows_written: int, target_before: TableInfo
) -> bool:
    if created or not strategy.in_place:
        return True
    return statistics.worth_analyzing(rows_written, target_before.estimated_rows)


@dataclass(frozen=True)
class _Target:
    """The target as this load found (or created) it, and the COPY format that fits it."""

    created: bool
    info: TableInfo
    fmt: CopyFormat


@dataclass(frozen=True)
class _Written:
    applied: Applied
    duplicates_dropped: int = 0
    position: Position | None = None
    boundary_rows: int | None = None
    write_seconds: float = 0.0


class MissingTarget(ValueError):
    """A mode that changes existing rows (update, delete) found no target; nothing was done."""


class _TableLoad:
    """One one-stream load: its steps, each run in the load's transaction."""

    def __init__(
        self,
        log: SqlLog,
        source: TableSource,
        target: TableName,
        spec: StrategySpec,
        progress: staging.ProgressCallback | None,
        pipeline: str,
    ) -> None:
        self.log, self.source, self.target, self.spec = log, source, target, spec
        self.progress, self.pipeline = progress, pipeline
        self.incremental = as_incremental(source)
        self.strategy = strategy_for(spec)
        self.copies: list[staging.CopyStats] = []
        self.rejects = rejects.Rejects(pipeline, spec.on_bad_rows == "reject", self.copies)
        self.fill = SourceFill(log, source, target, self.rejects, progress)

    def run(self, partition_slice: PartitionSlice | None, reset: bool) -> LoadResult:
        if isinstance(self.strategy, DirectStrategy) and self.incremental:
            raise UnsupportedStrategy(
                f"sink strategy {self.spec.key} replaces the whole target; "
                "an incremental read needs incremental_merge or incremental_append"
            )
        self.started = time.monotonic()  # a one-stream run after a parallel attempt: its own
        conn, source = self.log.conn, self.source
        read, position_reset = None, None
        with conn.transaction():
            set_portable_text_format(conn)
            ddl.lock_target(self.log, self.target)
            source.open()  # after the lock: runs of one target read in the order they write
            if partition_slice is None and (bounds := source.window_bounds()) is not None:
                partition_slice = PartitionSlice(*bounds)  # a time partition replaces its slice
            if self.spec.keyed:
                keys.check_key_columns(self.spec.unique_key, source.info)
            if self.incremental:
                read, reset, position_reset = position_owner.plan_read(
                    conn, self.target, self.incremental, reset
                )
                cursor_boundary.skip_applied(conn, self.target, source, self.spec.keyed)
            # A rejecting load may run this twice (postgres_fill): bulk, then finding bad rows.
            target, written = self.fill.write(lambda: self._prepare_write(partition_slice, reset))
            # The position and the ledger (the target's row count) commit with the rows.
            change = ledger.settled(self.log, self.target, written.applied.change)
            state.write_position(self.log, self.target, self.pipeline, written.position, change)
            rows = written.applied.rows
            if reset or needs_analyze(self.strategy, target.created, rows, target.info):
                statistics.analyze(self.log, self.target)
        result = self._result(target, written)
        return dataclasses.replace(result, read=read, position_reset=position_reset)

    def _prepare_write(
        self, partition_slice: PartitionSlice | None, reset: bool
    ) -> tuple[_Target, _Written]:
        target = self._prepare_target()
        return target, self._write(target, partition_slice, reset)

    def _prepare_target(self) -> _Target:
        """Create the target on the first load, else make it fit the source's columns."""
        log, info, spec = self.log, self.source.info, self.spec
        created = not table_exists(log.conn, self.target)
        if created and self.strategy.needs_target:
            raise MissingTarget(
                f"mode {spec.mode} changes rows of an existing table, and the target "
                f"{self.target} does not exist. Nothing was written. Create or load it first "
                "(e.g. with mode incremental_merge), or correct sink.table"
            )
        if created:
            fillfactor = ddl.fillfactor_for(spec)
            ddl.create_target(log, info, self.target, spec.unique_key, fillfactor)
        else:
            ddl.ensure_enums(log, info, self.target.schema)
            ddl.ensure_fillfactor(log, self.target, spec.fillfactor)
        target_info = describe_table(log.conn, self.target)
        partial = self.strategy.needs_target  # rows carry some columns: the rest stays
        cast = self.rejects.enabled  # reject: a retyped column's values are cast, row by row
        if schema_drift.reconcile(log, info, target_info, spec.on_schema_change, partial, cast):
            target_info = describe_table(log.conn, self.target)
        return _Target(created, target_info, copy_format.choose(info, target_info))

    def _write(
        self, target: _Target, partition_slice: PartitionSlice | None, reset: bool
    ) -> _Written:
        """Fill the target: straight into a new one, by the strategy's own table, or staged."""
        strategy, started = self.strategy, time.monotonic()
        if target.created and fills_new_target_directly(self.spec, strategy):
            rows = self._fill_new_target(target.fmt)
            applied = Applied(rows, change=RowChange.exact(rows))
            seconds = time.monotonic() - started
            position = self._position_read(self.target)
            boundary = self._store_boundary(self.target, position)
            return _Written(
                applied, position=position, boundary_rows=boundary, write_seconds=seconds
            )
        if isinstance(strategy, DirectStrategy):  # the rows copied into an emptied or new table
            rows = strategy.fill_target(self.log, self.target, self.fill.into(target.fmt))
            applied = Applied(rows, change=RowChange.exact(rows))
            return _Written(applied, write_seconds=time.monotonic() - started)
        assert isinstance(strategy, StagedStrategy)
        return self._apply_staged(strategy, target, partition_slice, reset)

    def _fill_new_target(self, fmt: CopyFormat) -> int:
        """COPY straight into the target this load created (FREEZE), its indexes built after.
        The target's unique index on the key (the primary key, or NULLS NOT DISTINCT) is the
        duplicate check: its build fails on a repeated key, and the whole load rolls back."""
        try:
            return index_rebuild.fill_then_index(self.log, self.target, self.fill.into(fmt))
        except psycopg.errors.UniqueViolation as error:
            if not self.spec.keyed:
                raise
            detail = error.diag.message_detail or ""  # "Key (k)=(7) is duplicated."
            sample = detail.removeprefix("Key ").removesuffix(" is duplicated.")
            raise keys.duplicate_keys(self.spec.unique_key, sample) from None

    def _apply_staged(
        self,
        strategy: StagedStrategy,
        target: _Target,
        partition_slice: PartitionSlice | None,
        reset: bool,
    ) -> _Written:
        """COPY into staging, settle duplicates, let the strategy write the target."""
        log, keyed, columns = self.log, self.spec.keyed, self.source.info.column_names
        stage = staging.create_staging(
            log, self.target, columns, keys.ORDER_COLUMN if keyed else None
        )
        staged_rows = self.fill.into(target.fmt)(stage)
        position = self._position_read(stage)
        ctx = ApplyContext(
            log,
            self.target,
            stage,
            columns,
            self.spec,
            self.source.info,
            target.info,
            partition_slice,
            staged_rows=staged_rows,
        )
        settle = keyed and strategy.settles_duplicates
        dropped = keys.enforce_duplicate_policy(ctx) if settle else 0
        started = time.monotonic()
        if target.created:
            applied = strategy.first_load(ctx)  # a new table has nothing to merge or replace
        elif reset and strategy.rebuilds_on_reset:  # a reset rebuilds the target
            rows = full_refresh.truncate_insert(ctx)
            applied = Applied(rows, change=RowChange.exact(rows))
        else:
            applied = strategy.apply(ctx)
        seconds = time.monotonic() - started
        boundary = self._store_boundary(stage, position)
        staging.drop_staging(log, stage)
        return _Written(applied, dropped, position, boundary, seconds)

    def _position_read(self, table: TableName) -> Position | None:
        """The incremental position after this read: from the largest cursor value in `table`,
        which holds exactly the rows read (staging, or the target the read created)."""
        incremental = self.incremental
        if incremental is None:
            return None
        column = incremental.cursor_column
        largest = (
            rejects_cursor.max_value(self.log, table, column, self.rejects) if column else None
        )
        return incremental.position_after(largest)

    def _store_boundary(self, table: TableName, position: Position | None) -> int | None:
        """Store the rows of `table` (the rows read) at `position`'s value, which a keyed read
        skips next time (run() stores the position itself); how many (incremental loads)."""
        incremental = self.incremental
        if not incremental:
            return None
        column = incremental.cursor_column

        def rejected(value: str) -> tuple[str, ...]:  # rejected rows at the mark are skipped too
            assert column is not None
            return rejects_cursor.boundary_rows(self.log, self.rejects, column, value)

        return cursor_boundary.store_applied(
            self.log, self.target, table, self.source, self.spec.keyed, position, rejected
        )

    def _result(self, target: _Target, written: _Written) -> LoadResult:
        copied = self.copies[0]
        return LoadResult(
            target=self.target,
            target_info=target.info,
            rows=written.applied.rows,
            bytes=copied.bytes,
            copy_format=target.fmt,
            created_target=target.created,
            statements=self.log.statements,
            seconds=time.monotonic() - self.started,
            copy_seconds=copied.seconds,
            strategy=self.spec.key,
            duplicates_dropped=written.duplicates_dropped,
            rows_read=copied.rows,
            position_after=written.position,
            boundary_rows=written.boundary_rows,
            strategy_metadata=self.strategy.metadata(written.applied) | self.rejects.metadata(),
            write_seconds=written.write_seconds,
        )


def _parallel_result(
    target: TableName, spec: StrategySpec, parallel: ParallelCopy, started: float
) -> LoadResult:
    copied = parallel.copied
    return LoadResult(
        target=target,
        target_info=parallel.target_info,
        rows=copied.rows,
        bytes=copied.bytes,
        copy_format=parallel.copy_format,
        created_target=False,
        statements=parallel.statements,
        seconds=time.monotonic() - started,
        copy_seconds=copied.seconds,
        strategy=spec.key,
        rows_read=copied.rows,
        streams=parallel.streams,
        write_seconds=copied.seconds,  # the streams' COPY into the new table is the write
    )
