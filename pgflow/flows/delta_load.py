"""Load one Postgres table into a Delta table: streamed, in exactly one Delta commit.

open the Delta table (its version is the one this load builds on) -> read the pipeline's
run and position from it (state.py) -> open the source snapshot -> (incremental: plan the
read from the stored position; compute the new position in the snapshot) -> duplicate
policy (keyed strategies) -> stream the read as Arrow batches into the strategy's write,
whose single commit also carries the run and the new position -> close the snapshot.

Nothing is committed until the whole read has been written: a failure anywhere before the
commit leaves the table's version and the stored position as they were (data files already
written stay unreferenced until VACUUM removes them). After the commit both are new, so a
retry continues from the new position and applies nothing twice.

The new position of a column-cursor read is `max(cursor)::text` of the rows the read
selects, computed by Postgres in the read's snapshot before streaming (the same text the
Postgres sink stores), not from the Arrow batches: no rendering of timestamps or numerics
in Python, and the same value whatever the batches are.

Memory is bounded by one batch (`batch_rows`, `batch_bytes`) plus what delta-rs buffers per
open file; the source snapshot stays open while the table is written. The strategy comes
from pgflow.sinks.delta.strategies, by the spec's mode.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deltalake import DeltaTable, Transaction, WriterProperties
from psycopg import sql

from pgflow.config.model import NumericAs, StrategySpec
from pgflow.sinks.delta.context import (
    DeltaContext,
    DeltaWrite,
    default_writer_properties,
    write,
)
from pgflow.sinks.delta.create import create_table, rebuild
from pgflow.sinks.delta.cursor_boundary import boundary_of_read, skip_applied
from pgflow.sinks.delta.first_write import first_write
from pgflow.sinks.delta.keys import check_no_duplicates, keep_last_query
from pgflow.sinks.delta.numerics import kept_types, plan_numerics
from pgflow.sinks.delta.retyped import check_list_columns
from pgflow.sinks.delta.state import DeltaState, commit_properties, read_state
from pgflow.sinks.delta.strategies import strategy_for
from pgflow.sinks.delta.strategy import DeltaStrategy
from pgflow.sinks.delta.table import check_columns, data_files, open_table
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres.keys import check_key_columns
from pgflow.sources.arrow import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, ArrowRead
from pgflow.sources.base import (
    IncrementalSource,
    Position,
    ReadPlan,
    TableSource,
    as_incremental,
)
from pgflow.sources.postgres import PostgresTableSource


class MissingDeltaTable(ValueError):
    """update or delete found no Delta table to change; nothing was written."""


@dataclass(frozen=True)
class DeltaLoadResult:
    path: str
    strategy: str
    rows: int  # rows the strategy wrote: appended, inserted + updated, updated or deleted
    rows_read: int  # rows streamed from the source (after the duplicate policy)
    bytes_read: int  # CSV bytes streamed from the source
    bytes_written: int  # size of the data files the commit added
    files_added: tuple[str, ...]  # their paths, relative to the table
    version_before: int | None  # None: this load created the table
    version_after: int
    seconds: float
    run: int  # the pipeline's run counter now stored in the table
    read: ReadPlan | None = None  # incremental sources: what was read and why
    position_before: Position | None = None  # incremental sources: the stored position used
    position_after: Position | None = None  # incremental sources: the position now stored
    metrics: dict[str, Any] = field(default_factory=dict)  # delta-rs' metrics (merges)
    strategy_metadata: dict[str, int] = field(default_factory=dict)  # e.g. rows_deleted
    # Column cursors: rows at the new mark the next read skips (0: none kept, e.g. keyless).
    boundary_rows: int | None = None

    @property
    def created_table(self) -> bool:
        return self.version_before is None


@dataclass(frozen=True)
class _DeltaLoad:
    """What one load writes where, and how."""

    path: str
    storage_options: dict[str, str] | None
    pipeline: str
    spec: StrategySpec
    strategy: DeltaStrategy
    reset: bool
    numeric_as: NumericAs
    writer_properties: WriterProperties
    transactions: Sequence[Transaction] = ()


@dataclass(frozen=True)
class _Before:
    """The table as the load found it, and the pipeline's state stored in it."""

    table: DeltaTable | None
    version: int | None  # None: this load creates the table
    files: dict[str, int]
    state: DeltaState


@dataclass(frozen=True)
class _Written:
    write: DeltaWrite
    read: ArrowRead
    plan: ReadPlan | None
    position: Position | None
    boundary_rows: int | None


def load_delta(
    source: TableSource,
    path: str,
    strategy: StrategySpec,
    *,
    storage_options: dict[str, str] | None = None,
    pipeline: str,
    reset: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    partition_slice: PartitionSlice | None = None,
    writer_properties: WriterProperties | None = None,
    numeric_as: NumericAs = "decimal",
    transactions: Sequence[Transaction] = (),
) -> DeltaLoadResult:
    """Load `source` (a Postgres source, not yet opened) into the Delta table at `path`.

    The table is created by the first load. For an IncrementalSource the position stored in
    the table under `pipeline` decides what is read, and the new one is committed with the
    rows. `reset` reads everything and overwrites the whole table, whatever the strategy.
    `partition_slice` (partition_replace only) is the slice the run replaces.
    `writer_properties` replaces pgflow's Parquet settings (snappy, row groups of 64Ki rows).
    `numeric_as` is how unconstrained numerics are written (numerics.py).
    `transactions` are further app transactions the load's one commit carries (a CDC
    snapshot's start LSN, sinks/delta/cdc_state.py).
    """
    if not isinstance(source, PostgresTableSource):
        raise TypeError(f"a Delta load reads a Postgres table; got {type(source).__name__}")
    if not pipeline:
        raise ValueError("pipeline: a Delta load needs the pipeline's name to store its position")
    load = _DeltaLoad(
        str(path), storage_options, pipeline, strategy, strategy_for(strategy), reset,
        numeric_as, writer_properties or default_writer_properties(), tuple(transactions),
    )  # fmt: skip
    started = time.monotonic()
    with first_write(load.path, storage_options):  # a failed first load leaves no folder
        table = _open_table(load)
        version = None if table is None else table.version()
        before = _Before(table, version, data_files(table), read_state(table, pipeline))
        read: ArrowRead | None = None
        source.open()
        try:
            if partition_slice is None and (bounds := source.window_bounds()) is not None:
                partition_slice = PartitionSlice(*bounds)  # a time partition replaces its slice
            plan = _incremental_plan(as_incremental(source), before.state, reset)
            skip_applied(source, strategy.keyed, before.state.boundary)
            read = ArrowRead(source, batch_rows=batch_rows, batch_bytes=batch_bytes)
            written = _write_read(load, before, read, plan, partition_slice)
        finally:
            if read is not None:
                read.close()  # a write that failed mid-stream may have left the COPY running
            source.close()
        return _result(load, before, written, started)


def _open_table(load: _DeltaLoad) -> DeltaTable | None:
    """The table the load writes (None: the load creates it); update and delete need one."""
    table = open_table(load.path, load.storage_options)
    if table is None and load.strategy.changes_rows_only:
        raise MissingDeltaTable(
            f"mode {load.spec.mode} changes rows of an existing Delta table, and there is "
            f"none at {load.path}. Nothing was written. Create or load it first (e.g. with "
            "mode incremental_merge), or correct sink.path"
        )
    return table


def _incremental_plan(
    incremental: IncrementalSource | None, state: DeltaState, reset: bool
) -> ReadPlan | None:
    if incremental is None:
        return None
    plan = incremental.plan(state.position, reset)
    if state.lost and plan.full and not reset:
        reason = f"run {state.run}'s commit (holding the position) is no longer in the Delta log"
        plan = dataclasses.replace(plan, reason=reason)
    return plan


def _write_read(
    load: _DeltaLoad,
    before: _Before,
    read: ArrowRead,
    plan: ReadPlan | None,
    partition_slice: PartitionSlice | None,
) -> _Written:
    """Prepare the read, compute the new position, and write both in one commit."""
    source = read.source
    incremental = as_incremental(source)
    cursor = incremental.cursor_column if incremental is not None else None
    _prepare_read(load, read, before.table, cursor)
    position = None
    if incremental is not None:
        position = incremental.position_after(max_value(source, cursor) if cursor else None)
    boundary = boundary_of_read(source, load.spec.keyed, position)
    run = before.state.run + 1
    ctx = DeltaContext(
        path=load.path,
        storage_options=load.storage_options,
        table=before.table,
        read=read,
        source=source,
        strategy=load.spec,
        commit=commit_properties(load.pipeline, run, position, load.transactions, boundary),
        pipeline=load.pipeline,
        partition_slice=partition_slice,
        writer_properties=load.writer_properties,
    )
    written = _write(ctx, load)
    if not written.committed:  # a merge that changed nothing: commit run and position
        write(ctx, "append", empty=True)
    kept = len(boundary.rows) if boundary else 0
    return _Written(written, read, plan, position, kept if cursor else None)


def _prepare_read(
    load: _DeltaLoad, read: ArrowRead, table: DeltaTable | None, cursor: str | None
) -> None:
    """Fix how `read` carries each column, and check its keys, before anything is written."""
    source, spec = read.source, load.spec
    strategy = load.strategy
    strategy.prepare_read(read, spec)
    kept = kept_types(table, rewrites=_rewrites(load))
    plan_numerics(read, kept, load.numeric_as)
    check_list_columns(kept, read, load.path)
    if spec.keyed:
        check_key_columns(spec.unique_key, source.info)
        if not strategy.settles_duplicates:
            return
        if spec.duplicate_policy == "keep_last":
            read.select = keep_last_query(read, spec, cursor)
        else:
            check_no_duplicates(source, spec)


def _write(ctx: DeltaContext, load: _DeltaLoad) -> DeltaWrite:
    if ctx.table is None:
        return create_table(ctx)
    if load.reset and not load.strategy.changes_rows_only:  # update, delete: re-read, apply
        return rebuild(ctx)
    if not load.strategy.overwrites_table:  # an overwrite takes the read's schema
        partial = load.strategy.changes_rows_only
        check_columns(ctx.table, ctx.read, ctx.strategy, ctx.path, partial=partial)
    return load.strategy.apply(ctx)


def _rewrites(load: _DeltaLoad) -> bool:
    """Whether the load replaces the table's schema with the read's (a reset rebuilds it,
    unless the strategy only changes rows)."""
    strategy = load.strategy
    return strategy.overwrites_table or (load.reset and not strategy.changes_rows_only)


def _result(
    load: _DeltaLoad, before: _Before, written: _Written, started: float
) -> DeltaLoadResult:
    table = DeltaTable(load.path, storage_options=load.storage_options)
    added = {f: size for f, size in data_files(table).items() if f not in before.files}
    return DeltaLoadResult(
        path=load.path,
        strategy=load.spec.mode,
        rows=written.write.rows,
        rows_read=written.read.rows,
        bytes_read=written.read.bytes,
        bytes_written=sum(added.values()),
        files_added=tuple(sorted(added)),
        version_before=before.version,
        version_after=table.version(),
        seconds=time.monotonic() - started,
        run=before.state.run + 1,
        read=written.plan,
        position_before=before.state.position if written.plan is not None else None,
        position_after=written.position,
        metrics=written.write.metrics,
        strategy_metadata=written.write.strategy_metadata,
        boundary_rows=written.boundary_rows,
    )


def max_value(source: PostgresTableSource, column: str) -> str | None:
    """max(column)::text over the rows the read selects, in its snapshot."""
    expression = sql.SQL("max({})::text").format(source.column_expression(column))
    rows = source.fetch(source.select_query([expression]))
    return rows[0][0] if rows else None
