"""The demo's specs (pipelines/): they load from their table cache alone, and that cache is
what the seeded shop's catalog really holds."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pgflow.config.catalog_cache import read_cache
from pgflow.config.loader import load_project
from pgflow.localdb.seed import seed_shop, shop_activity
from pgflow.sources.table_listing import list_schema

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
ENV = {
    "PGFLOW_CONN_SHOP": "postgresql://demo@shop/shop",
    "PGFLOW_CONN_WAREHOUSE": "postgresql://demo@dwh/dwh",
}


def test_the_demo_loads_without_a_source_from_its_table_cache() -> None:
    project = load_project(PIPELINES, environ=ENV)  # no lister: nothing may connect
    catalog = {p.asset_key for p in project.pipelines if p.expansion is not None}
    assert catalog == {
        ("landing_catalog", "categories"),
        ("landing_catalog", "products"),
        ("landing_catalog", "product_prices"),
        ("landing_catalog", "supplier_contacts"),
        ("landing_catalog", "import_log"),
    }


def test_the_committed_cache_is_what_the_seed_creates(fresh_db: str) -> None:
    seed_shop(fresh_db, customers=10)
    with psycopg.connect(fresh_db) as conn:
        listed = list_schema(conn, "shop", "catalog")
    cached = read_cache(PIPELINES / "catalog.yaml")[("shop", "catalog")]
    assert replace(listed, listed_at="") == replace(cached, listed_at=""), (
        "pipelines/catalog.tables.json is stale: run `pgflow specs refresh` on a seeded shop"
    )


def test_the_demo_location_reads_the_delta_orders_downstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pipelines/definitions.py: pgflow's assets plus daily_revenue, whose input is the CDC
    pipeline into Delta (the Delta IO manager hands it a polars LazyFrame)."""
    for name, value in {**ENV, "PGFLOW_CONFIG": str(PIPELINES)}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("demo_definitions", PIPELINES / "definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Dagster loads a file with exactly one Definitions object at module scope.
    (defs,) = [v for v in vars(module).values() if isinstance(v, dg.Definitions)]
    graph = defs.resolve_asset_graph()
    revenue = dg.AssetKey(["reports", "daily_revenue"])
    assert graph.get(revenue).parent_keys == {dg.AssetKey(["delta", "orders"])}
    orders = graph.get(dg.AssetKey(["delta", "orders"]))
    assert orders.is_materializable and "delta" in orders.kinds


def test_shop_activity_changes_orders_for_cdc_to_stream(fresh_db: str) -> None:
    seed_shop(fresh_db, customers=500)
    with psycopg.connect(fresh_db) as conn:
        before = conn.execute("SELECT count(*), max(id) FROM public.orders").fetchone()
    counts = shop_activity(fresh_db)
    assert counts["shipped"] == counts["repriced"] == 50
    assert counts["placed"] == 30 and 0 < counts["deleted"] <= 20
    with psycopg.connect(fresh_db) as conn:
        after = conn.execute("SELECT count(*), max(id) FROM public.orders").fetchone()
    assert before and after
    assert after == (before[0] - counts["deleted"] + 30, before[1] + 30)
