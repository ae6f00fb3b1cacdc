"""Helpers for sink tests: a source and a sink database per test, and row comparison."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.pg import execute, fetch, table_text

__all__ = ["execute", "fetch", "run_load", "table_text"]

ALL_TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE public.all_types (
    id bigint PRIMARY KEY,
    small smallint, i integer, big bigint,
    amount numeric(12,3), ratio numeric, f8 double precision, f4 real,
    flag boolean, label text NOT NULL, code varchar(20), cc char(3),
    ts timestamp, tstz timestamptz, d date, t time, iv interval,
    u uuid, j json, jb jsonb, raw bytea,
    tags text[], ints integer[], feeling mood, feelings mood[],
    qty positive_int, mail email, ip inet, span int4range, nested_jb jsonb[],
    long_text text
);
"""

ALL_TYPES_ROWS = """
INSERT INTO public.all_types
SELECT g, (g %% 100)::smallint, g * 7, g::bigint * 1000000000, round((g * 1.234)::numeric, 3),
       CASE WHEN g %% 5 = 0 THEN NULL ELSE g / 7.0 END, g / 3.0, (g / 9.0)::real,
       g %% 2 = 0, 'row ' || g, CASE WHEN g %% 4 = 0 THEN NULL ELSE 'c' || g END, 'abc',
       '2024-01-01'::timestamp + g * interval '1 hour',
       '2024-06-01 12:00+02'::timestamptz + g * interval '1 minute',
       '2024-01-01'::date + g, '10:00'::time + g * interval '1 second', g * interval '1 day',
       md5(g::text)::uuid, json_build_object('g', g), jsonb_build_object('g', g, 'a', array[g]),
       decode(md5(g::text), 'hex'),
       CASE WHEN g %% 3 = 0 THEN NULL ELSE array['a' || g, NULL, 'b'] END, array[g, g + 1],
       (array['sad', 'ok', 'happy'])[1 + g %% 3]::mood, array['ok', 'happy']::mood[],
       1 + g %% 9, 'u' || g || '@example.com', ('10.0.0.' || (g %% 250))::inet,
       int4range(g, g + 10), array[jsonb_build_object('k', g)],
       CASE WHEN g %% 50 = 0 THEN (SELECT string_agg(md5(g::text || x), '') FROM generate_series(1, 400) x)
       END
FROM generate_series(%(start)s::int, %(stop)s::int) g;
"""


def run_load(
    source_uri: str,
    sink_uri: str,
    source_table: TableName,
    target: TableName,
    strategy: StrategySpec | None = None,
    wrap: Callable[[Iterator[bytes]], Iterator[bytes]] | None = None,
) -> LoadResult:
    strategy = strategy or StrategySpec(mode="full_refresh")
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        source = PostgresTableSource(src, source_table)
        if wrap is not None:
            original = source.copy_out
            source.copy_out = lambda cols, fmt: wrap(original(cols, fmt))  # type: ignore[method-assign]
        return load_table(dst, source, target, strategy)
