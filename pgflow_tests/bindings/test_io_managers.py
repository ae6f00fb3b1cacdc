"""The full_refresh IO manager in process: downstream assets get a TableRef, not rows."""

from __future__ import annotations

import dagster as dg
import polars as pl

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.io_managers import TableRef
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.connections.resource import PostgresConnections


@dg.asset(ins={"items": dg.AssetIn(key=["landing", "items"])})
def expensive_item_count(items: TableRef, pg: PostgresConnections) -> int:
    with pg.connect(items.connection_id, items.connection_type) as conn:
        query = (
            f'SELECT count(*) FROM "{items.table.schema}"."{items.table.name}" WHERE price > 100'
        )
        row = conn.execute(query).fetchone()
    return row[0] if row else 0


def test_downstream_asset_reads_the_loaded_table_through_a_table_ref(dagster_setup, monkeypatch):
    for name in ("PGFLOW_CONN_SHOP", "PGFLOW_CONN_WAREHOUSE"):
        monkeypatch.setenv(name, dagster_setup.env[name])
    project = load_project(dagster_setup.specs)
    resources = build_definitions(project).resources
    items = pipeline_asset(project.pipelines[0])

    result = dg.materialize([items, expensive_item_count], resources=resources)

    assert result.success
    # 300 items priced id * 1.25: ids 81..300 are above 100.
    assert result.output_for_node("expensive_item_count") == 220
    materialization = result.asset_materializations_for_node("landing__items")[0]
    assert materialization.metadata["dagster/row_count"].value == 300


def test_a_missing_source_table_fails_the_run_naming_pipeline_and_table(dagster_setup, monkeypatch):
    for name in ("PGFLOW_CONN_SHOP", "PGFLOW_CONN_WAREHOUSE"):
        monkeypatch.setenv(name, dagster_setup.env[name])
    spec = dagster_setup.specs / "items.yaml"
    spec.write_text(spec.read_text().replace("name: items}", "name: itemz}", 1))
    project = load_project(dagster_setup.specs)
    resources = build_definitions(project).resources

    result = dg.materialize(
        [pipeline_asset(project.pipelines[0])], resources=resources, raise_on_error=False
    )

    assert not result.success
    failure = result.failure_data_for_node("landing__items")
    assert failure is not None
    message = failure.error.message if failure.error else ""
    assert f"pipeline 'landing_items' ({spec}): source table public.itemz not found" in message
    assert "on connection 'shop'" in message


@dg.asset(ins={"items": dg.AssetIn(key=["landing", "items"])})
def pricey_items(items: pl.LazyFrame) -> list[int]:
    return items.filter(pl.col("price") > 370).select("id").sort("id").collect()["id"].to_list()


def test_downstream_asset_can_take_a_postgres_table_as_a_lazyframe(dagster_setup, monkeypatch):
    for name in ("PGFLOW_CONN_SHOP", "PGFLOW_CONN_WAREHOUSE"):
        monkeypatch.setenv(name, dagster_setup.env[name])
    project = load_project(dagster_setup.specs)
    result = dg.materialize(
        [pipeline_asset(project.pipelines[0]), pricey_items],
        resources=build_definitions(project).resources,
    )
    assert result.success
    assert result.output_for_node("pricey_items") == [297, 298, 299, 300]  # id * 1.25 > 370


def test_a_parallel_exchange_reports_its_streams_and_why_a_load_used_one(
    dagster_setup, monkeypatch
):
    """`parallelism: 2` through the IO manager and the connections resource: the first load
    creates the target (one stream, and the metadata says why); the next one uses two."""
    from pgflow.sources import snapshot_slices
    from pgflow_tests.pg import table_text

    monkeypatch.setattr(snapshot_slices, "MIN_BLOCKS_PER_SLICE", 1)  # 300 rows: 2+ blocks
    for name in ("PGFLOW_CONN_SHOP", "PGFLOW_CONN_WAREHOUSE"):
        monkeypatch.setenv(name, dagster_setup.env[name])
    spec = dagster_setup.specs / "items.yaml"
    spec.write_text(
        spec.read_text().replace("method: truncate_insert", "method: exchange\n    parallelism: 2")
    )
    project = load_project(dagster_setup.specs)
    resources = build_definitions(project).resources
    metadata = []
    for _ in range(2):
        result = dg.materialize([pipeline_asset(project.pipelines[0])], resources=resources)
        metadata.append(result.asset_materializations_for_node("landing__items")[0].metadata)
    assert metadata[0]["pgflow/copy_streams"].value == 1
    assert "first load creates the target" in metadata[0]["pgflow/one_stream_reason"].value
    assert metadata[1]["pgflow/copy_streams"].value == 2
    assert "pgflow/one_stream_reason" not in metadata[1]
    assert metadata[1]["dagster/row_count"].value == 300
    assert table_text(dagster_setup.sink_uri, "landing.items") == table_text(
        dagster_setup.source_uri, "public.items"
    )
