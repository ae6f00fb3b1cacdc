"""Load one source table into a Postgres target: staging-first, in one transaction.

lock target -> create it on the first load -> check it fits -> UNLOGGED staging -> COPY the
source into staging -> apply the strategy -> ANALYZE -> drop staging -> COMMIT. Any failure
rolls all of it back, so the target is either the old rows or the new ones, never a mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres import ddl, staging
from pgflow.sinks.postgres.exchange import exchange
from pgflow.sinks.postgres.full_refresh import insert_from_staging, truncate_insert
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.base import CopyFormat, TableSource
from pgflow.sources.catalog import TableInfo, describe_table, table_exists
from pgflow.sources.postgres import set_portable_text_format

# (log, target, staging, columns) -> rows now in the target from this load
ApplyStrategy = Callable[[SqlLog, TableName, TableName, Sequence[str]], int]


class UnsupportedStrategy(ValueError):
    pass


@dataclass(frozen=True)
class LoadResult:
    target: TableName
    target_info: TableInfo
    rows: int
    bytes: int
    copy_format: CopyFormat
    created_target: bool
    statements: list[str]
    seconds: float
    copy_seconds: float
    strategy: str


def apply_for(strategy: StrategySpec) -> ApplyStrategy:
    if strategy.mode == "full_refresh":
        return exchange if strategy.method == "exchange" else truncate_insert
    raise UnsupportedStrategy(f"sink strategy mode '{strategy.mode}' is not supported yet")


def strategy_label(strategy: StrategySpec) -> str:
    return (
        f"{strategy.mode}/{strategy.method}" if strategy.mode == "full_refresh" else strategy.mode
    )


def load_table(
    conn: psycopg.Connection,
    source: TableSource,
    target: TableName,
    strategy: StrategySpec,
    progress: staging.ProgressCallback | None = None,
) -> LoadResult:
    """Run one load on `conn` (autocommit mode; this opens and commits its own transaction)."""
    apply = apply_for(strategy)
    started = time.monotonic()
    log = SqlLog(conn)
    columns = source.info.column_names
    with conn.transaction():
        set_portable_text_format(conn)
        ddl.lock_target(log, target)
        created = not table_exists(conn, target)
        if created:
            ddl.create_target(log, source.info, target)
            apply = insert_from_staging  # a new table has nothing to replace or swap
        else:
            ddl.ensure_enums(log, source.info, target.schema)
        target_info = describe_table(conn, target)
        ddl.check_target_fits(source.info, target_info)
        fmt: CopyFormat = "binary" if ddl.binary_compatible(source.info, target_info) else "text"
        stage = staging.create_staging(log, target, columns)
        # closing(): on failure the source's COPY must end now, not when the traceback dies.
        with closing(source.copy_out(columns, fmt)) as chunks:
            copied = staging.copy_into(log, stage, columns, chunks, fmt, progress)
        rows = apply(log, target, stage, columns)
        staging.drop_staging(log, stage)
        log.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(target.schema, target.name)))
    return LoadResult(
        target=target,
        target_info=target_info,
        rows=rows,
        bytes=copied.bytes,
        copy_format=fmt,
        created_target=created,
        statements=log.statements,
        seconds=time.monotonic() - started,
        copy_seconds=copied.seconds,
        strategy=strategy_label(strategy),
    )
