"""replace: the table rows matching `custom_predicate` are replaced by the read (one commit).

An overwrite with a predicate: delta-rs removes the files' rows matching it (rewriting files
that also hold other rows) and adds the read. Every read row must match the predicate too
(delta-rs checks each one; otherwise RowsOutsidePredicate and nothing changes), including
on the first load, which creates the table from the read. So a replace load is closed: what
it writes is what the next load with the same predicate replaces.

The predicate is DataFusion SQL over the table's columns, e.g. `order_date >= '2026-01-01'`
(quote identifiers with double quotes when they are not lower case). It is checked for
shape (see predicates.py) and, on an existing table, planned before anything is written.
"""

from __future__ import annotations

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, write
from pgflow.sinks.delta.predicates import RowsOutsidePredicate, plan_error, rows_outside
from pgflow.sinks.delta.strategy import DeltaStrategy
from pgflow.sinks.postgres.replace import EXAMPLE, FIELD, InvalidPredicate, shape_problem


def replace(ctx: DeltaContext) -> DeltaWrite:
    return write_replacing(ctx, checked_predicate(ctx))


class Replace(DeltaStrategy):
    key = "replace"

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return replace(ctx)


def checked_predicate(ctx: DeltaContext) -> str:
    """custom_predicate, parenthesized, after the shape check and (existing table) planning."""
    predicate = ctx.strategy.custom_predicate
    if predicate is None or not predicate.strip():
        raise InvalidPredicate(
            f"{FIELD} is required for mode replace: a condition on the columns of the Delta "
            f"table at {ctx.path} selecting the rows to replace, {EXAMPLE}. Nothing was written."
        )
    problem = shape_problem(predicate)
    if problem:
        raise InvalidPredicate(
            f"{FIELD} {predicate!r} {problem}. It must be one boolean condition on the columns "
            f"of the Delta table at {ctx.path}, {EXAMPLE}. Nothing was written."
        )
    condition = f"(\n{predicate}\n)"  # a trailing -- comment cannot swallow the parenthesis
    if ctx.table is not None and (reason := plan_error(ctx.table, condition)):
        raise InvalidPredicate(
            f"{FIELD} {predicate!r} is not a valid condition on the Delta table at {ctx.path}: "
            f"delta-rs says {reason!r}. Write one boolean expression over its columns "
            f"({', '.join(ctx.read.schema.names())}), {EXAMPLE}. Nothing was written."
        )
    return condition


def write_replacing(
    ctx: DeltaContext, condition: str, partition_by: list[str] | None = None
) -> DeltaWrite:
    """Overwrite the rows matching `condition` with the read; every read row must match it.

    Columns the source gained are added (unless on_schema_change is fail); the rows kept
    read them as NULL.
    """
    try:
        return write(
            ctx,
            "overwrite",
            predicate=condition,
            partition_by=partition_by,
            schema_mode=ctx.schema_mode,
        )
    except Exception as error:
        outside = rows_outside(error)
        if outside is None:
            raise
        raise RowsOutsidePredicate(
            f"{outside} row(s) read from {ctx.source.info.table} do not match "
            f"{condition.strip()}, the rows this load replaces in the Delta table at "
            f"{ctx.path}; nothing was written. Narrow the source read, or widen the condition"
        ) from error
