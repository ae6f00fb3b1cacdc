"""The contract between the load and a sink strategy: everything a strategy may touch.

A strategy is `apply(ctx) -> rows written`, run inside the load's transaction after the
source has been copied into `ctx.staging`. It must not commit, and must leave nothing behind
but the new state of `ctx.target`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.partition_slice import PartitionSlice
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import TableInfo


@dataclass(frozen=True)
class ApplyContext:
    log: SqlLog
    target: TableName
    staging: TableName
    columns: tuple[str, ...]  # the staged columns, in staging order
    strategy: StrategySpec
    source: TableInfo  # the source's catalog (types, NOT NULLs, primary key)
    target_info: TableInfo  # the target as it was before this load
    partition_slice: PartitionSlice | None = None
    staged_rows: int | None = None  # rows COPYed into staging (before duplicate handling)

    @property
    def conn(self) -> psycopg.Connection:
        return self.log.conn

    @property
    def target_sql(self) -> sql.Identifier:
        return self.target.identifier()

    @property
    def staging_sql(self) -> sql.Identifier:
        return self.staging.identifier()

    def column_list(self, prefix: str | None = None) -> sql.Composed:
        if prefix is None:
            return sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL(", ").join(sql.Identifier(prefix, c) for c in self.columns)


ApplyStrategy = Callable[[ApplyContext], int]

# Below this share of the target's rows, matching staged keys by index probes beats a scan of
# the whole target, which the planner picks without statistics on the fresh staging table
# (1% of 2,000,000 rows: 0.14 s against 0.42 s for the delete).
PROBE_SHARE = 0.05


def few_staged_rows(ctx: ApplyContext) -> bool:
    estimated = ctx.target_info.estimated_rows
    if ctx.staged_rows is None or not estimated:
        return False
    return ctx.staged_rows < PROBE_SHARE * estimated


def prefer_index_probes(ctx: ApplyContext) -> None:
    """For the rest of the transaction, join staged keys to the target by index lookups."""
    ctx.log.execute(sql.SQL("SET LOCAL enable_hashjoin = off"))
    ctx.log.execute(sql.SQL("SET LOCAL enable_mergejoin = off"))


def insert_from_staging(ctx: ApplyContext, where: sql.Composable | None = None) -> int:
    """INSERT every staged row (or those matching `where`, over alias `s`) into the target."""
    query = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} AS s").format(
        ctx.target_sql, ctx.column_list(), ctx.column_list("s"), ctx.staging_sql
    )
    if where is not None:
        query = sql.SQL("{} WHERE {}").format(query, where)
    return ctx.log.execute(query).rowcount
