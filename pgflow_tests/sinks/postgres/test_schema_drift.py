"""on_schema_change: new, gone and retyped columns under fail, add_columns (default) and sync."""

from __future__ import annotations

import pytest

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.postgres.ddl import TargetSchemaError
from pgflow_tests.sinks.postgres.conftest import execute, fetch, run_load, table_text

SOURCE, TARGET = TableName("public", "m"), TableName("landing", "m")


def load(source_uri: str, sink_uri: str, policy: str | None = None):
    strategy = StrategySpec(mode="full_refresh")
    if policy:
        strategy = StrategySpec(mode="full_refresh", on_schema_change=policy)  # type: ignore[arg-type]
    return run_load(source_uri, sink_uri, SOURCE, TARGET, strategy)


@pytest.fixture
def loaded(source_uri: str, sink_uri: str) -> tuple[str, str]:
    execute(source_uri, "CREATE TABLE m (id int PRIMARY KEY, a text, n int)")
    execute(source_uri, "INSERT INTO m SELECT g, 'a' || g, g FROM generate_series(1, 20) g")
    load(source_uri, sink_uri)
    return source_uri, sink_uri


def columns(uri: str) -> list[tuple]:
    return fetch(
        uri,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'landing.m'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )


def test_a_new_source_column_is_added_by_default(loaded):
    source, sink = loaded
    execute(source, "ALTER TABLE m ADD COLUMN price numeric(8,2); UPDATE m SET price = id * 1.5")
    result = load(source, sink)
    assert ("price", "numeric(8,2)") in columns(sink)
    assert table_text(sink, "landing.m") == table_text(source, "public.m")
    assert any("ADD COLUMN" in s for s in result.statements)


def test_fail_refuses_a_new_column_before_anything_is_written(loaded):
    source, sink = loaded
    before = table_text(sink, "landing.m")
    execute(source, "ALTER TABLE m ADD COLUMN price numeric(8,2); DELETE FROM m WHERE id > 10")
    with pytest.raises(
        TargetSchemaError, match=r"new source column\(s\) price.*Nothing was written"
    ):
        load(source, sink, "fail")
    assert table_text(sink, "landing.m") == before
    assert "price" not in dict(columns(sink))


def test_a_dropped_source_column_stops_the_load_unless_sync(loaded):
    source, sink = loaded
    execute(source, "ALTER TABLE m DROP COLUMN a")
    with pytest.raises(TargetSchemaError, match=r"column\(s\) a are in the target but no longer"):
        load(source, sink)
    assert "a" in dict(columns(sink))

    load(source, sink, "sync")
    assert "a" not in dict(columns(sink))
    assert table_text(sink, "landing.m") == table_text(source, "public.m")


def test_a_retyped_column_stops_the_load_unless_sync(loaded):
    source, sink = loaded
    execute(source, "ALTER TABLE m ALTER COLUMN n TYPE text USING 'n=' || n")
    with pytest.raises(TargetSchemaError, match=r"retyped column\(s\) n \(integer -> text\)"):
        load(source, sink, "add_columns")

    load(source, sink, "sync")
    assert dict(columns(sink))["n"] == "text"
    assert table_text(sink, "landing.m") == table_text(source, "public.m")


def test_widening_and_locally_added_columns_are_not_drift(source_uri, sink_uri):
    execute(
        source_uri,
        "CREATE TABLE m (id int PRIMARY KEY, v numeric(6,2)); INSERT INTO m VALUES (1, 2.5)",
    )
    execute(sink_uri, "CREATE SCHEMA landing; CREATE TABLE landing.m (id bigint PRIMARY KEY,"
                      " v numeric(12,4), loaded_at timestamptz DEFAULT now())")  # fmt: skip
    load(source_uri, sink_uri, "fail")
    assert fetch(sink_uri, "SELECT id, v::text, loaded_at IS NOT NULL FROM landing.m") == [
        (1, "2.5000", True)
    ]
