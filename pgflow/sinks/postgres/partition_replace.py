"""partition_replace: every partition the staged rows touch is replaced by the staged rows in it.

What is replaced (the same rows on the native and on the fallback path)
    With a partition slice (`ApplyContext.partition_slice`, e.g. a Dagster time window):
    exactly the target rows with lower <= column < upper, even when staging has none of them
    (the slice is then emptied). Staged rows outside the slice are an error.

    Without a slice, into a target declaratively partitioned by RANGE or LIST on exactly
    `partition_column` (default operator class, the column's collation): each partition
    (the default partition included) holding at least one staged value is replaced as a
    whole by the staged rows that fall in it, like dbt's insert_overwrite and Spark's dynamic
    partition overwrite; target rows whose values the source did not send go with their
    partition. Into any other target (a plain table, or one partitioned otherwise): the
    target rows whose partition value (typed, null-safe: NULL replaces NULL) is one of the
    staged values.

    Into a partitioned target, a staged value that no partition accepts is an error naming
    it (partition_replace does not create partitions). Every error is raised before anything
    changes.

How: native partition swap, or delete/insert
    Native (partition_swap.py) is used (`native_mode: auto`, the default) when the target is
    partitioned as above, has no default partition, every partition to replace is a plain
    table nothing blocks (see partition_swap.partition_blocker), and, with a slice, every
    partition overlapping the slice lies inside it (its bound read from the catalog).
    Otherwise the fallback runs: DELETE the replaced rows (the slice; or each touched
    partition's bound, `pg_get_partition_constraintdef`; or, into other targets,
    `column IN (staged values)` plus `column IS NULL` when NULL is staged), then INSERT every
    staged row. `native_mode: required` raises NativePartitionRefused instead, naming the
    reason and the fix, before anything changes; `native_mode: disabled` always
    deletes/inserts. Why native was not used is recorded as a comment in the load's
    statements.
"""

from __future__ import annotations

from psycopg import sql

from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres.apply import ApplyContext, insert_from_staging
from pgflow.sinks.postgres.create_partitions import prepare_partitions
from pgflow.sinks.postgres.partition_bounds import (
    Blocker,
    Layout,
    Partition,
    StagedGroup,
    covered_by_slice,
    read_layout,
    staged_groups,
    unrouted_values,
)
from pgflow.sinks.postgres.partition_swap import partition_blocker, swap_partitions
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.strategy import Applied, StagedStrategy


class PartitionSliceError(ValueError):
    """The staged rows do not fit the requested partition slice; nothing was written."""


class NativePartitionRefused(RuntimeError):
    """native_mode: required, but the partitions cannot be swapped; nothing was changed."""


class PartitionColumnMissing(ValueError):
    """partition_column is not a column of the staged rows or of the target."""


class PartitionMissing(ValueError):
    """Staged values that no partition of the target accepts; nothing was written."""


def partition_replace(ctx: ApplyContext) -> Applied:
    """Replace the slice, the touched partitions or the staged values; rows inserted, and
    inserted minus replaced for the ledger."""
    column = _partition_column(ctx)
    window = ctx.partition_slice
    if window is not None:
        _check_slice(ctx, column, window)
    layout = read_layout(ctx, column)
    if isinstance(layout, Blocker):  # not partitioned by the column: by exact value
        _refuse_if_required(ctx, layout)
        return _delete_insert(ctx, column, window, None, layout.reason)
    touched = _touched_partitions(ctx, column, layout)
    planned = _plan_native(ctx, layout, touched, column, window)
    if isinstance(planned, Blocker):
        _refuse_if_required(ctx, planned)
        return _delete_insert(ctx, column, window, touched, planned.reason)
    inserted, removed = swap_partitions(ctx, planned)
    return Applied(inserted, change=RowChange.added(inserted - removed))


class PartitionReplace(StagedStrategy):
    key = "partition_replace"

    def apply(self, ctx: ApplyContext) -> Applied:
        if ctx.strategy.create_partitions:  # else a value with no partition fails below
            prepare_partitions(ctx)
        return partition_replace(ctx)


# --- checks shared by both paths ---------------------------------------------------------


def _partition_column(ctx: ApplyContext) -> str:
    column = ctx.strategy.partition_column
    if not column or column not in ctx.columns or ctx.target_info.column(column) is None:
        raise PartitionColumnMissing(
            f"sink.strategy.partition_column {column!r} must be a column of both the source "
            f"({', '.join(ctx.columns)}) and the target {ctx.target}"
        )
    return column


def _check_slice(ctx: ApplyContext, column: str, window: PartitionSlice) -> None:
    if window.lower is None or window.upper is None:
        raise PartitionSliceError(
            f"partition slice [{window.lower}, {window.upper}) needs both bounds"
        )
    try:
        # Bounds of any type (dates, instants, numbers); TypeError when they do not compare.
        empty = not window.lower < window.upper  # type: ignore[operator]  # object bounds
    except TypeError:
        empty = False  # not comparable in Python: leave it to the typed checks below
    if empty:
        raise PartitionSliceError(
            f"partition slice [{window.lower}, {window.upper}) is empty: lower must be below upper"
        )
    outside = ctx.log.execute(
        sql.SQL(
            "SELECT {col}::text FROM {staging} AS s WHERE ({inside}) IS NOT TRUE LIMIT 1"
        ).format(
            col=sql.Identifier("s", column),
            staging=ctx.staging_sql,
            inside=_in_slice(sql.Identifier("s", column), window),
        )
    ).fetchone()
    if outside is not None:
        value = "NULL" if outside[0] is None else outside[0]
        raise PartitionSliceError(
            f"the source has rows outside the partition slice [{window.lower}, {window.upper}) "
            f"of {column}, e.g. {column} = {value}; nothing was written. Filter the source to "
            f"the slice, or widen the slice"
        )


def _in_slice(column: sql.Composable, window: PartitionSlice) -> sql.Composed:
    # Literals keep their own type (date, timestamptz, ...): Postgres compares them with the
    # column's type exactly (a timestamptz bound is not truncated to a date column).
    return sql.SQL("{col} >= {lower} AND {col} < {upper}").format(
        col=column, lower=sql.Literal(window.lower), upper=sql.Literal(window.upper)
    )


def _touched_partitions(ctx: ApplyContext, column: str, layout: Layout) -> list[Partition]:
    """The partitions holding a staged value; PartitionMissing when a value has none."""
    groups = staged_groups(ctx, column, layout.partitions)
    missing = next((g for g in groups if g.partition is None), None)
    if missing is not None:
        raise PartitionMissing(_missing_message(ctx, column, missing))
    touched = [layout.partitions[g.partition] for g in groups if g.partition is not None]
    parents = [p for p in touched if p.relkind == "p"]
    if parents:  # a value may fit a partition but none of its sub-partitions
        unrouted = unrouted_values(ctx, column, parents)
        if unrouted.values:
            raise PartitionMissing(_missing_message(ctx, column, unrouted))
    return touched


def _missing_message(ctx: ApplyContext, column: str, group: StagedGroup) -> str:
    shown = ", ".join(
        "NULL" if v is None else sql.Literal(v).as_string(ctx.conn) for v in group.sample
    )
    more = (
        f" and {group.values - len(group.sample)} more" if group.values > len(group.sample) else ""
    )
    return (
        f"the source has rows whose {column} has no partition in {ctx.target}: {shown}{more}; "
        f"nothing was written. The partition must exist before the load: create it "
        f"(CREATE TABLE ... PARTITION OF {ctx.target} FOR VALUES ...), or filter those rows "
        f"out of the source"
    )


def _refuse_if_required(ctx: ApplyContext, blocker: Blocker) -> None:
    if ctx.strategy.native_mode == "required":
        raise NativePartitionRefused(
            f"partition_replace with native_mode: required cannot swap partitions of "
            f"{ctx.target}: {blocker.reason}. Nothing was changed. Fix: {blocker.fix}, or "
            f"set sink.strategy.native_mode: auto to fall back to delete/insert"
        )


# --- native: can the partitions be swapped? ------------------------------------------------


def _plan_native(
    ctx: ApplyContext,
    layout: Layout,
    touched: list[Partition],
    column: str,
    window: PartitionSlice | None,
) -> list[Partition] | Blocker:
    """The partitions to swap, or why they cannot be swapped."""
    if ctx.strategy.native_mode == "disabled":
        return Blocker("native_mode is disabled", "set sink.strategy.native_mode: auto")
    if layout.default_partition:
        return Blocker(
            f"{ctx.target} has a default partition {layout.default_partition}",
            "move its rows into regular partitions and detach it",
        )
    affected = touched
    if window is not None:
        covered = covered_by_slice(ctx, column, layout.key, layout.partitions, window)
        if isinstance(covered, Blocker):
            return covered
        affected = covered  # the staged rows lie in the slice, so touched is a subset
    for partition in affected:
        blocker = partition_blocker(ctx, layout.oid, partition)
        if blocker is not None:
            return blocker
    return affected


# --- fallback: delete/insert ---------------------------------------------------------------


def _delete_insert(
    ctx: ApplyContext,
    column: str,
    window: PartitionSlice | None,
    touched: list[Partition] | None,
    reason: str,
) -> Applied:
    """Delete what is replaced (the slice, the touched partitions' bounds, or the staged
    values when the target is not partitioned by the column), then insert every staged row."""
    ctx.log.record(_comment(f"partition_replace: delete/insert, no partition swap: {reason}"))
    target_col = sql.Identifier("t", column)
    if window is not None:
        deleted = ctx.log.execute(
            sql.SQL("DELETE FROM {} AS t WHERE {}").format(
                ctx.target_sql, _in_slice(target_col, window)
            )
        ).rowcount
    elif touched is not None:
        deleted = 0
        for partition in touched:  # by its bound, not by the staged values: all of it goes
            deleted += ctx.log.execute(
                sql.SQL("DELETE FROM {} AS t WHERE {}").format(
                    ctx.target_sql, sql.SQL(partition.constraint)
                )
            ).rowcount
    else:
        deleted = _delete_staged_values(ctx, column)
    inserted = insert_from_staging(ctx)
    return Applied(inserted, change=RowChange.added(inserted - deleted))


def _delete_staged_values(ctx: ApplyContext, column: str) -> int:
    target_col = sql.Identifier("t", column)
    # Typed, and null-safe in two statements so that the first stays a hashable semi-join.
    deleted = ctx.log.execute(
        sql.SQL("DELETE FROM {} AS t WHERE {} IN (SELECT {} FROM {} AS s)").format(
            ctx.target_sql, target_col, sql.Identifier("s", column), ctx.staging_sql
        )
    ).rowcount
    staged_null = ctx.conn.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE {} IS NULL)").format(
            ctx.staging_sql, sql.Identifier(column)
        )
    ).fetchone()
    if staged_null and staged_null[0]:
        deleted += ctx.log.execute(
            sql.SQL("DELETE FROM {} AS t WHERE {} IS NULL").format(ctx.target_sql, target_col)
        ).rowcount
    return deleted


def _comment(text: str) -> str:
    return "/* " + text.replace("*/", "* /") + " */"
