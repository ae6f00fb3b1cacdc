"""incremental_merge delete_insert on a real cluster, checked against an independent reference.

Before each load, `reference` copies the previous target (expect.prev) and the source as it is
now (expect.new, by plain COPY) into the sink and builds the expected target in plain SQL:
DISTINCT ON over new-then-old rows, which groups NULL keys and compares keys typed, without
the strategy's join. The other keyed strategy tests (append, upsert) reuse these helpers.
"""

from __future__ import annotations

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.postgres_load import LoadResult, load_table
from pgflow.sinks.postgres.keys import DuplicateKeys
from pgflow.sinks.postgres.staging import STAGING_SCHEMA
from pgflow.sources.postgres import PostgresTableSource
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text

ITEMS = TableName("public", "items")
ITEMS_TARGET = TableName("landing", "items")
ITEMS_DDL = """
CREATE TABLE public.items (id int PRIMARY KEY, name text, amount numeric(10,2), ratio numeric,
                           doc json, tags text[], at timestamptz);
INSERT INTO public.items SELECT g, 'item ' || g, g * 1.25, g / 4.0, json_build_object('g', g),
       array['t' || g], '2024-01-01 00:00+00'::timestamptz + g * interval '1 hour'
FROM generate_series(1, 20) g;
"""
# Source changes between loads: deletes, updates (several columns), inserts.
ITEMS_CHANGES = """
DELETE FROM public.items WHERE id <= 3;
UPDATE public.items SET name = 'changed ' || id, doc = '{"changed": true}', tags = NULL
WHERE id BETWEEN 4 AND 6;
INSERT INTO public.items SELECT g, 'new ' || g, g, NULL, NULL, '{}', NULL
FROM generate_series(21, 25) g;
"""


def merge(*key: str, duplicate_policy: str = "fail") -> StrategySpec:
    return StrategySpec(
        mode="incremental_merge",
        unique_key=key,
        merge_policy="delete_insert",
        duplicate_policy=duplicate_policy,  # type: ignore[arg-type]
    )


def columns_of(uri: str, table: TableName) -> list[str]:
    rows = fetch(
        uri,
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        (f"{table.schema}.{table.name}",),
    )
    return [r[0] for r in rows]


def reference(
    source_uri: str, sink_uri: str, source: TableName, target: TableName, query: str
) -> list[str]:
    """The expected target after the next load, as row texts, computed in plain SQL.

    Call it right before the load. `query` reads expect.prev (the target now) and expect.new
    (the source rows now) and has a `{cols}` placeholder for the source's columns.
    """
    cols = ", ".join(f'"{c}"' for c in columns_of(source_uri, source))
    execute(
        sink_uri,
        f"DROP SCHEMA IF EXISTS expect CASCADE; CREATE SCHEMA expect;"
        f" CREATE TABLE expect.prev AS SELECT * FROM {target};"
        f" CREATE TABLE expect.new AS SELECT {cols} FROM {target} WITH NO DATA",
    )
    with (
        psycopg.connect(source_uri) as src,
        psycopg.connect(sink_uri) as dst,
        src.cursor().copy(f"COPY (SELECT {cols} FROM {source}) TO STDOUT") as out,
        dst.cursor().copy(f"COPY expect.new ({cols}) FROM STDIN") as into,
    ):
        for data in out:
            into.write(data)
    execute(sink_uri, f"CREATE TABLE expect.result AS {query.format(cols=cols)}")
    return table_text(sink_uri, "expect.result")


def merged(key: str, last: str | None = None) -> str:
    """Reference of a merge: new rows win over old ones of the same key; `last` orders
    repeated keys within the source (the greatest wins)."""
    tiebreak = f", {last} DESC" if last else ""
    return (
        "SELECT {cols} FROM (SELECT DISTINCT ON (" + key + ") * FROM"
        " (SELECT 0 AS pri, * FROM expect.new UNION ALL SELECT 1, * FROM expect.prev) u"
        " ORDER BY " + key + ", pri" + tiebreak + ") r"
    )


def target_text(sink_uri: str, target: TableName = ITEMS_TARGET) -> list[str]:
    return table_text(sink_uri, str(target))


def load_in_time_zones(
    source_uri: str,
    sink_uri: str,
    source: TableName,
    target: TableName,
    strategy: StrategySpec,
    source_tz: str,
    sink_tz: str,
) -> LoadResult:
    """run_load with the source and sink sessions in other (and different) time zones."""
    with (
        psycopg.connect(source_uri, options=f"-c TimeZone={source_tz}") as src,
        psycopg.connect(sink_uri, autocommit=True, options=f"-c TimeZone={sink_tz}") as dst,
    ):
        return load_table(dst, PostgresTableSource(src, source), target, strategy)


def staging_tables(uri: str) -> list[tuple]:
    return fetch(
        uri,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s",
        (STAGING_SCHEMA,),
    )


@pytest.fixture
def items(source_uri: str) -> str:
    execute(source_uri, ITEMS_DDL)
    return source_uri


def test_second_load_replaces_changed_keys_and_keeps_source_deletes(items, sink_uri):
    first = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, merge("id"))
    assert first.created_target and first.rows == 20
    assert target_text(sink_uri) == table_text(items, "public.items")

    execute(items, ITEMS_CHANGES)
    expected = reference(items, sink_uri, ITEMS, ITEMS_TARGET, merged("id"))
    second = run_load(items, sink_uri, ITEMS, ITEMS_TARGET, merge("id"))

    assert not second.created_target
    assert second.rows == 22  # every staged row is (re)inserted
    assert target_text(sink_uri) == expected
    # A merge cannot see source deletes: ids 1-3 stay in the target as they were.
    assert fetch(sink_uri, "SELECT id, name FROM landing.items WHERE id <= 3 ORDER BY id") == [
        (1, "item 1"),
        (2, "item 2"),
        (3, "item 3"),
    ]
    assert fetch(sink_uri, "SELECT count(*) FROM landing.items") == [(25,)]
    assert any(s.startswith("DELETE FROM") for s in second.statements)
    assert staging_tables(sink_uri) == []


def test_null_key_row_is_replaced_not_duplicated(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE nk (k int, v text); INSERT INTO nk VALUES (NULL, 'a'), (1, 'b'), (2, 'c')",
    )
    table, target = TableName("public", "nk"), TableName("landing", "nk")
    run_load(source_uri, sink_uri, table, target, merge("k"))
    execute(source_uri, "UPDATE nk SET v = 'a2' WHERE k IS NULL; INSERT INTO nk VALUES (3, 'd')")

    expected = reference(source_uri, sink_uri, table, target, merged("k"))
    run_load(source_uri, sink_uri, table, target, merge("k"))

    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT v FROM landing.nk WHERE k IS NULL") == [("a2",)]


def test_composite_key_with_a_nullable_part(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE ck (a int NOT NULL, b text, v int);"
        "INSERT INTO ck VALUES (1, NULL, 1), (1, 'x', 2), (2, NULL, 3), (2, 'x', 4)",
    )
    table, target = TableName("public", "ck"), TableName("landing", "ck")
    run_load(source_uri, sink_uri, table, target, merge("a", "b"))
    execute(
        source_uri,
        "UPDATE ck SET v = v * 10 WHERE (a = 1 AND b IS NULL) OR (a = 2 AND b = 'x');"
        "DELETE FROM ck WHERE a = 1 AND b = 'x'; INSERT INTO ck VALUES (3, NULL, 5)",
    )

    expected = reference(source_uri, sink_uri, table, target, merged("a, b"))
    run_load(source_uri, sink_uri, table, target, merge("a", "b"))

    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT count(*) FROM landing.ck") == [(5,)]


def test_duplicate_keys_fail_and_nothing_is_written(items, sink_uri):
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, merge("id"))
    before = target_text(sink_uri)
    execute(
        items,
        "ALTER TABLE items DROP CONSTRAINT items_pkey;"
        "INSERT INTO items (id, name) VALUES (5, 'again'), (7, 'again'), (7, 'and again');"
        "UPDATE items SET name = 'changed'",
    )

    with pytest.raises(DuplicateKeys) as failure:
        run_load(items, sink_uri, ITEMS, ITEMS_TARGET, merge("id"))

    message = str(failure.value)
    assert "7 x3" in message and "5 x2" in message
    assert "nothing was written" in message and "keep_last" in message
    assert target_text(sink_uri) == before
    assert staging_tables(sink_uri) == []


def test_keep_last_keeps_the_last_row_of_each_key_in_source_order(source_uri, sink_uri):
    # A heap table filled by INSERTs only: COPY returns it in insertion order (= seq order).
    execute(
        source_uri,
        "CREATE TABLE ev (seq int, k int, v text);"
        "INSERT INTO ev VALUES (1, 2, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, NULL, 'd'),"
        " (5, NULL, 'e'), (6, 1, 'f'), (7, 3, 'g')",
    )
    table, target = TableName("public", "ev"), TableName("landing", "ev")
    strategy = merge("k", duplicate_policy="keep_last")
    expected_first = reference_of_source_only(source_uri, table, "k", "seq")
    first = run_load(source_uri, sink_uri, table, target, strategy)
    assert first.duplicates_dropped == 3
    assert target_text(sink_uri, target) == expected_first
    assert fetch(sink_uri, "SELECT k, v FROM landing.ev ORDER BY k NULLS FIRST") == [
        (None, "e"),
        (1, "f"),
        (2, "c"),
        (3, "g"),
    ]

    execute(
        source_uri,
        "INSERT INTO ev VALUES (8, 3, 'h'), (9, NULL, 'i'), (10, 4, 'j'), (11, 3, 'k')",
    )
    expected = reference(source_uri, sink_uri, table, target, merged("k", last="seq"))
    second = run_load(source_uri, sink_uri, table, target, strategy)

    assert second.duplicates_dropped == 6
    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT v FROM landing.ev WHERE k = 3 OR k IS NULL ORDER BY v") == [
        ("i",),
        ("k",),
    ]


def reference_of_source_only(source_uri: str, table: TableName, key: str, last: str) -> list[str]:
    """The last row of each key (by `last`) of the source, rendered like table_text."""
    return table_text(
        source_uri, f"(SELECT DISTINCT ON ({key}) * FROM {table} ORDER BY {key}, {last} DESC)"
    )


def test_numeric_keys_compare_by_value_not_text(source_uri, sink_uri):
    execute(source_uri, "CREATE TABLE nu (k numeric, v text); INSERT INTO nu VALUES (1.5, 'a')")
    table, target = TableName("public", "nu"), TableName("landing", "nu")
    run_load(source_uri, sink_uri, table, target, merge("k"))
    execute(source_uri, "UPDATE nu SET k = 1.50, v = 'a2'; INSERT INTO nu VALUES (2, 'b')")

    expected = reference(source_uri, sink_uri, table, target, merged("k"))
    run_load(source_uri, sink_uri, table, target, merge("k"))

    assert target_text(sink_uri, target) == expected
    # One row for the key, as the source now writes it.
    assert fetch(sink_uri, "SELECT k::text, v FROM landing.nu ORDER BY k") == [
        ("1.50", "a2"),
        ("2", "b"),
    ]
    before = target_text(sink_uri, target)
    execute(source_uri, "INSERT INTO nu VALUES (1.500, 'same key')")
    with pytest.raises(DuplicateKeys, match=r"1\.5"):
        run_load(source_uri, sink_uri, table, target, merge("k"))
    assert target_text(sink_uri, target) == before


def test_timestamptz_keys_are_instants_whatever_the_session_time_zones(source_uri, sink_uri):
    execute(
        source_uri,
        "SET TimeZone = 'America/New_York'; CREATE TABLE tz (at timestamptz, v text);"
        "INSERT INTO tz VALUES ('2024-01-01 09:00+09', 'nine in tokyo'),"
        " ('2024-01-01 09:00+00', 'nine in london')",
    )
    table, target = TableName("public", "tz"), TableName("landing", "tz")
    strategy = merge("at")
    zones = {"source_tz": "America/New_York", "sink_tz": "Asia/Tokyo"}
    load_in_time_zones(source_uri, sink_uri, table, target, strategy, **zones)
    # The same instant as '2024-01-01 09:00+09', written in another zone.
    execute(source_uri, "UPDATE tz SET v = 'changed' WHERE at = '2023-12-31 19:00-05'")

    expected = reference(source_uri, sink_uri, table, target, merged("at"))
    load_in_time_zones(source_uri, sink_uri, table, target, strategy, **zones)

    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT v FROM landing.tz ORDER BY at") == [
        ("changed",),
        ("nine in london",),
    ]


def test_failure_mid_apply_leaves_the_target_as_before(items, sink_uri):
    run_load(items, sink_uri, ITEMS, ITEMS_TARGET, merge("id"))
    execute(sink_uri, "ALTER TABLE landing.items ADD CONSTRAINT small CHECK (amount < 100)")
    before = target_text(sink_uri)
    # Staged rows 1-19 pass; the DELETE has run by the time row 20 violates the CHECK.
    execute(items, "UPDATE items SET name = 'new'; UPDATE items SET amount = 1000 WHERE id = 20")

    with pytest.raises(psycopg.errors.CheckViolation):
        run_load(items, sink_uri, ITEMS, ITEMS_TARGET, merge("id"))

    assert target_text(sink_uri) == before
    assert staging_tables(sink_uri) == []


def test_existing_target_with_generated_always_identity_and_no_unique_index(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE idt (id bigint PRIMARY KEY, v text);"
        "INSERT INTO idt VALUES (10, 'a'), (20, 'b')",
    )
    execute(
        sink_uri,
        "CREATE SCHEMA landing;"
        "CREATE TABLE landing.idt (id bigint GENERATED ALWAYS AS IDENTITY, v text)",
    )
    table, target = TableName("public", "idt"), TableName("landing", "idt")
    first = run_load(source_uri, sink_uri, table, target, merge("id"))
    assert not first.created_target  # the existing target goes through delete_insert
    assert target_text(sink_uri, target) == table_text(source_uri, "public.idt")

    execute(source_uri, "UPDATE idt SET v = 'b2' WHERE id = 20; INSERT INTO idt VALUES (30, 'c')")
    expected = reference(source_uri, sink_uri, table, target, merged("id"))
    run_load(source_uri, sink_uri, table, target, merge("id"))

    assert target_text(sink_uri, target) == expected
    assert fetch(sink_uri, "SELECT count(*) FROM landing.idt") == [(3,)]
