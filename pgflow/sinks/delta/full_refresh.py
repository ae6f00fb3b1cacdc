"""full_refresh: the table becomes exactly the read, schema included (one overwrite commit).

The old files stay on storage (time travel) until VACUUM removes them.
"""

from __future__ import annotations

from pgflow.sinks.delta.context import DeltaContext, DeltaWrite, write


def full_refresh(ctx: DeltaContext) -> DeltaWrite:
    return write(ctx, "overwrite", schema_mode="overwrite")
