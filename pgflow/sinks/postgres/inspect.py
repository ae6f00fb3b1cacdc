"""Read-only probes of a Postgres table for asset checks: row counts, duplicate keys, drift.

Each probe runs in its own short transaction with a statement timeout, so a check never
holds a snapshot (or a lock) on a busy database for long; callers set the connection
READ ONLY. Identifiers are always composed with psycopg.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import SchemaChangePolicy, TableName
from pgflow.sinks.postgres import schema_drift
from pgflow.sinks.postgres.keys import nulls_not_distinct_sql
from pgflow.sinks.postgres.sql_log import SqlLog
from pgflow.sources.catalog import TableInfo, table_exists
from pgflow.sources.cdc import with_deleted_column
from pgflow.sources.postgres import set_timeout

DEFAULT_TIMEOUT_SECONDS = 60
SAMPLE_KEYS = 5


@dataclass(frozen=True)
class DuplicateKeys:
    """Key values that occur more than once, with a few examples (most repeated first)."""

    keys: int  # distinct key values with more than one row
    rows: int  # rows carrying those key values
    examples: tuple[tuple[dict[str, str | None], int], ...]  # (key column -> value text, rows)


@dataclass(frozen=True)
class SchemaComparison:
    """How a source's columns differ from its target's, and what the next load will refuse."""

    added: tuple[str, ...]  # in the source, not in the target
    dropped: tuple[str, ...]  # in the target, no longer in the source
    retyped: tuple[str, ...]  # "name (target type -> source type)"
    refused: tuple[str, ...]  # why the next load will stop, under the pipeline's policy

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped or self.retyped)


def exists(conn: psycopg.Connection, table: TableName) -> bool:
    with conn.transaction():
        return table_exists(conn, table)


def row_count(
    conn: psycopg.Connection,
    table: TableName,
    deleted_column: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> int:
    """count(*) of `table`; rows stamped in `deleted_column` (soft deletes) are not counted.

    A `deleted_column` the table lacks counts every row: a target created before the
    column was configured has no soft-deleted rows.
    """
    ident = table.identifier()
    with conn.transaction():
        set_timeout(conn, timeout)
        query = sql.SQL("SELECT count(*) FROM {}").format(ident)
        if deleted_column and _has_column(conn, table, deleted_column):
            query = sql.SQL("{} WHERE {} IS NULL").format(query, sql.Identifier(deleted_column))
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _has_column(conn: psycopg.Connection, table: TableName, column: str) -> bool:
    row = conn.execute(
        "SELECT FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s"
        " AND attnum > 0 AND NOT attisdropped",
        (table.identifier().as_string(conn), column),
    ).fetchone()
    return row is not None


def duplicate_keys(
    conn: psycopg.Connection,
    table: TableName,
    key: Sequence[str],
    sample: int = SAMPLE_KEYS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> DuplicateKeys:
    """Key values of `table` held by more than one row (NULLs group together, as in
    pgflow's NULLS NOT DISTINCT key index). One scan: the totals ride along as window sums."""
    columns = [sql.Identifier(k) for k in key]
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in columns)
    query = sql.SQL(
        "SELECT {texts}, n, count(*) OVER (), sum(n) OVER () FROM ("
        "SELECT {keys}, count(*) AS n FROM {table} GROUP BY {keys} HAVING count(*) > 1) d "
        "ORDER BY n DESC, {texts} LIMIT {sample}"
    ).format(
        texts=texts,
        keys=sql.SQL(", ").join(columns),
        table=table.identifier(),
        sample=sql.Literal(sample),
    )
    with conn.transaction():
        set_timeout(conn, timeout)
        rows = conn.execute(query).fetchall()
    if not rows:
        return DuplicateKeys(0, 0, ())
    width = len(key)
    examples = tuple((dict(zip(key, r[:width], strict=True)), int(r[width])) for r in rows)
    return DuplicateKeys(int(rows[0][width + 1]), int(rows[0][width + 2]), examples)


# A valid, total, plain unique index whose key columns are all in `key`, each NOT NULL or
# compared NULLS NOT DISTINCT: two rows equal on `key` would be equal on the index.
_ENFORCING_INDEX_SQL = """
SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = to_regclass(%(table)s) AND i.indisunique AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL
  AND (SELECT bool_and(a.attname = ANY(%(key)s) AND (a.attnotnull OR {nulls_not_distinct}))
       FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
       WHERE k.ord <= i.indnkeyatts)
ORDER BY ic.relname LIMIT 1
"""


def index_enforcing_unique(
    conn: psycopg.Connection, table: TableName, key: Sequence[str]
) -> str | None:
    """The name of a unique index that makes `key` unique in `table` (NULLs counting as
    equal, as duplicate_keys counts them), or None: then only a scan can tell."""
    with conn.transaction():
        row = conn.execute(
            sql.SQL(_ENFORCING_INDEX_SQL).format(nulls_not_distinct=nulls_not_distinct_sql(conn)),
            {"table": table.identifier().as_string(conn), "key": list(key)},
        ).fetchone()
    return row[0] if row else None


def compare_columns(
    target_conn: psycopg.Connection,
    source: TableInfo,
    target: TableInfo,
    policy: SchemaChangePolicy,
    deleted_column: str | None = None,
    partial_rows: bool = False,
    keep_types: bool = False,
) -> SchemaComparison:
    """The drift a Postgres sink load would find, judged by the load's own rules.

    Uses schema_drift's detection (types that cast implicitly into the target, such as
    widening, are no drift; target columns with defaults are local) and its refusal rule,
    so the check and the next load agree. The CDC soft-delete column is pgflow's own.
    `keep_types`: the load casts each value (on_bad_rows: reject), a retyped column is no drift.
    """
    source = with_deleted_column(source, deleted_column)
    with target_conn.transaction():
        drift = schema_drift.find_drift(SqlLog(target_conn), source, target, partial_rows)
    drift = schema_drift.types_kept(drift, policy, keep_types)
    return SchemaComparison(
        added=tuple(c.name for c in drift.new),
        dropped=tuple(c.name for c in drift.gone),
        retyped=tuple(f"{s.name} ({t.type_sql} -> {s.type_sql})" for s, t in drift.retyped),
        refused=tuple(schema_drift.refused_changes(drift, policy)),
    )
