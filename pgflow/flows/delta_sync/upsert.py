"""One sink batch: COPY into staging, then upsert into the target, skipping unchanged rows.

Upsert: `INSERT ... ON CONFLICT (key) DO UPDATE SET ... WHERE target.hdiff IS DISTINCT FROM
EXCLUDED.hdiff`, after filtering out staged rows whose key and hash the target already has:
a row whose non-key values are unchanged is not written, nor even locked (no new tuple, no
dirtied page, no WAL; `sync_ldts` kept). `RETURNING xmax = 0` tells inserted rows from
updated ones. While the target was empty when the run began, batches are plain INSERTs (no
speculative insertion), falling back to the upsert at the first key already present.
`full_pass=True` compares with a hash recomputed from the target row's values instead of its
stored hdiff, so it also repairs rows edited in the target.

hdiff: `md5(convert_to(ROW(non-key columns in Delta schema order)::text, 'UTF8'))`, computed
by Postgres from the staged, typed values, with the session pinned to TimeZone=UTC,
DateStyle=ISO, IntervalStyle=postgres, extra_float_digits=3, bytea_output=hex. Stable across
runs, machines, client time zones and databases because it hashes the text of typed values in
fixed settings: a timestamptz is the same instant whatever time zone wrote or reads it and
renders in UTC; numeric(p,s) renders with its scale (1.50 stays 1.50); floats render
shortest-exact; jsonb renders canonically (keys sorted, whitespace normalised); a NULL
renders as nothing and an empty string as "", so they differ; columns come in a fixed order;
the hash is of UTF-8 bytes whatever the database encoding. It changes when the column set
changes (a column added), which is why that forces a full pass.

Staging is a TEMPORARY table (ON COMMIT DELETE ROWS) per connection, not an UNLOGGED table:
like UNLOGGED it writes no WAL, and in addition the server drops it when the connection ends,
so a killed run leaves nothing behind, and each commit empties it without a TRUNCATE.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sinks.postgres.sql_log import SqlLog

HDIFF = "hdiff"
SYNC_LDTS = "sync_ldts"
STAGED_HDIFF = "_pgflow_hdiff"  # the staged row's hash inside the upsert
STAGE = TableName("pg_temp", "pgflow_delta_stage")


def apply_batch(
    log: SqlLog,
    target: TableName,
    columns: Sequence[str],
    key: Sequence[str],
    data: bytes,
    insert_only: bool = False,
    verify: bool = False,
) -> tuple[int, int, bool]:
    """COPY one batch into staging and apply it to `target`: (inserted, updated, insert_only).

    Runs inside the caller's transaction; staging empties itself at COMMIT. `insert_only`
    (the target was empty when the run began) tries a plain INSERT first, which skips the
    cost of ON CONFLICT's speculative insertion; should a key already be there, that INSERT
    is rolled back to a savepoint and the batch upserted, and the run upserts from then on.
    `verify` compares the new hdiff with one recomputed from the target row's values rather
    than the stored hdiff, so rows edited in the target are rewritten too.
    """
    copy_rows(log, STAGE, columns, data)
    if insert_only:
        try:
            with log.conn.transaction():
                return log.execute(_insert_sql(target, columns, key)).rowcount, 0, True
        except psycopg.errors.UniqueViolation:
            pass
    row = log.execute(_upsert_sql(target, columns, key, verify)).fetchone()
    assert row is not None
    return row[0], row[1], False


def copy_rows(log: SqlLog, table: TableName, columns: Sequence[str], data: bytes) -> None:
    """COPY `data` (text format) into `columns` of `table`."""
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(table.identifier(), names(columns))
    log.record(copy)
    with log.conn.cursor() as cur, cur.copy(copy) as writer:
        writer.write(data)


def create_stage(log: SqlLog, target: TableName, columns: Sequence[str]) -> None:
    """The staging table of this connection: `columns` typed as the target's, emptied at
    every COMMIT."""
    log.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(STAGE.identifier()))
    log.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA"
        ).format(STAGE.identifier(), names(columns), target.identifier())
    )


def hdiff_sql(columns: Sequence[str], key: Sequence[str], alias: str) -> sql.Composable:
    """The hash of the non-key `columns` of row `alias` (see the module docstring)."""
    values = sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns if c not in key)
    return sql.SQL("md5(convert_to(ROW({})::text, 'UTF8'))").format(values)


def names(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _staged_row(
    target: TableName, columns: Sequence[str], key: Sequence[str]
) -> dict[str, sql.Composable]:
    """What both the INSERT and the upsert name: the target, its columns, the staged ones."""
    return {
        "target": target.identifier(),
        "columns": names(columns),
        "hdiff": sql.Identifier(HDIFF),
        "ldts": sql.Identifier(SYNC_LDTS),
        "staged": sql.SQL(", ").join(sql.Identifier("s", c) for c in columns),
        "hash": hdiff_sql(columns, key, "s"),
        "stage": STAGE.identifier(),
    }


def _insert_sql(target: TableName, columns: Sequence[str], key: Sequence[str]) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {target} ({columns}, {hdiff}, {ldts}) SELECT {staged}, {hash}, now()"
        " FROM {stage} s"
    ).format(**_staged_row(target, columns, key))


def _upsert_sql(
    target: TableName, columns: Sequence[str], key: Sequence[str], verify: bool = False
) -> sql.Composed:
    """The upsert of staging into `target`, counting inserted and updated rows.

    Staged rows whose key and hash the target already has are filtered out before the
    INSERT (an index probe each): ON CONFLICT would lock each such row, dirtying its page and
    writing WAL, to then do nothing. The ON CONFLICT ... WHERE still guards the rows that
    pass the filter, so a row changed concurrently is never overwritten with equal values.
    """
    updates = [
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
        for c in (*[c for c in columns if c not in key], HDIFF, SYNC_LDTS)
    ]
    same_key = sql.SQL(" AND ").join(
        sql.SQL("x.{c} = s.{c}").format(c=sql.Identifier(c)) for c in key
    )
    return sql.SQL(
        "WITH changed AS (INSERT INTO {target} AS t ({columns}, {hdiff}, {ldts})"
        " SELECT {staged}, s.{new}, now() FROM (SELECT s.*, {hash} AS {new} FROM {stage} s) s"
        " WHERE NOT EXISTS (SELECT FROM {target} x WHERE {same_key} AND {existing} = s.{new})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates}"
        " WHERE {current} IS DISTINCT FROM EXCLUDED.{hdiff}"
        " RETURNING t.xmax = 0 AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)"
        " FROM changed"
    ).format(
        **_staged_row(target, columns, key),
        new=sql.Identifier(STAGED_HDIFF),
        same_key=same_key,
        existing=hdiff_sql(columns, key, "x") if verify else sql.Identifier("x", HDIFF),
        key=names(key),
        updates=sql.SQL(", ").join(updates),
        current=hdiff_sql(columns, key, "t") if verify else sql.Identifier("t", HDIFF),
    )
