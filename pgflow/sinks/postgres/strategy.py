"""What the Postgres load must know about a sink strategy, and what a strategy returns.

Two kinds, told apart by their base class:

- `StagedStrategy`: the load COPYs the source into a staging table, then `apply(ctx)` writes
  the target from it (apply.py's ApplyContext). Every incremental mode, replace and
  partition_replace.
- `DirectStrategy`: `fill_target(log, target, fill)` prepares a table of its own (the target
  it truncated, or a new table it swaps in) and calls `fill(table)`, the COPY, into it:
  full_refresh. The table must be created or truncated in the load's transaction (the COPY
  uses FREEZE).

Each strategy is a small class in its own module, registered by its `key` (the spec's mode and
variant, `StrategySpec.key`) in strategies.py: adding one is its module and one line there.
Strategies never commit, and never import dagster: `metadata` gives plain values, which the
bindings wrap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from pgflow.config.model import TableName
from pgflow.sinks.postgres.apply import ApplyContext, insert_from_staging
from pgflow.sinks.postgres.row_change import UNKNOWN, RowChange
from pgflow.sinks.postgres.sql_log import SqlLog

# The COPY into a table the strategy prepared; returns the rows copied.
Fill = Callable[[TableName], int]


@dataclass(frozen=True)
class Applied:
    """What a strategy did to the target."""

    rows: int  # rows written (inserted, or inserted + updated)
    deleted: int | None = None  # rows a replace deleted by its predicate before inserting
    unmatched: int | None = None  # update, delete: staged keys the target did not hold
    change: RowChange = UNKNOWN  # what it did to the target's row count (the ledger)


class PostgresStrategy(ABC):
    key: ClassVar[str]  # StrategySpec.key: mode, or mode/variant
    # Changes rows in place: ANALYZE only when enough of the target changed. The others put a
    # new table or partition in place of the old one, which has no statistics until analyzed.
    in_place: ClassVar[bool] = False
    # The first load, into the target it creates, is staged too (replace checks its predicate
    # there); the others COPY straight into the new target.
    stages_first_load: ClassVar[bool] = False
    # Several COPY streams can fill its new table (parallel_exchange).
    parallel: ClassVar[bool] = False
    # Changes rows of a target that must exist (update, delete): never creates one, a reset
    # only re-reads the source (the target is not a copy of it), repeated staged keys of a
    # delete are harmless.
    needs_target: ClassVar[bool] = False
    rebuilds_on_reset: ClassVar[bool] = True
    settles_duplicates: ClassVar[bool] = True

    def metadata(self, applied: Applied) -> dict[str, int]:
        """What the run did beyond the rows written, as plain values (`rows_deleted`)."""
        values = {} if applied.deleted is None else {"rows_deleted": applied.deleted}
        if applied.unmatched is not None:
            values["unmatched_keys"] = applied.unmatched
        return values


class StagedStrategy(PostgresStrategy):
    @abstractmethod
    def apply(self, ctx: ApplyContext) -> Applied:
        """Write the target from `ctx.staging`, inside the load's transaction."""

    def first_load(self, ctx: ApplyContext) -> Applied:
        """A staged first load: the new target has nothing to merge, replace or swap."""
        rows = insert_from_staging(ctx)
        return Applied(rows, change=RowChange.exact(rows))


class DirectStrategy(PostgresStrategy):
    @abstractmethod
    def fill_target(self, log: SqlLog, target: TableName, fill: Fill) -> int:
        """Prepare a table of its own, `fill` it, put it in place; rows copied."""
