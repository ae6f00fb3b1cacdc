"""Keys of keyed Delta strategies: the duplicate policy, run in the source snapshot, and the
null-safe merge predicates.

The duplicate policy is applied to the source read itself, before anything is written:

- fail: `SELECT key, count(*) ... GROUP BY key HAVING count(*) > 1` over the rows the read
  selects, in the read's snapshot; repeated keys raise DuplicateKeys naming a sample.
- keep_last: the read becomes `SELECT DISTINCT ON (key) ... ORDER BY key, <last first>`, where
  the last row of a key is the one with the largest cursor value (column-cursor sources,
  NULL cursors last), then the most recently written row version (smallest `age(xmin)`),
  then the largest physical position (ctid). The Postgres sink keeps the last row in COPY
  order instead, which for an untouched heap is the same row.

GROUP BY and DISTINCT ON both treat NULL keys as equal, like the merge predicate
(`IS NOT DISTINCT FROM` for nullable key columns, `=` for NOT NULL ones).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from pgflow.config.model import StrategySpec
from pgflow.sinks.postgres.keys import SAMPLE_DUPLICATES, DuplicateKeys
from pgflow.sources.arrow import ArrowRead
from pgflow.sources.catalog import TableInfo
from pgflow.sources.postgres import PostgresTableSource

SOURCE_ALIAS = "s"
TARGET_ALIAS = "t"


def quote(name: str) -> str:
    """`name` as a quoted SQL identifier for delta-rs (DataFusion) expressions."""
    return '"' + name.replace('"', '""') + '"'


def check_no_duplicates(source: PostgresTableSource, strategy: StrategySpec) -> None:
    """duplicate_policy fail: raise before anything is written when the read repeats a key."""
    keys = sql.SQL(", ").join(source.column_expression(k) for k in strategy.unique_key)
    read = source.select_query([sql.SQL("({})::text, count(*)").format(keys)])
    query = sql.SQL(
        "{read} GROUP BY {keys} HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT {limit}"
    ).format(read=read, keys=keys, limit=sql.Literal(SAMPLE_DUPLICATES))
    rows = source.fetch(query)
    if rows:
        sample = ", ".join(f"{key} x{count}" for key, count in rows)
        raise DuplicateKeys(
            f"the source repeats unique_key ({', '.join(strategy.unique_key)}) for some rows, "
            f"e.g. {sample}; nothing was written. Fix the source, or set "
            f"sink.strategy.duplicate_policy: keep_last to keep the last row of each key"
        )


def keep_last_query(read: ArrowRead, strategy: StrategySpec, cursor: str | None) -> sql.Composed:
    """The read's SELECT with one row per key: the last one (see the module doc)."""
    source = read.source
    columns = [
        sql.SQL("{} AS {}").format(expression, sql.Identifier(column.name))
        for expression, column in zip(read.expressions, read.columns, strict=True)
    ]
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in strategy.unique_key)
    order: list[sql.Composable] = [keys]
    if cursor is not None:
        # The table's column, not the output column of that name: the read may send it in
        # another form (timestamps as microseconds text), which does not sort the same.
        column = sql.SQL("{}.{}").format(source.table_sql, sql.Identifier(cursor))
        order.append(sql.SQL("{} DESC NULLS LAST").format(column))
    order.append(sql.SQL("age({}.xmin), {}.ctid DESC").format(source.table_sql, source.table_sql))
    select = source.select_query(
        [sql.SQL("DISTINCT ON ({}) {}").format(keys, sql.SQL(", ").join(columns))]
    )
    return sql.SQL("{} ORDER BY {}").format(select, sql.SQL(", ").join(order))


def key_predicate(strategy: StrategySpec, info: TableInfo) -> str:
    """`t.k = s.k AND ...` over the unique key; IS NOT DISTINCT FROM where NULLs can occur."""
    parts = []
    for key in strategy.unique_key:
        column = info.column(key)
        operator = "=" if column is not None and column.not_null else "IS NOT DISTINCT FROM"
        # Parenthesized: DataFusion's parser binds IS NOT DISTINCT FROM looser than AND, so
        # `a IS NOT DISTINCT FROM b AND c = d` would read as `a IS NOT DISTINCT FROM (b AND ...)`.
        parts.append(f"({TARGET_ALIAS}.{quote(key)} {operator} {SOURCE_ALIAS}.{quote(key)})")
    return " AND ".join(parts)


def changed_predicate(
    columns: Sequence[str], unique_key: Sequence[str], target_columns: Sequence[str]
) -> str | None:
    """True when a non-key column differs (NULL-aware); None when every column is a key.

    A column the table does not have yet (the merge adds it) is NULL in the table: a row
    changes when the read has a value for it.
    """
    parts = []
    for c in columns:
        if c in unique_key:
            continue
        if c in target_columns:
            parts.append(f"({TARGET_ALIAS}.{quote(c)} IS DISTINCT FROM {SOURCE_ALIAS}.{quote(c)})")
        else:
            parts.append(f"({SOURCE_ALIAS}.{quote(c)} IS NOT NULL)")
    return " OR ".join(parts) or None
