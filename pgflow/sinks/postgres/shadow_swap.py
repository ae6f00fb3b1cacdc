"""incremental_merge, `merge_policy: shadow_swap`: build the merged table beside the target, swap.

The new table holds (a) every target row whose key matches no staged key and (b) every staged
row; it is filled and indexed beside the target and swapped in by `exchange.swap_in`, which
keeps indexes (same names), grants, views, triggers, sequences and the rest working, or
refuses before changing anything (e.g. a target referenced by a foreign key). Same result as
delete_insert: each staged key ends with exactly its staged row, rows deleted in the source
stay, keys match typed and null-safe (keys.key_match), and target-only columns of re-written
rows get their defaults. Unlike delete_insert, readers are blocked only for the swap, the new
table has no dead rows, and the target's triggers do not fire for the merged rows.

The target is locked in SHARE mode first: readers go on, but no other writer can change a row
between the moment it is copied into the new table and the swap (its write would be lost).
"""

from __future__ import annotations

from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres import exchange, keys
from pgflow.sinks.postgres.apply import ApplyContext
from pgflow.sinks.postgres.row_change import RowChange
from pgflow.sinks.postgres.strategy import Applied, StagedStrategy


def shadow_swap(ctx: ApplyContext) -> Applied:
    """Swap in target rows of unstaged keys + all staged rows.

    Its rows are the staged rows written (what delete_insert and upsert report too), not the
    size of the new table: materialization metadata shows it as rows written by this load.
    The new table's size, kept plus staged rows, is the ledger's exact count (the SHARE lock
    keeps other writers out until the swap).
    """
    ctx.log.execute(
        sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(exchange.SWAP_LOCK_TIMEOUT))
    )
    ctx.log.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ctx.target_sql))
    _index_staged_keys_if_all_nullable(ctx)
    kept = _copyable_columns(ctx)
    identity_only = _target_only_identities(ctx)
    kept_rows: list[int] = []

    def fill(shadow: TableName) -> int:
        new = shadow.identifier()
        kept_rows.append(_copy_kept_rows(ctx, new, kept))
        # A target-only identity column draws from the target's sequence, which the swap
        # carries over: the shadow's own copy restarts at its START value, and its numbers
        # would collide with the kept rows'.
        columns = [sql.Identifier(c) for c in ctx.columns] + [
            sql.Identifier(c) for c, _ in identity_only
        ]
        values = [sql.Identifier("s", c) for c in ctx.columns] + [
            sql.SQL("nextval({}::regclass)").format(sql.Literal(seq)) for _, seq in identity_only
        ]
        return ctx.log.execute(
            sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} AS s").format(
                new,
                sql.SQL(", ").join(columns),
                sql.SQL(", ").join(values),
                ctx.staging_sql,
            )
        ).rowcount

    try:
        staged = exchange.swap_in(ctx.log, ctx.target, fill)
        return Applied(staged, change=RowChange.exact(kept_rows[0] + staged))
    except exchange.ExchangeRefused as refused:
        # exchange's advice (full_refresh truncate_insert) would drop every unstaged row here.
        raise exchange.ExchangeRefused(
            f"merge_policy shadow_swap cannot swap {ctx.target} without breaking it: "
            f"{'; '.join(refused.reasons)}. Nothing was changed. Use merge_policy delete_insert "
            f"(or upsert) for this table, or remove the blocker.",
            refused.reasons,
        ) from None


def _copy_kept_rows(ctx: ApplyContext, new: sql.Identifier, kept: list[str]) -> int:
    """Copy the target rows whose key is not staged into the new table; how many."""
    return ctx.log.execute(
        sql.SQL(
            "INSERT INTO {new} ({cols}) OVERRIDING SYSTEM VALUE SELECT {t_cols} FROM {target}"
            " AS t WHERE NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE {match})"
        ).format(
            new=new,
            cols=sql.SQL(", ").join(map(sql.Identifier, kept)),
            t_cols=sql.SQL(", ").join(sql.Identifier("t", c) for c in kept),
            target=ctx.target_sql,
            staging=ctx.staging_sql,
            match=keys.key_match(ctx, "t", "s"),
        )
    ).rowcount


class ShadowSwap(StagedStrategy):
    key = "incremental_merge/shadow_swap"

    def apply(self, ctx: ApplyContext) -> Applied:
        return shadow_swap(ctx)


def _index_staged_keys_if_all_nullable(ctx: ApplyContext) -> None:
    """Index staging on the key when no key column is NOT NULL.

    The anti-join reads the whole target against staging. With a NOT NULL key column,
    key_match has a plain `=` to hash on; when every column compares null-safe
    (`= OR both NULL`) nothing is hashable and each target row would scan all of staging
    (target x staged rows). The index turns that into one index probe per target row.
    """
    if all(_nullable(ctx, key) for key in ctx.strategy.unique_key):
        ctx.log.execute(
            sql.SQL("CREATE INDEX ON {} ({})").format(ctx.staging_sql, keys.key_list(ctx))
        )


def _nullable(ctx: ApplyContext, key: str) -> bool:
    column = ctx.source.column(key)  # the same test as keys.key_match
    return column is None or not column.not_null


def _copyable_columns(ctx: ApplyContext) -> list[str]:
    # Every target column a kept row carries over; generated columns are computed again.
    rows = ctx.conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        (_regclass(ctx),),
    ).fetchall()
    return [r[0] for r in rows]


def _target_only_identities(ctx: ApplyContext) -> list[tuple[str, str]]:
    """(column, its sequence) for identity columns of the target that staging does not fill."""
    rows = ctx.conn.execute(
        "SELECT attname, pg_get_serial_sequence(%s, attname) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " AND attidentity <> '' ORDER BY attnum",
        (_regclass(ctx), _regclass(ctx)),
    ).fetchall()
    return [(column, seq) for column, seq in rows if column not in ctx.columns]


def _regclass(ctx: ApplyContext) -> str:
    return ctx.target_sql.as_string(ctx.conn)
