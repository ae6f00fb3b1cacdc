"""`source.query` read by the real load: a join of two tables with hostile identifiers and
types into a Postgres target, full and by a cursor over the join; what Postgres refuses
(two statements, a write, a data-modifying WITH, a cursor not in the output) fails before
the target exists, naming source.query."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pgflow.config.model import SourceOptions, SourceSpec, StrategySpec, TableName
from pgflow.sources.base import SourceConfigError
from pgflow.sources.query import QuerySource
from pgflow.sources.select import table_source
from pgflow_tests.pg import execute, fetch
from pgflow_tests.sources.conftest import MERGE, TARGET, incremental_load

# Two tables whose names need quoting (a space, capitals, unicode), joined by the query.
SETUP = """
CREATE SCHEMA "Bü ro";
CREATE TABLE "Bü ro"."Kunden Liste" ("Kunde ID" int PRIMARY KEY, "Näme" text NOT NULL);
CREATE TABLE public."Order Items" (
    id int PRIMARY KEY, "Kunde ID" int REFERENCES "Bü ro"."Kunden Liste",
    "Betrag €" numeric(12,3), "Geändert" timestamptz NOT NULL, tags text[], doc jsonb
);
INSERT INTO "Bü ro"."Kunden Liste" VALUES (1, 'Zoë'), (2, 'O''Brien; DROP'), (3, '訂單');
INSERT INTO public."Order Items"
SELECT g, 1 + g % 3, g * 1.125, timestamptz '2026-01-01 00:00+00' + g * interval '1 minute',
       ARRAY['a,b', NULL, 'c"d'], jsonb_build_object('n', g, 'k', 'v ' || g)
FROM generate_series(1, 40) g;
"""
# The join, written as users write it: a comment at the end and a trailing semicolon.
QUERY = """
SELECT i.id, k."Näme" AS "Kunde Näme", i."Betrag €", i."Geändert", i.tags, i.doc,
       i."Betrag €" * 2 AS "doppelt", '100%' AS pct
FROM public."Order Items" i JOIN "Bü ro"."Kunden Liste" k USING ("Kunde ID")
WHERE i.id % 10 <> 0 -- every tenth row left out
;
"""
COLUMNS = '"id", "Kunde Näme", "Betrag €", "Geändert", "tags", "doc", "doppelt", "pct"'
BY_CHANGE = SourceOptions(incremental_strategy="column", incremental_column="Geändert")


def spec(query: str, options: SourceOptions | None = None) -> SourceSpec:
    return SourceSpec(
        "postgres", "shop", "env", None, options=options or SourceOptions(), query=query
    )


def query_rows(uri: str) -> list[tuple[Any, ...]]:
    return fetch(uri, f"SELECT {COLUMNS} FROM ({QUERY.rstrip().rstrip(';')}\n) q ORDER BY id")


def target_rows(uri: str) -> list[tuple[Any, ...]]:
    return fetch(uri, f"SELECT {COLUMNS} FROM landing.orders ORDER BY id")


def load(source_uri: str, sink_uri: str, options: SourceOptions | None = None, **kw: Any) -> Any:
    query = QUERY.strip().rstrip(";")
    return incremental_load(
        source_uri, sink_uri, lambda c: table_source(c, spec(query, options)), **kw
    )


def full_load(source_uri: str, sink_uri: str, strategy: StrategySpec) -> Any:
    from pgflow.flows.postgres_load import load_table

    query = QUERY.strip().rstrip(";")
    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        return load_table(dst, table_source(src, spec(query)), TARGET, strategy, pipeline="q")


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="full_refresh"),
        StrategySpec(mode="full_refresh", method="exchange"),
        MERGE,
        StrategySpec(mode="incremental_append"),
    ],
    ids=lambda s: s.key,
)
def test_a_full_read_of_a_join_makes_the_target_the_query_result(
    source_uri: str, sink_uri: str, strategy: StrategySpec
) -> None:
    execute(source_uri, SETUP)
    first = full_load(source_uri, sink_uri, strategy)
    assert first.rows == 36
    assert target_rows(sink_uri) == query_rows(source_uri)
    types = fetch(
        sink_uri,
        "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns"
        " JOIN pg_attribute ON attrelid = 'landing.orders'::regclass AND attname = column_name"
        " WHERE table_schema = 'landing' AND table_name = 'orders' ORDER BY ordinal_position",
    )
    assert types == [
        ("id", "integer"),
        ("Kunde Näme", "text"),
        ("Betrag €", "numeric(12,3)"),  # the typmod travels
        ("Geändert", "timestamp with time zone"),
        ("tags", "text[]"),
        ("doc", "jsonb"),
        ("doppelt", "numeric"),
        ("pct", "text"),
    ]


def test_a_cursor_over_the_join_reads_only_changed_rows(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, SETUP)
    first = load(source_uri, sink_uri, BY_CHANGE)
    assert first.read is not None and first.read.full
    assert target_rows(sink_uri) == query_rows(source_uri)
    execute(
        source_uri,
        """UPDATE public."Order Items" SET "Betrag €" = 0.5, "Geändert" = '2027-01-01 00:00+00'
           WHERE id IN (3, 4);
           INSERT INTO public."Order Items" VALUES
             (41, 3, 7.25, '2027-01-02 00:00+00', '{}', '{"x": [1, 2]}');
           UPDATE "Bü ro"."Kunden Liste" SET "Näme" = 'renamed' WHERE "Kunde ID" = 3""",
    )
    second = load(source_uri, sink_uri, BY_CHANGE)
    assert second.read is not None and not second.read.full
    assert second.rows_read == 3  # the two changed rows and the new one, nothing else
    # The rows of customer 3 whose cursor did not move keep the old name: a cursor sees
    # what moves it. Everything else is the query's result.
    expected = [
        (row[0], "訂單", *row[2:]) if row[1] == "renamed" and row[0] != 41 else row
        for row in query_rows(source_uri)
    ]
    assert target_rows(sink_uri) == expected
    assert [row[2] for row in expected if row[0] in (3, 4)] == [Decimal("0.500")] * 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT 1 AS id; SELECT 2 AS id", "holds more than one statement"),
        ('INSERT INTO public."Order Items" (id) VALUES (99) RETURNING id', "writes (INSERT"),
        (
            'WITH gone AS (DELETE FROM public."Order Items" RETURNING id) SELECT id FROM gone',
            "writes (DELETE on public.Order Items)",
        ),
        ("CREATE TABLE public.sneaky AS SELECT 1 AS id", "must be one SELECT"),
        ('SELECT id, id FROM public."Order Items"', "names the output column(s) id more"),
        ('SELECT nope FROM public."Order Items"', 'column "nope" does not exist'),
    ],
    ids=["two-statements", "insert", "data-modifying-cte", "create-as", "repeated", "unknown"],
)
def test_a_query_postgres_refuses_fails_before_the_target_exists(
    source_uri: str, sink_uri: str, query: str, message: str
) -> None:
    execute(source_uri, SETUP)
    with pytest.raises(SourceConfigError) as raised:
        incremental_load(source_uri, sink_uri, lambda c: table_source(c, spec(query)))
    assert raised.value.field == "source.query"
    assert message in raised.value.detail
    assert fetch(sink_uri, "SELECT to_regclass('landing.orders')") == [(None,)]
    assert fetch(source_uri, 'SELECT count(*) FROM public."Order Items"') == [(40,)]
    assert fetch(source_uri, "SELECT to_regclass('public.sneaky')") == [(None,)]


def test_a_function_that_writes_fails_in_the_read_only_read(source_uri: str, sink_uri: str) -> None:
    execute(
        source_uri,
        SETUP
        + """CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql VOLATILE AS
             $$ INSERT INTO "Bü ro"."Kunden Liste" VALUES (9, 'x') RETURNING 1 $$""",
    )
    with pytest.raises(SourceConfigError) as raised:
        incremental_load(
            source_uri, sink_uri, lambda c: table_source(c, spec("SELECT public.bump() AS id"))
        )
    assert "read-only transaction" in raised.value.detail
    assert fetch(source_uri, 'SELECT count(*) FROM "Bü ro"."Kunden Liste"') == [(3,)]
    assert fetch(sink_uri, "SELECT to_regclass('landing.orders')") == [(None,)]


def test_a_cursor_not_among_the_output_columns_names_them(source_uri: str, sink_uri: str) -> None:
    execute(source_uri, SETUP)
    options = SourceOptions(incremental_strategy="column", incremental_column="updated_at")
    with pytest.raises(SourceConfigError) as raised:
        load(source_uri, sink_uri, options)
    assert raised.value.field == "source.options.incremental_column"
    assert raised.value.detail == (
        "'updated_at' is not an output column of source.query; its output columns are: "
        "id, Kunde Näme, Betrag €, Geändert, tags, doc, doppelt, pct"
    )
    assert fetch(sink_uri, "SELECT to_regclass('landing.orders')") == [(None,)]


def test_the_shape_names_the_tables_read_and_where_columns_come_from(source_uri: str) -> None:
    execute(source_uri, SETUP)
    with psycopg.connect(source_uri) as conn:
        source = QuerySource(conn, QUERY.strip().rstrip(";"))
        source.open()
        shape = source.shape
        source.close()
    assert shape.tables == (
        TableName("Bü ro", "Kunden Liste"),
        TableName("public", "Order Items"),
    )
    assert shape.origins["Kunde Näme"] == (TableName("Bü ro", "Kunden Liste"), "Näme")
    assert shape.origins["Betrag €"] == (TableName("public", "Order Items"), "Betrag €")
    assert "doppelt" not in shape.origins  # computed: no single column behind it
    assert source.info.primary_key == ()
    assert not any(c.not_null for c in source.info.columns)


def run_strategy(
    source_uri: str, sink_uri: str, query: str, strategy: StrategySpec, window: Any = None
) -> Any:
    from pgflow.flows.postgres_load import load_table

    with psycopg.connect(source_uri) as src, psycopg.connect(sink_uri, autocommit=True) as dst:
        reader = table_source(src, spec(query), window)
        return load_table(dst, reader, TARGET, strategy, pipeline="q")


def test_a_key_only_query_deletes_and_a_query_updates_target_rows(
    source_uri: str, sink_uri: str
) -> None:
    execute(source_uri, SETUP)
    full_load(source_uri, sink_uri, MERGE)
    gone = 'SELECT id FROM public."Order Items" WHERE "Kunde ID" = 2'
    deleted = run_strategy(
        source_uri, sink_uri, gone, StrategySpec(mode="delete", unique_key=("id",))
    )
    assert deleted.strategy_metadata["rows_deleted"] == 12
    kept = [row for row in query_rows(source_uri) if row[0] % 3 != 1]
    assert target_rows(sink_uri) == kept
    rename = """SELECT i.id, 'VIP ' || k."Näme" AS "Kunde Näme"
                FROM public."Order Items" i JOIN "Bü ro"."Kunden Liste" k USING ("Kunde ID")
                WHERE k."Kunde ID" = 3"""
    run_strategy(source_uri, sink_uri, rename, StrategySpec(mode="update", unique_key=("id",)))
    names = dict(fetch(sink_uri, 'SELECT id, "Kunde Näme" FROM landing.orders'))
    assert {names[row[0]] for row in kept if row[0] % 3 == 2} == {"VIP 訂單"}
    assert {names[row[0]] for row in kept if row[0] % 3 == 0} == {"Zoë"}


def test_a_time_window_of_a_query_replaces_its_slice(source_uri: str, sink_uri: str) -> None:
    from datetime import UTC, datetime

    from pgflow.sources.window import TimeWindow

    execute(source_uri, SETUP)
    query = QUERY.strip().rstrip(";")
    strategy = StrategySpec(mode="partition_replace", partition_column="Geändert")
    full_load(source_uri, sink_uri, StrategySpec(mode="full_refresh"))
    execute(source_uri, 'UPDATE public."Order Items" SET "Betrag €" = 9 WHERE id <= 20')
    start, end = datetime(2026, 1, 1, 0, 5, tzinfo=UTC), datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    window = TimeWindow("Geändert", start, end)
    replaced = run_strategy(source_uri, sink_uri, query, strategy, window)
    assert replaced.rows == 9  # minutes 5..14, less id 10
    got = {row[0]: row[2] for row in target_rows(sink_uri)}
    assert {i for i, amount in got.items() if amount == 9} == set(range(5, 15)) - {10}
    assert len(got) == 36


def test_a_query_over_a_view_with_enum_and_domain_columns(source_uri: str, sink_uri: str) -> None:
    execute(
        source_uri,
        SETUP
        + """CREATE TYPE public."Stim mung" AS ENUM ('froh', 'müde');
             CREATE DOMAIN public.cents AS bigint CHECK (VALUE >= 0);
             CREATE VIEW public."Sicht" AS
               SELECT id, (CASE WHEN id % 2 = 0 THEN 'froh' ELSE 'müde' END)::public."Stim mung"
                        AS mood,
                      (id * 100)::public.cents AS cents
               FROM public."Order Items";""",
    )
    query = 'SELECT id, mood, cents, ARRAY[mood] AS moods FROM public."Sicht" WHERE id < 5'
    with psycopg.connect(source_uri) as conn:
        source = QuerySource(conn, query)
        source.open()
        shape, info = source.shape, source.info
        source.close()
    assert shape.tables == (TableName("public", "Order Items"),)  # the view's table
    mood = info.column("mood")
    assert mood is not None and mood.kind == "e" and mood.enum_labels == ("froh", "müde")
    assert [c.base_type_sql for c in info.columns][2] == "bigint"
    run_strategy(source_uri, sink_uri, query, StrategySpec(mode="full_refresh"))
    assert fetch(
        sink_uri, "SELECT id, mood::text, cents, moods::text FROM landing.orders ORDER BY id"
    ) == [
        (1, "müde", 100, "{müde}"),
        (2, "froh", 200, "{froh}"),
        (3, "müde", 300, "{müde}"),
        (4, "froh", 400, "{froh}"),
    ]
