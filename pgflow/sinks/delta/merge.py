"""incremental_merge: upsert the read into the table on unique_key (one MERGE commit).

`MERGE ... ON <key, null-safe> WHEN MATCHED AND <a non-key column IS DISTINCT FROM> THEN
UPDATE SET * WHEN NOT MATCHED THEN INSERT *`: rows read again unchanged (a cursor's `>=`
boundary, a retry) rewrite nothing. The read was deduplicated per duplicate_policy before,
so no table row matches two read rows.

The read streams into the merge (delta-rs `streamed_exec`): it is not held in memory, but
delta-rs then cannot prune the table's files by the read's key range and scans the whole
table; files holding a matched row are rewritten (this delta-rs writes no deletion vectors).
When nothing changed delta-rs makes no commit; the load then commits the position alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deltalake.table import TableMerger

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, GuardedBatches
from pgflow.sinks.delta.keys import SOURCE_ALIAS, TARGET_ALIAS, changed_predicate, key_predicate
from pgflow.sinks.delta.strategy import DeltaStrategy


def merge(ctx: DeltaContext) -> DeltaWrite:
    return run_merge(ctx, update_changed=True)


class Merge(DeltaStrategy):
    key = "incremental_merge"

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return merge(ctx)


def run_merge(ctx: DeltaContext, *, update_changed: bool) -> DeltaWrite:
    """Insert the read rows whose key is new; with `update_changed`, update changed ones."""
    table = ctx.table
    assert table is not None, "the load creates the table before any merge"
    changed = changed_predicate(
        ctx.read.schema.names(),
        ctx.strategy.unique_key,
        [field.name for field in table.schema().fields],
    )

    def clauses(merger: TableMerger) -> TableMerger:
        if update_changed and changed is not None:
            merger = merger.when_matched_update_all(predicate=changed)
        return merger.when_not_matched_insert_all()

    metrics, committed = keyed_merge(ctx, clauses, merge_schema=ctx.schema_mode == "merge")
    rows = metrics.get("num_target_rows_inserted", 0) + metrics.get("num_target_rows_updated", 0)
    return DeltaWrite(rows=rows, metrics=metrics, committed=committed)


def keyed_merge(
    ctx: DeltaContext, clauses: Callable[[TableMerger], TableMerger], *, merge_schema: bool
) -> tuple[dict[str, Any], bool]:
    """One delta-rs merge of the read (streamed) into the table on the key, null-safe, with
    the strategy's `clauses`; delta-rs' metrics, and whether it committed a version."""
    table = ctx.table
    assert table is not None, "the load creates the table before any merge"
    version = table.version()
    batches = GuardedBatches(ctx.read, ctx.path, ctx.storage_options)
    try:
        merger = table.merge(
            batches.reader(),
            key_predicate(ctx.strategy, ctx.source.info),
            source_alias=SOURCE_ALIAS,
            target_alias=TARGET_ALIAS,
            merge_schema=merge_schema,
            streamed_exec=True,
            writer_properties=ctx.writer_properties,
            commit_properties=ctx.commit,
        )
        metrics: dict[str, Any] = clauses(merger).execute()
    except Exception as error:
        batches.reraise(error)
        raise
    return metrics, table.version() != version
