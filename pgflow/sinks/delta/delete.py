"""`mode: delete` into Delta: the table's rows whose key is read are deleted.

The read is narrowed to its distinct keys (`SELECT DISTINCT <key>` over the read's filter):
other columns a spec reads are not needed, and a key read twice deletes once. One merge:
`MERGE ... ON <key, null-safe> WHEN MATCHED THEN DELETE`, so every table row of a key read
goes, duplicates included; `pgflow/rows_deleted` counts them. Keys the table does not hold
are counted (`pgflow/unmatched_keys`, unmatched.py), never an error: deleting twice is
deleting once, so a rerun after a failure converges.
"""

from __future__ import annotations

import logging

from psycopg import sql

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta.context import DeltaContext, DeltaWrite
from pgflow.sinks.delta.merge import keyed_merge
from pgflow.sinks.delta.strategy import DeltaStrategy
from pgflow.sinks.delta.unmatched import unmatched_keys
from pgflow.sources.arrow import ArrowRead

log = logging.getLogger(__name__)


def delete(ctx: DeltaContext) -> DeltaWrite:
    """Delete the table's rows of the keys read; rows deleted (also the rows written)."""
    table = ctx.table
    assert table is not None, "the load refuses mode delete without a table"
    unmatched = unmatched_keys(ctx)
    if unmatched.count:
        log.info("%s: %s were not in the table (mode delete)", ctx.path, unmatched.described())
    distinct_keys(ctx.read)
    metrics, committed = keyed_merge(
        ctx, lambda merger: merger.when_matched_delete(), merge_schema=False
    )
    deleted = metrics.get("num_target_rows_deleted", 0)
    counts = {"rows_deleted": deleted, "unmatched_keys": unmatched.count}
    return DeltaWrite(rows=deleted, metrics=metrics, committed=committed, strategy_metadata=counts)


def distinct_keys(read: ArrowRead) -> None:
    """Make `read` (narrowed to the key by Delete.prepare_read) stream each key once."""
    read.select = sql.SQL("SELECT DISTINCT * FROM ({}) AS k").format(
        read.source.select_query(read.expressions)
    )


class Delete(DeltaStrategy):
    key = "delete"
    changes_rows_only = True
    settles_duplicates = False

    def prepare_read(self, read: ArrowRead, spec: StrategySpec) -> None:
        # Only the key decides what goes: other columns read would be streamed for nothing.
        read.use_columns([c for name in spec.unique_key for c in read.columns if c.name == name])

    def apply(self, ctx: DeltaContext) -> DeltaWrite:
        return delete(ctx)
