"""incremental_append: add staged rows to the target; rows already there are never changed.

Without `only_new_rows` every staged row is inserted: the source is expected to deliver only
rows the target lacks (an insert-only log), and nothing is deduplicated. With
`only_new_rows: true` a staged row goes in only when its key is not in the target yet
(NOT EXISTS), so re-delivered rows are skipped and never update the stored ones. Keys match
typed and null-safe (keys.key_match): 1.5 and 1.50, or one instant written in two time zones,
are one key, and a NULL key matches a NULL key. Repeated keys within staging were settled by
the duplicate policy before this runs.
"""

from __future__ import annotations

from psycopg import sql

from pgflow.sinks.postgres import keys
from pgflow.sinks.postgres.apply import ApplyContext, insert_from_staging
from pgflow.sinks.postgres.create_partitions import prepare_partitions
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.strategy import Applied, StagedStrategy


def append(ctx: ApplyContext) -> int:
    """Insert the staged rows (only those with a key missing from the target if only_new_rows)."""
    if not ctx.strategy.only_new_rows:
        return insert_from_staging(ctx)
    missing = sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS t WHERE {})").format(
        ctx.target_sql, keys.key_match(ctx, "t", "s")
    )
    return insert_from_staging(ctx, missing)


class Append(StagedStrategy):
    key = "incremental_append"
    in_place = True

    def apply(self, ctx: ApplyContext) -> Applied:
        prepare_partitions(ctx)  # before any row: checked, or created (create_partitions)
        rows = append(ctx)
        return Applied(rows, change=RowChange.added(rows))
