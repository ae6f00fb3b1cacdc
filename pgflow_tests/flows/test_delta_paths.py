"""Delta tables at local paths with spaces, unicode and a literal `%`: every load strategy
creates, appends and merges there, and every polars read of the table (the downstream
LazyFrame, the asset checks, the Delta -> Postgres sync's reader, maintenance) finds its files.

deltalake lists such a table's files under its percent-encoded root, which polars used to open
as plain file names (pola-rs/polars#20944): `pl.read_delta` fails on every table below.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import DeltaMaintenance, StrategySpec
from pgflow.flows.delta_maintenance import maintain
from pgflow.sinks.delta import scan_delta_table, stored_position
from pgflow.sinks.delta.inspect import delta_columns, delta_duplicate_keys, delta_row_count
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow.sources.delta import open_snapshot, read_batches
from pgflow_tests.sinks.delta.conftest import execute, fetch, run_delta

ORDERS = """
CREATE TABLE orders (
    id bigint PRIMARY KEY, region text, note text, amount numeric(12,2),
    updated_at timestamptz NOT NULL
);
INSERT INTO orders
SELECT g, (ARRAY['north east', 'Süd ü', '100% x'])[1 + g % 3], 'ünïcode ' || g,
       g * 1.25, '2024-01-01 00:00+00'::timestamptz + g * interval '1 minute'
FROM generate_series(1, 120) g;
"""
COLUMNS = ["id", "region", "note", "amount", "updated_at"]
PATHS = ["lake/my tables/Orders ü", "lake/100% sure/Straße 東京"]


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS)
    return source_uri


@pytest.fixture(params=PATHS, ids=["space-unicode", "percent-cjk"])
def lake_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / request.param


def source(uri: str) -> list[tuple]:
    return fetch(uri, f"SELECT {', '.join(COLUMNS)} FROM orders ORDER BY id")


def table_rows(path: Path) -> list[tuple]:
    return scan_delta_table(path).select(COLUMNS).sort("id").collect().rows()


def by_cursor(conn, table):
    return ColumnCursorSource(conn, table, "updated_at")


def test_plain_polars_cannot_read_such_a_path_which_is_why_reads_go_through_pgflow(
    orders, lake_path
):
    run_delta(orders, lake_path)
    with pytest.raises(FileNotFoundError):
        pl.read_delta(str(lake_path))
    assert table_rows(lake_path) == source(orders)


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="full_refresh"),
        StrategySpec(mode="incremental_append"),
        StrategySpec(mode="incremental_merge", unique_key=("id",)),
        StrategySpec(mode="partition_replace", partition_column="region"),
    ],
    ids=lambda s: s.mode,
)
def test_each_strategy_creates_and_writes_again_at_the_path(orders, lake_path, strategy):
    read = {"make_source": by_cursor} if strategy.mode.startswith("incremental") else {}
    first = run_delta(orders, lake_path, strategy, **read)
    assert first.created_table and table_rows(lake_path) == source(orders)

    execute(
        orders,
        "UPDATE orders SET note = 'changed ü', updated_at = updated_at + interval '1 day'"
        " WHERE id % 4 = 0;"
        "INSERT INTO orders SELECT g, 'north east', 'new', 1, '2025-01-01 00:00+00'"
        " FROM generate_series(121, 130) g",
    )
    second = run_delta(orders, lake_path, strategy, **read)

    assert second.version_after == 1 and second.rows_read > 0
    if strategy.mode == "incremental_append":  # the changed rows come again, as new rows
        assert len(table_rows(lake_path)) == 120 + 30 + 10
    else:
        assert table_rows(lake_path) == source(orders)
    assert stored_position(str(lake_path), "orders") == second.position_after


def test_checks_and_the_sync_reader_read_the_table(orders, lake_path):
    run_delta(orders, lake_path, StrategySpec(mode="partition_replace", partition_column="region"))
    path = str(lake_path)

    assert delta_row_count(path) == 120
    assert delta_duplicate_keys(path, ["id"]).keys == 0
    assert set(delta_columns(path)) == set(COLUMNS)
    snapshot = open_snapshot(path)
    assert len(snapshot.files) == 3  # one per region, each a directory name encoded once
    rows = [
        row
        for file in snapshot.files
        for batch in read_batches(snapshot, file, 50, columns=COLUMNS)
        for row in batch.rows()
    ]
    assert sorted(rows) == source(orders)


def test_maintenance_compacts_and_vacuums_at_the_path(orders, lake_path):
    append = StrategySpec(mode="incremental_append")
    run_delta(orders, lake_path, append, make_source=by_cursor)
    for day in range(1, 4):
        execute(
            orders,
            f"UPDATE orders SET amount = amount + 1, updated_at = updated_at + interval '{day} day'"
            f" WHERE id % {day + 1} = 0",
        )
        run_delta(orders, lake_path, append, make_source=by_cursor)
    rows, position = table_rows(lake_path), stored_position(str(lake_path), "orders")

    settings = DeltaMaintenance(vacuum_retention=timedelta(0), allow_short_retention=True)
    result = maintain(str(lake_path), None, settings)

    assert (result.files_before, result.files_after) == (4, 1) and result.files_vacuumed == 4
    assert table_rows(lake_path) == rows and len(rows) == 120 + 60 + 40 + 30
    assert stored_position(str(lake_path), "orders") == position
    assert DeltaTable(str(lake_path)).version() == result.version_after
