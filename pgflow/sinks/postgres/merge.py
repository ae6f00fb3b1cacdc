"""incremental_merge, `merge_policy: delete_insert` (default): staged rows replace their keys.

Target rows whose key matches a staged key are deleted, then every staged row is inserted, in
the load's transaction: readers see the old rows until commit. Afterwards each staged key has
exactly the staged row (all its columns, as the source wrote them, e.g. 1.50 not 1.5), even if
the target held that key twice. Keys match typed and null-safe (keys.key_match), so a NULL key
replaces the stored NULL-key row instead of duplicating it.

Target rows whose key is not staged are kept: a merge cannot see source deletes, so rows
deleted in the source stay in the target. Target-only columns get their defaults on the
re-inserted rows. No unique index is needed (one on the key makes the delete an index lookup).
"""

from __future__ import annotations

from psycopg import sql

from pgflow.sinks.postgres import keys
from pgflow.sinks.postgres.apply import (
    ApplyContext,
    few_staged_rows,
    insert_from_staging,
    prefer_index_probes,
)
from pgflow.sinks.postgres.create_partitions import prepare_partitions
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.strategy import Applied, StagedStrategy


def delete_staged_keys(ctx: ApplyContext) -> int:
    """Delete every target row of a staged key (typed, null-safe); the rows deleted."""
    if few_staged_rows(ctx):
        prefer_index_probes(ctx)
    return ctx.log.execute(
        sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {}").format(
            ctx.target_sql, ctx.staging_sql, keys.key_match(ctx, "t", "s")
        )
    ).rowcount


def delete_insert(ctx: ApplyContext) -> Applied:
    """Delete the target rows of the staged keys, insert all staged rows; rows inserted, and
    inserted minus deleted for the ledger."""
    deleted = delete_staged_keys(ctx)
    inserted = insert_from_staging(ctx)
    return Applied(inserted, change=RowChange.added(inserted - deleted))


class DeleteInsert(StagedStrategy):
    key = "incremental_merge/delete_insert"
    in_place = True

    def apply(self, ctx: ApplyContext) -> Applied:
        prepare_partitions(ctx)  # before any row: checked, or created (create_partitions)
        return delete_insert(ctx)
