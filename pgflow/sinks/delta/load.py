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
open file; the source snapshot stays open while the table is written.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deltalake import DeltaTable, WriterProperties
from psycopg import sql

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta.context import (
    DeltaContext,
    DeltaWrite,
    default_writer_properties,
    write,
)
from pgflow.sinks.delta.create import create_table, rebuild
from pgflow.sinks.delta.first_write import first_write
from pgflow.sinks.delta.keys import check_no_duplicates, keep_last_query
from pgflow.sinks.delta.numerics import NumericAs, kept_types, plan_numerics
from pgflow.sinks.delta.retyped import check_list_columns
from pgflow.sinks.delta.state import DeltaState, commit_properties, read_state
from pgflow.sinks.postgres.apply import PartitionSlice
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

# mode -> "module:function", one module per strategy, resolved on use.
STRATEGIES: dict[str, str] = {
    "full_refresh": "pgflow.sinks.delta.full_refresh:full_refresh",
    "incremental_append": "pgflow.sinks.delta.append:append",
    "incremental_merge": "pgflow.sinks.delta.merge:merge",
    "replace": "pgflow.sinks.delta.replace:replace",
    "partition_replace": "pgflow.sinks.delta.partition_replace:partition_replace",
}


@dataclass(frozen=True)
class DeltaLoadResult:
    path: str
    strategy: str
    rows: int  # rows the strategy wrote: appended, or inserted + updated by a merge
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

    @property
    def created_table(self) -> bool:
        return self.version_before is None


def is_keyed(strategy: StrategySpec) -> bool:
    return strategy.mode == "incremental_merge" or (
        strategy.mode == "incremental_append" and strategy.only_new_rows
    )


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
) -> DeltaLoadResult:
    """Load `source` (a Postgres source, not yet opened) into the Delta table at `path`.

    The table is created by the first load. For an IncrementalSource the position stored in
    the table under `pipeline` decides what is read, and the new one is committed with the
    rows. `reset` reads everything and overwrites the whole table, whatever the strategy.
    `partition_slice` (partition_replace only) is the slice the run replaces.
    `writer_properties` replaces pgflow's Parquet settings (snappy, row groups of 64Ki rows).
    `numeric_as` is how unconstrained numerics are written (numerics.py).
    """
    if not isinstance(source, PostgresTableSource):
        raise TypeError(f"a Delta load reads a Postgres table; got {type(source).__name__}")
    if not pipeline:
        raise ValueError("pipeline: a Delta load needs the pipeline's name to store its position")
    if strategy.mode not in STRATEGIES:
        raise ValueError(f"sink strategy {strategy.mode} is not supported for Delta")
    module, function = STRATEGIES[strategy.mode].split(":")
    apply = getattr(importlib.import_module(module), function)
    path = str(path)
    started = time.monotonic()
    with first_write(path, storage_options):  # a failed first load leaves no folder
        table = open_table(path, storage_options)
        version_before = None if table is None else table.version()
        files_before = data_files(table)
        state = read_state(table, pipeline)
        incremental = as_incremental(source)
        read: ArrowRead | None = None
        source.open()
        try:
            if partition_slice is None and (bounds := source.window_bounds()) is not None:
                partition_slice = PartitionSlice(*bounds)  # a time partition replaces its slice
            plan = _incremental_plan(incremental, state, reset)
            read = ArrowRead(source, batch_rows=batch_rows, batch_bytes=batch_bytes)
            cursor = incremental.cursor_column if incremental is not None else None
            _prepare_read(read, table, strategy, cursor, path, reset=reset, numeric_as=numeric_as)
            position = None
            if incremental is not None:
                position = incremental.position_after(max_value(source, cursor) if cursor else None)
            ctx = DeltaContext(
                path=path,
                storage_options=storage_options,
                table=table,
                read=read,
                source=source,
                strategy=strategy,
                commit=commit_properties(pipeline, state.run + 1, position),
                pipeline=pipeline,
                partition_slice=partition_slice,
                writer_properties=writer_properties or default_writer_properties(),
            )
            written = _write(ctx, apply, reset)
            if not written.committed:  # a merge that changed nothing: commit run and position
                write(ctx, "append", empty=True)
        finally:
            if read is not None:
                read.close()  # a write that failed mid-stream may have left the COPY running
            source.close()
        return _result(
            path, storage_options, strategy, written, read, version_before, files_before, started,
            state.run + 1, plan, state.position, position,
        )  # fmt: skip


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


def _prepare_read(
    read: ArrowRead,
    table: DeltaTable | None,
    strategy: StrategySpec,
    cursor: str | None,
    path: str,
    *,
    reset: bool,
    numeric_as: NumericAs,
) -> None:
    """Fix how `read` carries each column, and check its keys, before anything is written."""
    source = read.source
    kept = kept_types(table, rewrites=reset or strategy.mode == "full_refresh")
    plan_numerics(read, kept, numeric_as)
    check_list_columns(kept, read, path)
    if is_keyed(strategy):
        check_key_columns(strategy.unique_key, source.info)
        if strategy.duplicate_policy == "keep_last":
            read.select = keep_last_query(read, strategy, cursor)
        else:
            check_no_duplicates(source, strategy)


def _write(
    ctx: DeltaContext, apply: Callable[[DeltaContext], DeltaWrite], reset: bool
) -> DeltaWrite:
    if ctx.table is None:
        return create_table(ctx)
    if reset:
        return rebuild(ctx)
    if ctx.strategy.mode != "full_refresh":  # an overwrite takes the read's schema
        check_columns(ctx.table, ctx.read, ctx.strategy, ctx.path)
    return apply(ctx)


def _result(
    path: str,
    storage_options: dict[str, str] | None,
    strategy: StrategySpec,
    written: DeltaWrite,
    read: ArrowRead,
    version_before: int | None,
    files_before: dict[str, int],
    started: float,
    run: int,
    plan: ReadPlan | None,
    position_before: Position | None,
    position_after: Position | None,
) -> DeltaLoadResult:
    table = DeltaTable(path, storage_options=storage_options)
    added = {f: size for f, size in data_files(table).items() if f not in files_before}
    return DeltaLoadResult(
        path=path,
        strategy=strategy.mode,
        rows=written.rows,
        rows_read=read.rows,
        bytes_read=read.bytes,
        bytes_written=sum(added.values()),
        files_added=tuple(sorted(added)),
        version_before=version_before,
        version_after=table.version(),
        seconds=time.monotonic() - started,
        run=run,
        read=plan,
        position_before=position_before if plan is not None else None,
        position_after=position_after,
        metrics=written.metrics,
    )


class SchemaChanged(ValueError):
    """The source's columns no longer fit the Delta table; nothing was written."""


def check_columns(table: DeltaTable, read: ArrowRead, strategy: StrategySpec, path: str) -> None:
    """Columns the source gained are added unless on_schema_change is fail; none may go.

    Type changes are left to delta-rs, which refuses a batch that does not fit the table.
    """
    have = [field.name for field in table.schema().fields]
    gained = [name for name in read.schema.names() if name not in have]
    lost = [name for name in have if name not in read.schema]
    if gained and strategy.on_schema_change == "fail":
        raise SchemaChanged(
            f"the source has new column(s) {', '.join(gained)} that the Delta table at {path} "
            "lacks, and sink.strategy.on_schema_change is fail; nothing was written. Set it to "
            "add_columns, or run once with reset to rebuild the table"
        )
    if lost:
        raise SchemaChanged(
            f"the Delta table at {path} has column(s) {', '.join(lost)} that the source no "
            "longer has; nothing was written. Run once with reset to rebuild the table from "
            "the source"
        )


def open_table(path: str, storage_options: dict[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at `path`, or None when there is none yet."""
    if not DeltaTable.is_deltatable(path, storage_options):
        return None
    return DeltaTable(path, storage_options=storage_options)


def data_files(table: DeltaTable | None) -> dict[str, int]:
    """The table's current data files and their sizes."""
    if table is None:
        return {}
    actions = table.get_add_actions(flatten=False)
    return dict(zip(actions["path"].to_pylist(), actions["size_bytes"].to_pylist(), strict=True))


def max_value(source: PostgresTableSource, column: str) -> str | None:
    """max(column)::text over the rows the read selects, in its snapshot."""
    expression = sql.SQL("max({})::text").format(source.column_expression(column))
    rows = source.fetch(source.select_query([expression]))
    return rows[0][0] if rows else None
