"""Keys of keyed strategies: typed, null-safe matching and the duplicate policy.

Staged and target columns have the same types (staging is created from the target), so keys
compare as values, never as text: 1.5 = 1.50, and timestamptz compares instants whatever the
session time zone. A key column the source declares NOT NULL compares with `=`; a nullable
one with `(l = r OR (l IS NULL AND r IS NULL))`, so NULL keys match each other. The first form
allows hash joins, the second index lookups on the target's key; IS NOT DISTINCT FROM allows
neither (a nested loop over both tables). An anti-join over the whole target on keys that are
all nullable gets neither either: shadow_swap indexes staging for that case.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sources.catalog import TableInfo

# Staging's arrival order (the source's order), added to staging for keyed strategies.
ORDER_COLUMN = "_pgflow_seq"
SAMPLE_DUPLICATES = 5


def nulls_not_distinct_sql(conn: psycopg.Connection) -> sql.SQL:
    """pg_index's NULLS NOT DISTINCT flag (alias `i`) where the server has it (15+)."""
    return sql.SQL("i.indnullsnotdistinct" if conn.info.server_version >= 150000 else "false")


class DuplicateKeys(ValueError):
    """Staged rows repeat a key under duplicate_policy: fail; nothing was written."""


class UniqueKeyMismatch(ValueError):
    """The spec's unique_key does not fit the tables."""


def check_key_columns(unique_key: tuple[str, ...], source: TableInfo) -> None:
    if not unique_key:
        raise UniqueKeyMismatch(
            "sink.strategy.unique_key is required for this strategy: list the key column(s)"
        )
    missing = [k for k in unique_key if source.column(k) is None]
    if missing:
        raise UniqueKeyMismatch(
            f"sink.strategy.unique_key: column(s) {', '.join(missing)} are not in the source "
            f"table {source.table}; its columns are {', '.join(source.column_names)}"
        )


def key_match(ctx: ApplyContext, left: str, right: str) -> sql.Composable:
    """`left.k1 = right.k1 AND ...` over the unique key, null-safe where NULLs can occur."""
    parts = []
    for key in ctx.strategy.unique_key:
        column = ctx.source.column(key)
        nullable = column is None or not column.not_null
        template = "({l} = {r} OR ({l} IS NULL AND {r} IS NULL))" if nullable else "{l} = {r}"
        parts.append(
            sql.SQL(template).format(l=sql.Identifier(left, key), r=sql.Identifier(right, key))
        )
    return sql.SQL(" AND ").join(parts)


def key_list(ctx: ApplyContext, prefix: str | None = None) -> sql.Composed:
    keys = ctx.strategy.unique_key
    if prefix is None:
        return sql.SQL(", ").join(map(sql.Identifier, keys))
    return sql.SQL(", ").join(sql.Identifier(prefix, k) for k in keys)


def enforce_duplicate_policy(ctx: ApplyContext) -> int:
    """Fail on repeated staged keys, or keep the last of each (by arrival); rows dropped."""
    if ctx.strategy.duplicate_policy == "keep_last":
        return keep_last(ctx)
    # GROUP BY treats NULLs as equal: the same notion of "same key" as key_match.
    rows = ctx.log.execute(
        sql.SQL(
            "SELECT ({keys})::text, count(*) FROM {staging} GROUP BY {keys}"
            " HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT {limit}"
        ).format(keys=key_list(ctx), staging=ctx.staging_sql, limit=sql.Literal(SAMPLE_DUPLICATES))
    ).fetchall()
    if rows:
        sample = ", ".join(f"{key} x{count}" for key, count in rows)
        raise duplicate_keys(ctx.strategy.unique_key, sample)
    return 0


def duplicate_keys(unique_key: tuple[str, ...], sample: str) -> DuplicateKeys:
    """The policy's error for repeated keys, `sample` naming some of them ("" for none)."""
    example = f", e.g. {sample}" if sample else ""
    return DuplicateKeys(
        f"the source repeats unique_key ({', '.join(unique_key)}) for some rows{example}; "
        "nothing was written. Fix the source, or set "
        "sink.strategy.duplicate_policy: keep_last to keep the last row of each key"
    )


def keep_last(ctx: ApplyContext) -> int:
    """Delete all but the last staged row (by arrival) of each key; rows deleted."""
    # Window partitions, like GROUP BY, put NULL keys together.
    query = sql.SQL(
        "DELETE FROM {staging} WHERE {order} IN (SELECT {order} FROM (SELECT {order},"
        " row_number() OVER (PARTITION BY {keys} ORDER BY {order} DESC) AS rank"
        " FROM {staging}) ranked WHERE rank > 1)"
    ).format(staging=ctx.staging_sql, order=sql.Identifier(ORDER_COLUMN), keys=key_list(ctx))
    return ctx.log.execute(query).rowcount


def unmatched_keys(ctx: ApplyContext) -> tuple[int, list[str]]:
    """The distinct staged keys no target row holds (typed, null-safe), and a few of them as
    text; run before the write, which is what they are unmatched by."""
    query = sql.SQL(
        "SELECT DISTINCT {keys} FROM {staging} AS s"
        " WHERE NOT EXISTS (SELECT FROM {target} AS t WHERE {match})"
    ).format(
        keys=key_list(ctx, "s"),
        staging=ctx.staging_sql,
        target=ctx.target_sql,
        match=key_match(ctx, "t", "s"),
    )
    row = ctx.log.execute(
        sql.SQL("SELECT count(*), (array_agg(({})::text))[1:{}] FROM ({}) AS u").format(
            key_list(ctx, "u"), sql.Literal(SAMPLE_DUPLICATES), query
        )
    ).fetchone()
    if not row or not row[0]:
        return 0, []
    return int(row[0]), list(row[1] or [])
