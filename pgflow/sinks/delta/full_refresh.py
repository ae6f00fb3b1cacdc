"""full_refresh: the table becomes exactly the read, schema included (one overwrite commit).

The old files stay on storage (time travel) until VACUUM removes them.
"""

from __future__ import annotations

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, write
from pgflow.sinks.delta.strategy import DeltaStrategy


def full_refresh(ctx: DeltaContext) -> DeltaWrite:
    return write(ctx, "overwrite", schema_mode="overwrite")


class FullRefresh(DeltaStrategy):
    key = "full_refresh"
    overwrites_table = True

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return full_refresh(ctx)
