"""The source data of every scenario: the Postgres items table and its change, the Delta source."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import psycopg
from deltalake import DeltaTable, write_deltalake

SOURCE_DDL = """
CREATE TABLE public.items (
    id bigint PRIMARY KEY,
    region text NOT NULL,
    day date NOT NULL,
    qty integer NOT NULL,
    price numeric(10,2),
    note text,
    updated_at timestamptz NOT NULL
);
INSERT INTO public.items
SELECT g, (ARRAY['eu','us','apac','latam'])[1 + g % 4], date '2024-01-01' + (g % 60), g % 97,
       round(g * 1.37, 2), CASE WHEN g % 11 = 0 THEN NULL ELSE repeat(md5(g::text), 3) END,
       timestamptz '2024-01-01 00:00+00' + g * interval '1 second'
FROM generate_series(1, 4000) g;
"""

# One source transaction: updates (moving the cursor), inserts and deletes.
SOURCE_CHANGE = """
UPDATE public.items SET qty = qty + 1000,
       updated_at = timestamptz '2030-01-01 00:00+00' + id * interval '1 second'
WHERE id % 10 = 3;
INSERT INTO public.items
SELECT g, (ARRAY['eu','us','apac','latam'])[1 + g % 4], date '2024-01-01' + (g % 60), g % 97,
       round(g * 1.37, 2), repeat(md5(g::text), 3),
       timestamptz '2030-01-01 00:00+00' + g * interval '1 second'
FROM generate_series(4001, 4300) g;
DELETE FROM public.items WHERE id % 50 = 7;
"""


def _delta_rows(lo: int, hi: int, qty_bump: int = 0) -> pl.DataFrame:
    ids = pl.int_range(lo, hi, eager=True)
    return pl.DataFrame({"id": ids}).with_columns(
        region=pl.format("r{}", pl.col("id") % 4),
        qty=(pl.col("id") % 97 + qty_bump).cast(pl.Int64),
        note=pl.when(pl.col("id") % 11 == 0).then(None).otherwise(pl.format("note {}", "id")),
    )


def write_delta_source(path: Path) -> None:
    """4,000 rows in 4 data files."""
    for lo in range(1, 4001, 1000):
        write_deltalake(str(path), _delta_rows(lo, lo + 1000), mode="append")


def change_delta_source(path: Path) -> None:
    """Updates, inserts and deletes in two new versions: the sync pins the latest."""
    table = DeltaTable(str(path))
    changes = pl.concat(
        [_delta_rows(1, 4001, 1000).filter(pl.col("id") % 10 == 3), _delta_rows(4001, 4301)]
    )
    (
        table.merge(changes, "t.id = s.id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    DeltaTable(str(path)).delete("id % 50 = 7")


def change_postgres_source(uri: str, split: bool) -> str:
    """Apply SOURCE_CHANGE (in one transaction, or one per statement with `split`); returns
    the WAL position from before it."""
    statements = [s for s in SOURCE_CHANGE.split(";") if s.strip()]
    if not split:
        statements = [SOURCE_CHANGE]
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        for statement in statements:
            with conn.transaction():
                conn.execute(statement)
    return str(row[0])


def create_postgres_source(uri: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(SOURCE_DDL)
        conn.execute("ANALYZE public.items")


def seed_delta_target(uri: str, path: Path) -> None:
    """A Delta sink's target before its first load: landing.items of the sink database
    (made by the scenario's sink_ddl) loaded into `path` by a pipeline of its own."""
    from pgflow.config.model import StrategySpec, TableName
    from pgflow.flows.delta_load import load_delta
    from pgflow.sources.postgres import PostgresTableSource

    with psycopg.connect(uri) as conn:
        source = PostgresTableSource(conn, TableName("landing", "items"))
        strategy = StrategySpec(mode="incremental_merge", unique_key=("id",))
        load_delta(source, str(path), strategy, pipeline="seed_items")
