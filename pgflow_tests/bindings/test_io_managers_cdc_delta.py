"""CDC into a Delta table through Dagster: the snapshot, then streamed changes (updates with
unchanged TOAST, deletes, inserts) merged into the table, the run's figures and the table's
rows in the materialization, and a downstream polars asset reading the table; and a slot
shared by a Delta and a Postgres target, each table its own asset."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import psycopg
import pytest
from deltalake import DeltaTable

from pgflow.bindings.cdc_assets import cdc_group_asset
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.cdc_groups import cdc_groups
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.flows.cdc.model import position_source
from pgflow.report import describe_delta_target
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import drop_slots, execute, slot_name_for

TABLE = '"Shop Orders €"'
# Hostile on purpose: a quoted, capitalised, unicode name; an unconstrained numeric; NaN and
# infinities; a date BC; arrays with NULLs and quotes; a 1 MB value stored out of line.
SOURCE_DDL = f"""
CREATE TABLE {TABLE} (
    "Order ID" int PRIMARY KEY,
    "Amount" numeric,
    ratio float8,
    placed date NOT NULL,
    tags text[],
    note text
);
ALTER TABLE {TABLE} ALTER COLUMN note SET STORAGE EXTERNAL;
INSERT INTO {TABLE}
SELECT g, g * 1.25, g / 3.0, date '2026-01-01' + g % 3, ARRAY['a', NULL, 'q"' || g], 'n' || g
FROM generate_series(1, 50) g;
UPDATE {TABLE} SET ratio = 'NaN' WHERE "Order ID" = 1;
UPDATE {TABLE} SET ratio = 'Infinity', placed = '0044-03-15 BC' WHERE "Order ID" = 2;
UPDATE {TABLE} SET ratio = '-Infinity' WHERE "Order ID" = 3;
UPDATE {TABLE} SET note = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 31250) g)
WHERE "Order ID" = 5;
"""
CHANGES = f"""
UPDATE {TABLE} SET "Amount" = 0 WHERE "Order ID" = 5;
UPDATE {TABLE} SET ratio = 'NaN', tags = '{{}}' WHERE "Order ID" = 10;
DELETE FROM {TABLE} WHERE "Order ID" > 45;
INSERT INTO {TABLE} VALUES (100, 123456789012345678.123456789, 1, '2026-01-02', NULL, NULL);
"""
SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: "Shop Orders €"}}
  options: {{incremental_strategy: cdc, slot_name: {slot}{options}}}
sink:
  type: delta
  path: {path}
  strategy: {{mode: incremental_merge, unique_key: ["Order ID"]}}
"""
WAREHOUSE_SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: cdc, slot_name: {slot}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: upsert}}
"""
COLUMNS = ("Order ID", "Amount", "ratio", "days", "tags", "note")


@dg.asset(ins={"orders": dg.AssetIn(key=["delta", "shop_orders"])})
def daily_revenue(orders: pl.LazyFrame) -> pl.DataFrame:
    """The demo's kind of downstream asset: revenue per day, from the Delta table."""
    return (
        orders.group_by("placed")
        .agg(pl.col("Amount").sum().alias("revenue"))
        .sort("placed")
        .with_columns(pl.col("placed").cast(pl.Int32).alias("days"))
        .select("days", "revenue")
        .collect()
    )


@pytest.fixture
def slot(env: Env) -> Iterator[str]:
    name = slot_name_for(env.source_uri)
    yield name
    drop_slots(env.source_uri, name)


def source_rows(uri: str, where: str = "true") -> list[tuple[Any, ...]]:
    """The source's rows as psycopg reads them (dates as days since 1970: years BC)."""
    query = (
        f'SELECT "Order ID", "Amount", ratio, placed - date \'1970-01-01\', tags, note '
        f'FROM {TABLE} WHERE {where} ORDER BY "Order ID"'
    )
    with psycopg.connect(uri) as conn:
        return [_comparable(r) for r in conn.execute(query).fetchall()]


def lake_rows(path: Path, where: pl.Expr | None = None) -> list[tuple[Any, ...]]:
    frame = pl.read_delta(str(path))
    if where is not None:
        frame = frame.filter(where)
    frame = frame.with_columns(pl.col("placed").cast(pl.Int32).alias("days"))
    return [_comparable(r) for r in frame.sort("Order ID").select(COLUMNS).iter_rows()]


def _comparable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """NaN equal to NaN; decimals compared by value whatever their scale."""
    return tuple(
        "NaN"
        if isinstance(v, float) and math.isnan(v)
        else (v.normalize() if isinstance(v, Decimal) else v)
        for v in row
    )


def materialization(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(key.split("/"))
    ]
    assert event.materialization is not None
    return {k: v.value for k, v in event.materialization.metadata.items()}


def lone_project(env: Env, slot: str, options: str = "") -> Project:
    spec = SPEC.format(slot=slot, options=options, path=env.lake / "shop_orders")
    (env.specs / "orders.yaml").write_text(spec)
    return load_project(env.specs)


def test_snapshot_then_changes_merged_into_delta_and_read_downstream(env: Env, slot: str) -> None:
    execute(env.source_uri, SOURCE_DDL)
    project = lone_project(env, slot)
    assets = [pipeline_asset(project.pipelines[0]), daily_revenue]
    resources = build_definitions(project).resources

    first = dg.materialize(assets, resources=resources)
    assert first.success
    snapshot = materialization(first, "delta/shop_orders")
    assert snapshot["pgflow/read"] == "snapshot (first run: no stored position), then stream"
    assert (snapshot["pgflow/snapshot_rows"], snapshot["dagster/row_count"]) == (50, 50)
    assert lake_rows(env.lake / "shop_orders") == source_rows(env.source_uri)
    columns = snapshot["dagster/column_schema"].columns
    assert [(c.name, c.type, c.constraints.unique) for c in columns] == [
        ("Order ID", "integer", True),
        ("Amount", "numeric", False),
        ("ratio", "double precision", False),
        ("placed", "date", False),
        ("tags", "text[]", False),
        ("note", "text", False),
    ]

    execute(env.source_uri, CHANGES)
    second = dg.materialize(assets, resources=resources)
    assert second.success
    stream = materialization(second, "delta/shop_orders")
    assert stream["pgflow/cursor_before"] == snapshot["pgflow/cursor_after"]
    assert (stream["pgflow/upserts"], stream["pgflow/deletes"]) == (3, 5)
    assert (stream["pgflow/rows_deleted"], stream["dagster/row_count"]) == (5, 46)
    assert stream["pgflow/snapshot_rows"] == 0
    assert lake_rows(env.lake / "shop_orders") == source_rows(env.source_uri)  # TOAST kept

    table = DeltaTable(str(env.lake / "shop_orders"))
    assert stream["pgflow/delta_version"] == table.version() > snapshot["pgflow/delta_version"]
    app_id = f"pgflow-cdc:shop_orders:{position_source(project.pipelines[0].source.table, slot)}"
    assert table.transaction_version(app_id) == lsn_to_int(stream["pgflow/cursor_after"])

    report = describe_delta_target(project.pipelines[0], None, slot)  # `pgflow report`
    assert report.endswith(
        f": 46 rows, Delta version {table.version()}; cdc position {stream['pgflow/cursor_after']}"
    )

    revenue = second.output_for_node("daily_revenue")
    with psycopg.connect(env.source_uri) as conn:
        expected = conn.execute(
            f"SELECT placed - date '1970-01-01', sum(\"Amount\") FROM {TABLE} GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [_comparable(r) for r in revenue.iter_rows()] == [_comparable(r) for r in expected]


def test_a_slot_shared_by_a_delta_and_a_postgres_target(env: Env, slot: str) -> None:
    execute(env.source_uri, SOURCE_DDL)
    lake = env.lake / "shop_orders"
    spec = SPEC.format(slot=slot, options=", deleted_column: _deleted_at", path=lake)
    (env.specs / "orders.yaml").write_text(spec)
    (env.specs / "items.yaml").write_text(WAREHOUSE_SPEC.format(slot=slot))
    project = load_project(env.specs)
    (group,) = cdc_groups(project)
    step, resources = cdc_group_asset(group), build_definitions(project).resources

    assert dg.materialize([step], resources=resources).success
    execute(env.source_uri, CHANGES + "UPDATE items SET price = 0 WHERE id <= 3")
    result = dg.materialize([step], resources=resources)
    assert result.success

    orders, items = (
        materialization(result, "delta/shop_orders"),
        materialization(result, "landing/items"),
    )
    assert (orders["pgflow/upserts"], orders["pgflow/deletes"]) == (3, 5)
    assert orders["dagster/row_count"] == 51  # soft deletes keep the 5 rows, stamped
    assert items["pgflow/upserts"] == 3
    # Both took the same source transaction; the Delta table's position is its last commit's
    # (an idle move to the run's end is not worth a table version for so little WAL).
    assert lsn_to_int(orders["pgflow/cursor_before"]) < lsn_to_int(orders["pgflow/cursor_after"])
    assert lsn_to_int(orders["pgflow/cursor_after"]) <= lsn_to_int(items["pgflow/cursor_after"])
    live = pl.col("_deleted_at").is_null()
    assert lake_rows(lake, live) == source_rows(env.source_uri)
    assert [r[0] for r in lake_rows(lake, ~live)] == [46, 47, 48, 49, 50]
    same = "SELECT id, name, price FROM {} ORDER BY id"
    with (
        psycopg.connect(env.source_uri) as source,
        psycopg.connect(env.sink_uri) as sink,
    ):
        want = source.execute(same.format("items")).fetchall()
        assert sink.execute(same.format("landing.items")).fetchall() == want


def step_failure(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    assert error is not None
    return error.to_string()


def test_a_truncate_stops_with_on_truncate_fail_and_a_reset_recovers(
    env: Env, slot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A storage secret (local paths ignore it) must reach no error, event or metadata.
    secret = "pgflow-test-secret-4f1c9e"
    monkeypatch.setenv("PGFLOW_DELTA_AWS_SECRET_ACCESS_KEY", secret)
    execute(env.source_uri, SOURCE_DDL)
    project = lone_project(env, slot, ", on_truncate: fail")
    asset, resources = pipeline_asset(project.pipelines[0]), build_definitions(project).resources
    assert dg.materialize([asset], resources=resources).success
    version = DeltaTable(str(env.lake / "shop_orders")).version()

    execute(env.source_uri, f"TRUNCATE {TABLE}; INSERT INTO {TABLE} VALUES (7, 1, 1, now())")
    failed = dg.materialize([asset], resources=resources, raise_on_error=False)
    assert not failed.success
    message = step_failure(failed)
    assert "pipeline 'shop_orders'" in message
    assert "the source table was truncated" in message and "on_truncate is fail" in message
    assert DeltaTable(str(env.lake / "shop_orders")).version() == version  # nothing committed
    assert secret not in message and secret not in repr(failed.all_events)

    reset = {"ops": {"delta__shop_orders": {"config": {"reset": True}}}}
    again = dg.materialize([asset], resources=resources, run_config=reset)
    assert again.success
    metadata = materialization(again, "delta/shop_orders")
    assert (metadata["pgflow/snapshot_rows"], metadata["dagster/row_count"]) == (1, 1)
    assert secret not in repr(again.all_events)
    assert lake_rows(env.lake / "shop_orders") == source_rows(env.source_uri)


def test_maintenance_every_n_commits_after_cdc_runs_keeps_the_position(env: Env, slot: str) -> None:
    execute(env.source_uri, SOURCE_DDL)
    spec = SPEC.format(slot=slot, options="", path=env.lake / "shop_orders")
    spec += "  options: {maintenance: {optimize_every: 2}}\n"
    (env.specs / "orders.yaml").write_text(spec)
    project = load_project(env.specs)
    asset, resources = pipeline_asset(project.pipelines[0]), build_definitions(project).resources
    fired = []
    for round_ in range(4):
        result = dg.materialize([asset], resources=resources)
        assert result.success
        metadata = materialization(result, "delta/shop_orders")
        fired.append("pgflow/maintenance_files_before" in metadata)
        assert lake_rows(env.lake / "shop_orders") == source_rows(env.source_uri)
        execute(env.source_uri, f'UPDATE {TABLE} SET ratio = {round_} WHERE "Order ID" <= 3')
    assert fired == [False, True, False, True]  # snapshot + batch, batch + compaction, ...
    table = DeltaTable(str(env.lake / "shop_orders"))
    app_id = f"pgflow-cdc:shop_orders:{position_source(project.pipelines[0].source.table, slot)}"
    assert table.transaction_version(app_id) == lsn_to_int(metadata["pgflow/cursor_after"])
