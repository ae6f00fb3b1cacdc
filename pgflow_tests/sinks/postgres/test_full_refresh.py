"""full_refresh into Postgres on a real cluster: faithful types, equality, atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.staging import STAGING_SCHEMA
from pgflow_tests.sinks.postgres.conftest import (
    ALL_TYPES_DDL,
    ALL_TYPES_ROWS,
    execute,
    fetch,
    run_load,
    table_text,
)

SOURCE = TableName("public", "all_types")
TARGET = TableName("landing", "all_types")
TARGET_IDS = TableName("landing", "ids")
TRUNCATE_INSERT = StrategySpec(mode="full_refresh", method="truncate_insert")


@pytest.fixture
def all_types(source_uri: str) -> str:
    execute(source_uri, ALL_TYPES_DDL)
    execute(source_uri, ALL_TYPES_ROWS, {"start": 1, "stop": 500})
    return source_uri


def column_types(uri: str, table: TableName) -> dict[str, str]:
    rows = fetch(
        uri,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f"{table.schema}.{table.name}",),
    )
    return dict(rows)


def staging_tables(uri: str) -> list[tuple]:
    return fetch(
        uri,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s",
        (STAGING_SCHEMA,),
    )


def test_first_load_creates_a_faithful_target_equal_to_the_source(all_types, sink_uri):
    result = run_load(all_types, sink_uri, SOURCE, TARGET)

    assert result.created_target
    assert result.rows == 500
    assert table_text(sink_uri, "landing.all_types") == table_text(all_types, "public.all_types")
    types = column_types(sink_uri, TARGET)
    assert types["amount"] == "numeric(12,3)"
    assert types["code"] == "character varying(20)"
    assert types["tstz"] == "timestamp with time zone"
    assert types["jb"] == "jsonb" and types["u"] == "uuid" and types["tags"] == "text[]"
    assert types["nested_jb"] == "jsonb[]" and types["span"] == "int4range"
    # Enums are re-created in the target schema; domains map to their base type.
    assert types["feeling"] == "landing.mood" and types["feelings"] == "landing.mood[]"
    assert types["qty"] == "integer" and types["mail"] == "text"
    labels = fetch(sink_uri, "SELECT enum_range(NULL::landing.mood)::text")[0][0]
    assert labels == "{sad,ok,happy}"
    pk = fetch(
        sink_uri,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'landing.all_types'::regclass AND contype = 'p'",
    )
    assert pk == [("PRIMARY KEY (id)",)]
    not_null = fetch(
        sink_uri,
        "SELECT attnotnull FROM pg_attribute WHERE attrelid ="
        " 'landing.all_types'::regclass AND attname = 'label'",
    )
    assert not_null == [(True,)]
    long_values = fetch(
        sink_uri, "SELECT count(*) FROM landing.all_types WHERE length(long_text) > 8000"
    )
    assert long_values == [(10,)]
    assert staging_tables(sink_uri) == []


def test_reload_after_source_changes_mirrors_inserts_updates_and_deletes(all_types, sink_uri):
    run_load(all_types, sink_uri, SOURCE, TARGET)
    execute(all_types, "DELETE FROM public.all_types WHERE id % 10 = 0")
    execute(
        all_types,
        "UPDATE public.all_types SET label = 'changed', amount = amount + 0.001,"
        " tags = NULL, feeling = 'sad' WHERE id % 7 = 0",
    )
    execute(all_types, ALL_TYPES_ROWS, {"start": 501, "stop": 650})

    result = run_load(all_types, sink_uri, SOURCE, TARGET)

    assert not result.created_target
    assert result.rows == fetch(all_types, "SELECT count(*) FROM public.all_types")[0][0]
    assert table_text(sink_uri, "landing.all_types") == table_text(all_types, "public.all_types")
    assert any(s.startswith("TRUNCATE") for s in result.statements)


def test_builtin_types_travel_as_binary_and_user_types_as_text(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE plain (id int PRIMARY KEY, n numeric(10,2), t text[]);"
        "INSERT INTO plain SELECT g, g / 3.0, array[g::text] FROM generate_series(1, 50) g",
    )
    plain = run_load(
        source_uri, sink_uri, TableName("public", "plain"), TableName("landing", "plain")
    )
    assert plain.copy_format == "binary"
    assert table_text(sink_uri, "landing.plain") == table_text(source_uri, "public.plain")

    execute(source_uri, ALL_TYPES_DDL)
    execute(source_uri, ALL_TYPES_ROWS, {"start": 1, "stop": 5})
    typed = run_load(source_uri, sink_uri, SOURCE, TARGET)
    assert typed.copy_format == "text"  # enum arrays embed a database-specific element OID


def test_existing_target_with_a_narrower_type_is_loaded_through_text_with_casts(
    source_uri, sink_uri
):
    execute(
        source_uri,
        "CREATE TABLE m (id int PRIMARY KEY, v numeric(12,4));"
        "INSERT INTO m VALUES (1, 1.5), (2, NULL)",
    )
    execute(
        sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.m (id bigint PRIMARY KEY,"
        " v numeric(14,2), extra text DEFAULT 'x')",
    )
    result = run_load(source_uri, sink_uri, TableName("public", "m"), TableName("landing", "m"))
    assert result.copy_format == "text"
    assert fetch(sink_uri, "SELECT id, v::text, extra FROM landing.m ORDER BY id") == [
        (1, "1.50", "x"),
        (2, None, "x"),
    ]


class InjectedFault(RuntimeError):
    pass


def fail_after(chunks: int):
    def wrap(stream: Iterator[bytes]) -> Iterator[bytes]:
        with closing(stream):
            for i, chunk in enumerate(stream):
                if i == chunks:
                    raise InjectedFault(f"fault injected after {chunks} COPY chunks")
                yield chunk

    return wrap


@pytest.mark.parametrize("method", ["truncate_insert", "exchange"])
def test_failure_mid_copy_leaves_the_old_target_untouched(all_types, sink_uri, method):
    strategy = StrategySpec(mode="full_refresh", method=method)
    run_load(all_types, sink_uri, SOURCE, TARGET, strategy)
    before = table_text(sink_uri, "landing.all_types")
    execute(all_types, "UPDATE public.all_types SET label = 'new'")

    with pytest.raises(InjectedFault):
        run_load(all_types, sink_uri, SOURCE, TARGET, strategy, wrap=fail_after(200))

    assert table_text(sink_uri, "landing.all_types") == before
    assert staging_tables(sink_uri) == []
    leftovers = fetch(sink_uri, "SELECT relname FROM pg_class WHERE relname LIKE '%%pgflow%%'")
    assert leftovers == []


def test_failure_on_the_first_load_creates_no_target(all_types, sink_uri):
    with pytest.raises(InjectedFault):
        run_load(all_types, sink_uri, SOURCE, TARGET, wrap=fail_after(10))
    assert fetch(sink_uri, "SELECT to_regclass('landing.all_types')") == [(None,)]


def test_failure_while_applying_keeps_the_old_rows(source_uri, sink_uri):
    """A real server-side failure after TRUNCATE ran: the transaction takes it back."""
    execute(
        source_uri,
        "CREATE TABLE m (id int PRIMARY KEY, v int); INSERT INTO m SELECT g, g FROM generate_series(1, 100) g",
    )
    run_load(source_uri, sink_uri, TableName("public", "m"), TableName("landing", "m"))
    execute(sink_uri, "ALTER TABLE landing.m ADD CONSTRAINT small_v CHECK (v <= 100)")
    execute(source_uri, "UPDATE m SET v = 1000 WHERE id = 100")

    with pytest.raises(psycopg.errors.CheckViolation):
        run_load(source_uri, sink_uri, TableName("public", "m"), TableName("landing", "m"))

    assert fetch(sink_uri, "SELECT count(*), max(v) FROM landing.m") == [(100, 100)]


def test_partitioned_source_lands_in_one_plain_table(source_uri, sink_uri):
    execute(
        source_uri,
        """
        CREATE TABLE pay (id bigint, paid_at timestamptz NOT NULL, amount numeric(12,2),
                          PRIMARY KEY (id, paid_at)) PARTITION BY RANGE (paid_at);
        CREATE TABLE pay_2024_01 PARTITION OF pay FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        CREATE TABLE pay_2024_02 PARTITION OF pay FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
        INSERT INTO pay SELECT g, '2024-01-01'::timestamptz + g * interval '1 hour', g
        FROM generate_series(1, 1000) g;
    """,
    )
    result = run_load(source_uri, sink_uri, TableName("public", "pay"), TableName("landing", "pay"))
    assert result.rows == 1000
    assert table_text(sink_uri, "landing.pay") == table_text(source_uri, "public.pay")


@pytest.mark.parametrize("method", ["truncate_insert", "exchange"])
def test_full_refresh_copies_straight_into_the_target_without_staging(source_uri, sink_uri, method):
    execute(source_uri, "CREATE TABLE ids (id bigint PRIMARY KEY, v text)")
    execute(source_uri, "INSERT INTO ids SELECT g * 10, 'v' || g FROM generate_series(1, 300) g")
    # The target numbers its rows itself; COPY keeps the source's values, as the INSERT did
    # with OVERRIDING SYSTEM VALUE.
    execute(
        sink_uri,
        "CREATE SCHEMA landing;"
        " CREATE TABLE landing.ids (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)",
    )
    strategy = StrategySpec(mode="full_refresh", method=method)
    result = run_load(source_uri, sink_uri, TableName("public", "ids"), TARGET_IDS, strategy)

    assert result.rows == 300
    assert not any(STAGING_SCHEMA in statement for statement in result.statements)
    assert any(statement.startswith("COPY") for statement in result.statements)
    assert table_text(sink_uri, "landing.ids") == table_text(source_uri, "public.ids")
    assert staging_tables(sink_uri) == []
