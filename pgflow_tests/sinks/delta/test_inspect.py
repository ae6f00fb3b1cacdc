"""The schema check's view of a Delta table: a scale chosen from the data is not drift."""

from __future__ import annotations

import psycopg

from pgflow.config.model import StrategySpec, TableName
from pgflow.sinks.delta.inspect import compare_delta_columns, delta_columns
from pgflow.sources.catalog import describe_table
from pgflow_tests.sinks.delta.conftest import execute, run_delta

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))


def test_a_scale_chosen_from_the_data_is_not_drift_but_a_retype_is(source_uri, tmp_path):
    execute(source_uri, "CREATE TABLE orders (id int PRIMARY KEY, n numeric, price numeric(8,2))")
    execute(source_uri, "INSERT INTO orders VALUES (1, pi()::numeric, 1.25)")
    run_delta(source_uri, tmp_path / "t", MERGE)
    execute(source_uri, "ALTER TABLE orders ALTER price TYPE text")

    with psycopg.connect(source_uri) as conn:
        info = describe_table(conn, TableName("public", "orders"))
    found = compare_delta_columns(info, delta_columns(str(tmp_path / "t")), MERGE)
    assert found.retyped == ("price (Decimal(precision=8, scale=2) -> String)",)
    assert (found.added, found.dropped, found.refused) == ((), (), ())


def test_columns_only_the_table_has_are_no_drift_for_update_and_delete(source_uri, tmp_path):
    execute(source_uri, 'CREATE TABLE orders (id int PRIMARY KEY, "Notiz ✓" text, qty int)')
    run_delta(source_uri, tmp_path / "t", MERGE)
    execute(source_uri, 'ALTER TABLE orders DROP COLUMN "Notiz ✓"')
    with psycopg.connect(source_uri) as conn:
        info = describe_table(conn, TableName("public", "orders"))
    table = delta_columns(str(tmp_path / "t"))

    for mode in ("update", "delete"):
        found = compare_delta_columns(info, table, StrategySpec(mode=mode, unique_key=("id",)))  # type: ignore[arg-type]
        assert (found.dropped, found.refused) == (("Notiz ✓",), ())
    merged = compare_delta_columns(info, table, MERGE)
    assert merged.refused == (
        "column(s) Notiz ✓ are in the Delta table but no longer in the source",
    )
