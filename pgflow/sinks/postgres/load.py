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
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import (
    copy_format,
    ddl,
    full_refresh,
    index_rebuild,
    keys,
    parallel_exchange,
    position_owner,
    replace,
    schema_drift,
    staging,
    state,
    statistics,
)
from pgflow.sinks.postgres.apply import (
    ApplyContext,
    ApplyStrategy,
    PartitionSlice,
    insert_from_staging,
)
from pgflow.sinks.postgres.parallel_exchange import Streams
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import (
    CopyFormat,
    IncrementalSource,
    Position,
    ReadPlan,
    TableSource,
    as_incremental,
)
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.postgres import PostgresTableSource, set_portable_text_format
from pgflow.sources.snapshot_slices import share_snapshot

# (mode, variant) -> "module:function". Resolved on use, one module per strategy; a mode is
# reachable only once pgflow.config.support lets specs ask for it.
STRATEGIES: dict[tuple[str, str], str] = {
    ("incremental_append", ""): "pgflow.sinks.postgres.append:append",
    ("incremental_merge", "delete_insert"): "pgflow.sinks.postgres.merge:delete_insert",
    ("incremental_merge", "upsert"): "pgflow.sinks.postgres.upsert:upsert",
    ("incremental_merge", "shadow_swap"): "pgflow.sinks.postgres.shadow_swap:shadow_swap",
    ("replace", ""): "pgflow.sinks.postgres.replace:replace",
    ("partition_replace", ""): "pgflow.sinks.postgres.partition_replace:partition_replace",
}


# Strategies whose COPY goes straight into a table of their own: `direct(log, target, fill)`
# prepares that table, calls `fill(table)` (the COPY; returns its rows) and finishes the swap.
# The table must be created or truncated in the load's transaction (the COPY uses FREEZE).
DIRECT_STRATEGIES: dict[tuple[str, str], str] = {
    ("full_refresh", "truncate_insert"): "pgflow.sinks.postgres.full_refresh:truncate_copy",
    ("full_refresh", "exchange"): "pgflow.sinks.postgres.exchange:exchange",
}
# The one strategy whose new table several COPY streams can fill (`parallel_exchange`).
PARALLEL_VARIANT = ("full_refresh", "exchange")
Fill = Callable[[TableName], int]
DirectStrategy = Callable[[SqlLog, TableName, Fill], int]


class UnsupportedStrategy(ValueError):
    pass


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


def strategy_variant(strategy: StrategySpec) -> tuple[str, str]:
    if strategy.mode == "full_refresh":
        return strategy.mode, strategy.method
    if strategy.mode == "incremental_merge":
        return strategy.mode, strategy.merge_policy
    return strategy.mode, ""


def apply_for(strategy: StrategySpec) -> ApplyStrategy:
    return _resolve(STRATEGIES, strategy)


def direct_for(strategy: StrategySpec) -> DirectStrategy:
    return _resolve(DIRECT_STRATEGIES, strategy)


def is_direct(strategy: StrategySpec) -> bool:
    return strategy_variant(strategy) in DIRECT_STRATEGIES


def _resolve(strategies: dict[tuple[str, str], str], strategy: StrategySpec) -> Any:
    target = strategies.get(strategy_variant(strategy))
    if target is None:
        raise UnsupportedStrategy(f"sink strategy {strategy_label(strategy)} is not supported")
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def strategy_label(strategy: StrategySpec) -> str:
    return "/".join(part for part in strategy_variant(strategy) if part)


def fills_new_target_directly(strategy: StrategySpec) -> bool:
    """Whether the load that creates the target COPYs into it without staging. A new target
    has nothing to merge or replace, so every strategy's first load inserts all it read, except
    where staging does more: replace checks its predicate there, and keep_last drops repeated
    keys by their order of arrival."""
    if strategy.mode == "replace":
        return False
    return not (is_keyed(strategy) and strategy.duplicate_policy == "keep_last")


def is_keyed(strategy: StrategySpec) -> bool:
    return strategy.mode == "incremental_merge" or (
        strategy.mode == "incremental_append" and strategy.only_new_rows
    )


# Strategies that change rows in place; the others put a new table or partition in place of the
# old one, which has no statistics until analyzed.
IN_PLACE = {
    ("incremental_append", ""),
    ("incremental_merge", "delete_insert"),
    ("incremental_merge", "upsert"),
}


def needs_analyze(
    strategy: StrategySpec, created: bool, rows_written: int, target_before: TableInfo
) -> bool:
    if created or strategy_variant(strategy) not in IN_PLACE:
        return True
    return statistics.worth_analyzing(rows_written, target_before.estimated_rows)


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
) -> LoadResult:
    """Run one load on `conn` (autocommit mode; this opens and commits its own transaction).

    `partition_slice` (partition_replace only) is the slice the run replaces. For an
    IncrementalSource, the position stored for `target` decides what is read; the new one
    is stored, under `pipeline`'s name, in the same transaction. `reset` reads everything
    and makes the target exactly the source, whatever the strategy. `streams` lets a
    full_refresh exchange fill the new table over several connections (`parallel_exchange`).
    """
    if streams is None or streams.count < 2 or strategy_variant(strategy) != PARALLEL_VARIANT:
        return _load(conn, source, target, strategy, progress, partition_slice, pipeline, reset)
    if not isinstance(source, PostgresTableSource) or as_incremental(source) is not None:
        raise UnsupportedStrategy("a parallel load reads a whole Postgres table")
    with ddl.holding_target(conn, target):  # from the snapshot to the swap
        parallel = _load_in_parallel(conn, source, target, strategy, streams, progress)
        if isinstance(parallel, LoadResult):
            return parallel
        result = _load(conn, source, target, strategy, progress, partition_slice, pipeline, reset)
        return dataclasses.replace(result, one_stream_reason=parallel)


def _load_in_parallel(
    conn: psycopg.Connection,
    source: PostgresTableSource,
    target: TableName,
    strategy: StrategySpec,
    streams: Streams,
    progress: staging.ProgressCallback | None,
) -> LoadResult | str:
    """The exchange filled by `streams`, or why the load must stay one stream (nothing was
    written then, and the source is open)."""
    started = time.monotonic()
    log = SqlLog(conn)
    source.open()
    with conn.transaction():
        set_portable_text_format(conn)
        reason = parallel_exchange.one_stream_reason(log, source, target)
    if reason is not None:
        return reason
    shared = share_snapshot(source, streams.count)
    if isinstance(shared, str):
        return shared
    prepared = parallel_exchange.prepare(log, source, target, strategy.fillfactor)
    try:
        filling = time.monotonic()
        copies = parallel_exchange.fill(log, source, shared, prepared, streams, progress)
        copied = parallel_exchange.total(copies, time.monotonic() - filling)
        source.close()
        with conn.transaction():
            set_portable_text_format(conn)
            parallel_exchange.swap(log, target, prepared)
            statistics.analyze(log, target)
    except BaseException:
        parallel_exchange.drop_unswapped(log, prepared.shadow)
        raise
    return LoadResult(
        target=target,
        target_info=prepared.target_info,
        rows=copied.rows,
        bytes=copied.bytes,
        copy_format=prepared.copy_format,
        created_target=False,
        statements=log.statements,
        seconds=time.monotonic() - started,
        copy_seconds=copied.seconds,
        strategy=strategy_label(strategy),
        rows_read=copied.rows,
        streams=len(copies),
    )


def _fill_new_target(log: SqlLog, target: TableName, fill: Fill, strategy: StrategySpec) -> int:
    """COPY straight into the target this load created (FREEZE), its indexes built after.
    The target's unique index on the key (the primary key, or NULLS NOT DISTINCT) is the
    duplicate check: its build fails on a repeated key, and the whole load rolls back."""
    try:
        return index_rebuild.fill_then_index(log, target, fill)
    except psycopg.errors.UniqueViolation as error:
        if not is_keyed(strategy):
            raise
        detail = error.diag.message_detail or ""  # "Key (k)=(7) is duplicated."
        sample = detail.removeprefix("Key ").removesuffix(" is duplicated.")
        raise keys.duplicate_keys(strategy.unique_key, sample) from None


def _position_read(
    log: SqlLog, table: TableName, incremental: IncrementalSource
) -> Position | None:
    """The incremental position after this read: from the largest cursor value in `table`,
    which holds exactly the rows read (staging, or the target the read created)."""
    column = incremental.cursor_column
    return incremental.position_after(staging.max_value(log, table, column) if column else None)


def _load(
    conn: psycopg.Connection,
    source: TableSource,
    target: TableName,
    strategy: StrategySpec,
    progress: staging.ProgressCallback | None,
    partition_slice: PartitionSlice | None,
    pipeline: str,
    reset: bool,
) -> LoadResult:
    keyed = is_keyed(strategy)
    started = time.monotonic()
    log = SqlLog(conn)
    incremental = as_incremental(source)
    direct = is_direct(strategy)
    if direct and incremental:
        raise UnsupportedStrategy(
            f"sink strategy {strategy_label(strategy)} replaces the whole target; "
            "an incremental read needs incremental_merge or incremental_append"
        )
    direct_apply = direct_for(strategy) if direct else None
    apply = None if direct else apply_for(strategy)
    dropped, position, read, position_reset = 0, None, None, None
    with conn.transaction():
        set_portable_text_format(conn)
        ddl.lock_target(log, target)
        source.open()  # after the lock: runs of one target read in the order they write
        if partition_slice is None and (bounds := source.window_bounds()) is not None:
            partition_slice = PartitionSlice(*bounds)  # a time partition replaces its slice
        if keyed:
            keys.check_key_columns(strategy.unique_key, source.info)
        if incremental:
            read, reset, position_reset = position_owner.plan_read(conn, target, incremental, reset)
        columns = source.info.column_names
        created = not table_exists(conn, target)
        if created:
            fillfactor = ddl.fillfactor_for(strategy)
            ddl.create_target(log, source.info, target, strategy.unique_key, fillfactor)
        else:
            ddl.ensure_enums(log, source.info, target.schema)
            ddl.ensure_fillfactor(log, target, strategy.fillfactor)
        target_info = describe_table(conn, target)
        if schema_drift.reconcile(log, source.info, target_info, strategy.on_schema_change):
            target_info = describe_table(conn, target)
        fmt = copy_format.choose(source.info, target_info)
        copies: list[staging.CopyStats] = []

        def fill(table: TableName) -> int:
            # Every table filled here is new or truncated in this transaction: FREEZE is allowed.
            freeze = staging.can_freeze(log, table)
            # closing(): on failure the source's COPY must end now, not when the traceback dies.
            with closing(source.copy_out(columns, fmt)) as chunks:
                copies.append(staging.copy_into(log, table, columns, chunks, fmt, progress, freeze))
            source.close()  # the source is read; what follows touches only the sink
            return copies[-1].rows

        if created and fills_new_target_directly(strategy):
            rows = _fill_new_target(log, target, fill, strategy)
            if incremental:
                position = _position_read(log, target, incremental)
                state.write_position(log, target, pipeline, position)
        elif direct_apply is not None:
            rows = direct_apply(log, target, fill)
        else:
            stage = staging.create_staging(
                log, target, columns, keys.ORDER_COLUMN if keyed else None
            )
            fill(stage)
            if incremental:
                position = _position_read(log, stage, incremental)
            ctx = ApplyContext(
                log,
                target,
                stage,
                columns,
                strategy,
                source.info,
                target_info,
                partition_slice,
                staged_rows=copies[0].rows,
            )
            dropped = keys.enforce_duplicate_policy(ctx) if keyed else 0
            if created and strategy.mode == "replace":
                replace.check_predicate(ctx)  # a bad predicate fails the first load, not the second
            if created:
                rows = insert_from_staging(ctx)  # a new table has nothing to merge, replace or swap
            elif reset:
                rows = full_refresh.truncate_insert(ctx)  # a reset rebuilds the target
            else:
                assert apply is not None
                rows = apply(ctx)
            if incremental:
                state.write_position(log, target, pipeline, position)
            staging.drop_staging(log, stage)
        if reset or needs_analyze(strategy, created, rows, target_info):
            statistics.analyze(log, target)
    copied = copies[0]
    return LoadResult(
        target=target,
        target_info=target_info,
        rows=rows,
        bytes=copied.bytes,
        copy_format=fmt,
        created_target=created,
        statements=log.statements,
        seconds=time.monotonic() - started,
        copy_seconds=copied.seconds,
        strategy=strategy_label(strategy),
        duplicates_dropped=dropped,
        rows_read=copied.rows,
        read=read,
        position_after=position,
        position_reset=position_reset,
    )
