"""The loads that write the whole table: the first one (creation) and a reset.

A first load of any mode creates the table from the read in one commit (there is nothing
to merge or replace yet): partitioned by partition_column for partition_replace; for
replace and a partition slice, every read row must already match what later loads
replace. A reset overwrites the whole table with the read, schema (and partitioning)
included, whatever the mode: the table becomes exactly the source.
"""

from __future__ import annotations

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, write
from pgflow.sinks.delta.partition_replace import partition_column, replaced
from pgflow.sinks.delta.replace import checked_predicate, write_replacing


def create_table(ctx: DeltaContext) -> DeltaWrite:
    mode = ctx.strategy.mode
    if mode == "replace":
        return write_replacing(ctx, checked_predicate(ctx))
    if mode == "partition_replace":
        column, dtype = partition_column(ctx)
        if ctx.partition_slice is not None:
            return write_replacing(ctx, replaced(ctx, column, dtype) or "", partition_by=[column])
        return write(ctx, "error", partition_by=[column])
    return write(ctx, "error")


def rebuild(ctx: DeltaContext) -> DeltaWrite:
    partition_by = None
    if ctx.strategy.mode == "partition_replace":
        partition_by = [partition_column(ctx)[0]]
    return write(ctx, "overwrite", schema_mode="overwrite", partition_by=partition_by)
