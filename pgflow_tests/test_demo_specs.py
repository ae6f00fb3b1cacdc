"""The demo's specs (pipelines/): they load from their table cache alone, and that cache is
what the seeded shop's catalog really holds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg

from pgflow.config.catalog_cache import read_cache
from pgflow.config.loader import load_project
from pgflow.localdb.seed import seed_shop
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
