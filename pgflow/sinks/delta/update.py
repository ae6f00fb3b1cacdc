"""`mode: update` into Delta: the rows read update the table's rows of their key; nothing is
inserted.

One merge: `MERGE ... ON <key, null-safe> WHEN MATCHED AND <a read column IS DISTINCT FROM>
THEN UPDATE SET <the read's non-key columns>`, with no WHEN NOT MATCHED clause. Columns the
read lacks keep their values; a row whose read copy is identical is matched but not
rewritten (as merge.py). The read was deduplicated per duplicate_policy before.

Keys the table lacks are counted first (unmatched.py) and reported as
`pgflow/unmatched_keys`; with `on_unmatched: fail` the load stops there, before its commit:
the table's version and the stored position stay as they were.
"""

from __future__ import annotations

import logging

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite
from pgflow.sinks.delta.keys import SOURCE_ALIAS, changed_predicate, quote
from pgflow.sinks.delta.merge import keyed_merge
from pgflow.sinks.delta.strategy import DeltaStrategy
from pgflow.sinks.delta.unmatched import unmatched_keys
from pgflow.sinks.postgres.update import UnmatchedKeys

log = logging.getLogger(__name__)


def update(ctx: DeltaContext) -> DeltaWrite:
    """Update the table's rows of the keys read that differ; rows updated, none added."""
    table = ctx.table
    assert table is not None, "the load refuses mode update without a table"
    unmatched = unmatched_keys(ctx)
    if unmatched.count:
        if ctx.strategy.on_unmatched == "fail":
            raise UnmatchedKeys(
                f"mode update into the Delta table at {ctx.path}: {unmatched.described()} are "
                "not in the table, and on_unmatched is fail. Nothing was written: the table's "
                "version and the stored position are kept. Load those rows first, or set "
                "sink.strategy.on_unmatched: ignore"
            )
        log.warning("%s: %s are not in the table; not inserted (mode update)",
                    ctx.path, unmatched.described())  # fmt: skip
    counts = {"unmatched_keys": unmatched.count}
    key = ctx.strategy.unique_key
    columns = [c for c in ctx.read.schema.names() if c not in key]
    changed = changed_predicate(columns, key, [f.name for f in table.schema().fields])
    if changed is None:  # the read carries only the key: nothing to set
        return DeltaWrite(rows=0, committed=False, strategy_metadata=counts)
    sets = {quote(c): f"{SOURCE_ALIAS}.{quote(c)}" for c in columns}
    metrics, committed = keyed_merge(
        ctx,
        lambda merger: merger.when_matched_update(sets, predicate=changed),
        merge_schema=ctx.schema_mode == "merge",
    )
    rows = metrics.get("num_target_rows_updated", 0)
    return DeltaWrite(rows=rows, metrics=metrics, committed=committed, strategy_metadata=counts)


class Update(DeltaStrategy):
    key = "update"
    changes_rows_only = True

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return update(ctx)
