"""`mode: delete`: target rows whose key is staged are deleted.

The staged rows need only the key (`source.options.include_columns: [<key columns>]`, plus the
cursor column of a column-cursor read); other staged columns are ignored. Keys match typed and
null-safe (keys.key_match), so every target row of a staged key goes, duplicates included.
A staged key no target row holds is counted (`pgflow/unmatched_keys`), not an error: deleting
twice is the same as deleting once, so a rerun or a kill never harms. Repeated staged keys
are harmless too: the duplicate policy does not apply. The ledger subtracts the rows deleted.
"""

from __future__ import annotations

import logging

from pgflow.sinks.postgres import keys
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.merge import delete_staged_keys
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.strategy import Applied, StagedStrategy

log = logging.getLogger(__name__)


def delete(ctx: ApplyContext) -> Applied:
    """Delete the target rows of the staged keys; rows deleted (also the rows written)."""
    unmatched, sample = keys.unmatched_keys(ctx)
    if unmatched:
        log.info(
            "%s: %s staged key(s) (%s) were not in the target (mode delete)",
            ctx.target,
            f"{unmatched:,}",
            ", ".join(sample),
        )
    deleted = delete_staged_keys(ctx)
    return Applied(deleted, deleted=deleted, unmatched=unmatched, change=RowChange.added(-deleted))


class Delete(StagedStrategy):
    key = "delete"
    in_place = True
    stages_first_load = True
    needs_target = True
    rebuilds_on_reset = False
    settles_duplicates = False

    def apply(self, ctx: ApplyContext) -> Applied:
        return delete(ctx)

    def first_load(self, ctx: ApplyContext) -> Applied:
        return delete(ctx)  # never reached: the load refuses to create its target
