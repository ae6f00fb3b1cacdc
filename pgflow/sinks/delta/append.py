"""incremental_append: add every read row to the table (one append commit).

With `only_new_rows`, only rows whose unique_key is not in the table yet are added: a merge
with nothing but `when_not_matched_insert_all`, after the duplicate policy.
"""

from __future__ import annotations

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, write
from pgflow.sinks.delta.merge import run_merge
from pgflow.sinks.delta.strategy import DeltaStrategy


def append(ctx: DeltaContext) -> DeltaWrite:
    if ctx.strategy.only_new_rows:
        return run_merge(ctx, update_changed=False)
    return write(ctx, "append", schema_mode=ctx.schema_mode)


class Append(DeltaStrategy):
    key = "incremental_append"

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return append(ctx)
