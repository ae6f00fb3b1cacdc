"""partition_replace: the read replaces whole partitions of `partition_column` (one commit).

The table is partitioned by `partition_column` (Delta `partition_by`, set when the load
creates it); an existing table partitioned otherwise is refused (a reset rebuilds it).
What is replaced:

- with a partition slice (e.g. a Dagster time window): exactly the rows with
  lower <= column < upper, even when the read has none of them (the slice is emptied);
- without: the partitions of the values the read holds (`column IN (...)`, plus
  `column IS NULL` when it reads NULLs), found with `SELECT DISTINCT` in the read's
  snapshot before writing. A read of no rows replaces nothing.

Either way every read row must fall in what is replaced (delta-rs checks each written row
against the predicate); otherwise RowsOutsidePredicate and nothing changes. Rows of other
partitions are never touched: delta-rs removes whole files of the replaced partitions.
The partition column must map to an integer, string, date or boolean column (a timestamp
would make a partition per instant: partition by a date column instead).
"""

from __future__ import annotations

import polars as pl
from psycopg import sql

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, write
from pgflow.sinks.delta.predicates import column_between, column_in
from pgflow.sinks.delta.replace import write_replacing
from pgflow.sinks.delta.strategy import DeltaStrategy

FIELD = "sink.strategy.partition_column"


class PartitionMismatch(ValueError):
    """partition_column does not fit the source or the existing table; nothing was written."""


def partition_replace(ctx: DeltaContext) -> DeltaWrite:
    column, dtype = partition_column(ctx)
    assert ctx.table is not None
    existing = ctx.table.metadata().partition_columns
    if existing != [column]:
        found = f"partitioned by {', '.join(existing)}" if existing else "not partitioned"
        raise PartitionMismatch(
            f"{FIELD} is {column}, but the Delta table at {ctx.path} is {found}; nothing was "
            f"written. Run once with reset to rebuild it partitioned by {column}"
        )
    condition = replaced(ctx, column, dtype)
    if condition is None:
        return write(ctx, "append", empty=True)  # nothing read, nothing replaced
    return write_replacing(ctx, condition)


class PartitionReplace(DeltaStrategy):
    key = "partition_replace"

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return partition_replace(ctx)


def partition_column(ctx: DeltaContext) -> tuple[str, pl.DataType]:
    column = ctx.strategy.partition_column
    if not column:
        raise PartitionMismatch(f"{FIELD} is required for mode partition_replace")
    dtype = ctx.read.schema.get(column)
    if dtype is None:
        raise PartitionMismatch(
            f"{FIELD} {column!r} is not a column of {ctx.source.info.table}; "
            f"name one of: {', '.join(ctx.read.schema.names())}"
        )
    if not (dtype.is_integer() or dtype in (pl.String, pl.Date, pl.Boolean)):
        raise PartitionMismatch(
            f"{FIELD} {column!r} is {dtype} in Delta; a partition column must be an integer, "
            "text, date or boolean column (partition by a date column rather than a timestamp)"
        )
    return column, dtype


def replaced(ctx: DeltaContext, column: str, dtype: pl.DataType) -> str | None:
    """The condition selecting what this load replaces; None when it replaces nothing."""
    if ctx.partition_slice is not None:
        return column_between(column, ctx.partition_slice.lower, ctx.partition_slice.upper, dtype)
    values = distinct_values(ctx, column)
    return column_in(column, values, dtype) if values else None


def distinct_values(ctx: DeltaContext, column: str) -> list[object]:
    """The partition values the read holds, from its snapshot (as the read will render them)."""
    index = [c.name for c in ctx.read.columns].index(column)
    expression = ctx.read.expressions[index]
    if ctx.read.columns[index].dtype == pl.String:  # uuid, enums, char(n)...: as the read has them
        expression = sql.SQL("({})::text").format(expression)
    elif ctx.read.columns[index].dtype == pl.Date:  # the read sends days since 1970: the date
        expression = ctx.source.column_expression(column)
    read = ctx.source.select_query([expression])
    query = sql.SQL("SELECT DISTINCT v FROM ({}) r(v)").format(read)
    return [row[0] for row in ctx.source.fetch(query)]
