"""Postgres -> Delta on S3 (a local moto server) in every mode, the position across runs, and
the hostile edge data through S3 and back into Postgres with the sync: rows and types equal."""

from __future__ import annotations

import polars as pl
import pytest
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec, TableName
from pgflow.flows.delta_sync.run import sync_delta
from pgflow.sinks.delta import scan_delta_table
from pgflow.sources.column_cursor import ColumnCursorSource
from pgflow_tests.pg import execute, fetch
from pgflow_tests.reliability import edge_data as ed
from pgflow_tests.reliability import test_data_delta as td
from pgflow_tests.s3_server import S3Delta
from pgflow_tests.sinks.delta.conftest import run_delta
from pgflow_tests.sinks.delta.test_strategies import COLUMNS, ORDERS

MERGE = StrategySpec(mode="incremental_merge", unique_key=("id",))


@pytest.fixture
def orders(source_uri: str) -> str:
    execute(source_uri, ORDERS)
    return source_uri


def s3_rows(s3: S3Delta, uri: str) -> list[tuple]:
    frame = pl.read_delta(uri, storage_options=s3.storage_options)
    return frame.select(COLUMNS.split(", ")).sort("id").rows()


def source(uri: str, where: str = "true") -> list[tuple]:
    return fetch(uri, f"SELECT {COLUMNS} FROM orders WHERE {where} ORDER BY id")


def by_cursor(conn, table):
    return ColumnCursorSource(conn, table, "updated_at")


@pytest.mark.parametrize(
    "strategy",
    [
        StrategySpec(mode="full_refresh"),
        StrategySpec(mode="incremental_append"),
        MERGE,
        StrategySpec(mode="replace", custom_predicate="order_day >= '2024-01-01'"),
        StrategySpec(mode="partition_replace", partition_column="order_day"),
    ],
    ids=lambda s: s.mode,
)
def test_every_mode_writes_the_source_to_s3(orders, s3_delta: S3Delta, strategy) -> None:
    uri = s3_delta.uri(f"lake/{strategy.mode}")
    first = run_delta(orders, uri, strategy, storage_options=s3_delta.storage_options)
    assert first.created_table and first.rows_read == 200
    assert s3_rows(s3_delta, uri) == source(orders)

    execute(orders, "UPDATE orders SET status = 'x' WHERE order_day = '2024-01-03'")
    second = run_delta(orders, uri, strategy, storage_options=s3_delta.storage_options)
    assert (second.version_before, second.version_after) == (0, 1)
    if strategy.mode == "incremental_append":  # every row again, appended
        assert len(s3_rows(s3_delta, uri)) == 400
    else:
        assert s3_rows(s3_delta, uri) == source(orders)
    # The commits are on the server, not on a local disk.
    keys = s3_delta.bucket_keys(f"lake/{strategy.mode}/_delta_log/")
    assert [k.rsplit("/", 1)[1] for k in keys] == [f"{v:020}.json" for v in (0, 1)]


def test_the_incremental_position_is_kept_in_the_s3_table(orders, s3_delta: S3Delta) -> None:
    uri = s3_delta.uri("lake/orders")
    options = s3_delta.storage_options
    first = run_delta(orders, uri, MERGE, make_source=by_cursor, storage_options=options)
    execute(orders, "UPDATE orders SET amount = 0, updated_at = now() WHERE id <= 3")

    second = run_delta(orders, uri, MERGE, make_source=by_cursor, storage_options=options)

    assert second.position_before == first.position_after
    assert second.rows_read == 3  # the row on the old mark was applied: skipped (cursor ties)
    assert second.boundary_rows == 3  # one now() for the 3 changed rows: the new mark's rows
    assert s3_rows(s3_delta, uri) == source(orders)
    third = run_delta(orders, uri, MERGE, make_source=by_cursor, storage_options=options)
    assert third.position_before == second.position_after
    assert third.rows_read == 0  # the rows on the mark were applied: skipped (cursor ties)
    assert DeltaTable(uri, storage_options=options).version() == 2
    # A downstream asset's read: the table as a polars LazyFrame, straight from S3.
    frame = scan_delta_table(uri, storage_options=options).filter(pl.col("amount") == 0)
    assert frame.select(pl.len()).collect().item() == 3


def test_hostile_data_round_trips_through_s3(
    source_uri: str, sink_uri: str, s3_delta: S3Delta
) -> None:
    """NaN-free edge data (NaN/Infinity are refused, tested locally), BC dates, arrays,
    unconstrained numerics, 1 MB TOAST, unicode and quoted names: Postgres -> S3 -> Postgres."""
    ed.set_database_time_zone(source_uri, sink_uri)
    ed.build_source(source_uri)
    execute(source_uri, td.delta_table_sql())
    uri = s3_delta.uri("lake/edge_delta")
    options = s3_delta.storage_options
    td.delta_load(source_uri, uri, StrategySpec(mode="full_refresh"), storage_options=options)
    result = sync_delta(
        sink_uri,
        uri,
        TableName("gold", "edge_delta"),
        ("id",),
        pipeline="edge_delta",
        settings=td.SETTINGS,
        storage_options=options,
    )
    assert result.rows_inserted > 0
    assert td.assert_round_trip(source_uri, sink_uri) > 0
    td.assert_target_types(sink_uri)


@pytest.mark.parametrize("folder", ["my tables/Orders ü", "100% sure/Straße"])
def test_s3_paths_that_need_escaping(orders, sink_uri: str, s3_delta: S3Delta, folder) -> None:
    """deltalake stores the keys under their real names but lists the files under its
    percent-encoded root, which polars would take literally (pola-rs/polars#20944): the
    downstream LazyFrame and the Delta -> Postgres sync read them through sources/delta_paths."""
    uri = s3_delta.uri(f"lake/{folder}")
    options = s3_delta.storage_options
    run_delta(orders, uri, MERGE, storage_options=options)
    execute(orders, "UPDATE orders SET status = 'x' WHERE id <= 5")
    run_delta(orders, uri, MERGE, storage_options=options)
    assert any(k.startswith(f"lake/{folder}/part-") for k in s3_delta.bucket_keys("lake/"))
    frame = scan_delta_table(uri, storage_options=options).select(COLUMNS.split(", "))
    assert frame.sort("id").collect().rows() == source(orders)
    result = sync_delta(
        sink_uri, uri, TableName("gold", "orders"), ("id",), pipeline="s3", storage_options=options
    )
    assert result.rows_inserted == 200
    assert fetch(sink_uri, f"SELECT {COLUMNS} FROM gold.orders ORDER BY id") == source(orders)
