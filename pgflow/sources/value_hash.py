"""An order-independent hash of a table's rows, computed inside Postgres: what value_parity
compares between a source and its target without moving a row out of either database.

Each row becomes one canonical text, `ROW(c1::text, c2::text, ...)::text`, under pinned
session settings (ISO dates, `postgres` intervals, UTC, shortest exact floats, hex bytea, C
money): equal values of equal types give equal text in any database, NULL (`(,x)`) and ''
(`("",x)`) differ, and record quoting keeps column boundaries unambiguous. The text is hashed
with `hashtextextended` (64 bits) and the hashes are summed (exactly: sum(bigint) is numeric),
so row order does not matter and a repeated row counts twice.

Rows fall into BUCKETS buckets by a hash of the key's text (or of the whole row when there
is no key). Every bucket's row count is returned; only the first `sampled` buckets are hashed,
so a sample costs one key hash per row instead of the whole row's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgflow.config.model import TableName
from pgflow.sources.postgres import set_portable_text_format, set_timeout

BUCKETS = 256
ROW_SEED = 0
BUCKET_SEED = 7  # another seed than the rows': bucket and row hash stay independent
# A bucket is searched for the keys that differ only up to this many rows on each side.
EXAMPLE_BUCKET_ROWS = 20_000


@dataclass(frozen=True)
class HashQuery:
    """What to hash: the table, its columns in a fixed order, the key, and a row filter."""

    table: TableName
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()
    live_column: str | None = None  # rows with a value here (soft deletes) are left out
    sampled: int = BUCKETS  # buckets 0..sampled-1 are hashed
    # Databases of different encodings: hash each text's UTF-8 bytes (md5, slower) instead of
    # the database's own bytes, so equal text hashes equal on both sides.
    portable: bool = False
    relation: sql.Composable | None = None  # hashed FROM this instead (a source query)


@dataclass(frozen=True)
class TableHash:
    """Per bucket: (rows, sum of the row hashes or None when the bucket was not sampled)."""

    buckets: dict[int, tuple[int, int | None]]

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.buckets.values())


def _text_of(columns: Sequence[str]) -> sql.Composable:
    parts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns)
    return sql.SQL("ROW({})::text").format(parts)


def _hash64(text: sql.Composable, seed: int, portable: bool) -> sql.Composable:
    if not portable:
        return sql.SQL("hashtextextended({}, {})").format(text, sql.Literal(seed))
    # The first 64 bits of md5(seed || UTF-8 bytes), read as a signed bigint.
    return sql.SQL(
        "('x' || left(md5(decode({}, 'hex') || convert_to({}, 'UTF8')), 16))::bit(64)::bigint"
    ).format(sql.Literal(f"{seed:02x}"), text)


def _hashed(query: HashQuery) -> sql.Composable:
    """`SELECT b (bucket), k (key text), h (row hash) FROM table` over the live rows.

    Keyed: planned inline, so an aggregate's FILTER on b skips the row text of unsampled
    buckets. Without a key the bucket comes from the row hash: OFFSET 0 keeps the subquery
    apart so that hash is computed once per row, not twice.
    """
    row_hash = _hash64(_text_of(query.columns), ROW_SEED, query.portable)
    if query.key:
        key_text = _text_of(query.key)
        bucket = _hash64(key_text, BUCKET_SEED, query.portable)
        template = sql.SQL("SELECT {b} AS kh, {k} AS k, {h} AS h FROM {t}{w}")
        key: sql.Composable = key_text
    else:
        template = sql.SQL(
            "SELECT h AS kh, NULL::text AS k, h FROM (SELECT {h} AS h FROM {t}{w} OFFSET 0) r"
        )
        bucket, key = sql.SQL("NULL"), sql.SQL("NULL")
    where = (
        sql.SQL(" WHERE {} IS NULL").format(sql.Identifier(query.live_column))
        if query.live_column
        else sql.SQL("")
    )
    relation = query.relation or query.table.identifier()
    inner = template.format(b=bucket, k=key, h=row_hash, t=relation, w=where)
    return sql.SQL("SELECT (kh & 9223372036854775807) % {n} AS b, k, h FROM ({inner}) i").format(
        n=sql.Literal(BUCKETS), inner=inner
    )


def _begin(conn: psycopg.Connection, timeout_seconds: float) -> None:
    """Pin the text of every value (and bound the statement) for this transaction."""
    set_portable_text_format(conn)
    set_timeout(conn, timeout_seconds)


def table_hash(conn: psycopg.Connection, query: HashQuery, timeout_seconds: float) -> TableHash:
    """Row count and hash sum of each bucket; FILTER skips the row text of unsampled buckets."""
    statement = sql.SQL(
        "SELECT b, count(*), sum(h) FILTER (WHERE b < {sampled}) FROM ({hashed}) t GROUP BY b"
    ).format(sampled=sql.Literal(query.sampled), hashed=_hashed(query))
    with conn.transaction():
        _begin(conn, timeout_seconds)
        rows = conn.execute(statement).fetchall()
    return TableHash({int(b): (int(n), None if h is None else int(h)) for b, n, h in rows})


def bucket_rows(
    conn: psycopg.Connection, query: HashQuery, bucket: int, timeout_seconds: float
) -> dict[str, int] | None:
    """Key text -> row hash of the rows in one bucket (keyed tables only), or None when the
    bucket holds more than EXAMPLE_BUCKET_ROWS rows: memory stays bounded."""
    assert query.key
    statement = sql.SQL("SELECT k, h FROM ({hashed}) t WHERE b = {b} LIMIT {limit}").format(
        hashed=_hashed(query), b=sql.Literal(bucket), limit=sql.Literal(EXAMPLE_BUCKET_ROWS + 1)
    )
    with conn.transaction():
        _begin(conn, timeout_seconds)
        rows = conn.execute(statement).fetchall()
    if len(rows) > EXAMPLE_BUCKET_ROWS:
        return None
    return {str(k): int(h) for k, h in rows}
