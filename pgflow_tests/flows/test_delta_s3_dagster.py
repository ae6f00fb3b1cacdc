"""Delta on S3 through Dagster, configured the way a deployment does it: PGFLOW_DELTA_* in the
environment (DeltaStorage), specs with s3:// paths. Postgres -> Delta (merge, cursor in the
commit), a downstream asset reading it as a polars LazyFrame, and Delta -> Postgres."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow_tests.bindings.conftest import Env, items_table
from pgflow_tests.pg import execute, fetch
from pgflow_tests.s3_server import S3Delta

TO_DELTA = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: column, incremental_column: added}}
sink:
  type: delta
  path: {path}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""
FROM_DELTA = """
source:
  type: delta
  path: {path}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items_copy}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


@pytest.fixture
def shop(source_uri: str, sink_uri: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Connections "shop" (an items table of 50 rows) and "warehouse", a spec folder."""
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    items_table(source_uri, rows=50)
    specs = tmp_path / "specs"
    specs.mkdir()
    return Env(source_uri, sink_uri, specs, tmp_path / "lake")


@dg.asset(ins={"items": dg.AssetIn(key=["delta", "items"])})
def cheap_items(items: pl.LazyFrame) -> int:
    return items.filter(pl.col("price") < 10).select(pl.len()).collect().item()


def run(shop: Env, *names: str, downstream: bool = False) -> dg.ExecuteInProcessResult:
    project = load_project(shop.specs)
    assets = [pipeline_asset(p) for p in project.pipelines if p.name in names]
    result = dg.materialize(
        [*assets, *([cheap_items] if downstream else [])],
        resources=build_definitions(project).resources,
    )
    assert result.success
    return result


def test_dagster_runs_load_read_and_sync_a_table_on_s3(
    shop: Env, s3_delta: S3Delta, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = shop
    for name, value in s3_delta.env.items():
        monkeypatch.setenv(name, value)
    execute(
        env.source_uri, "UPDATE items SET added = '2026-01-01'::timestamptz + id * '1s'::interval"
    )
    path = s3_delta.uri("lake/items")
    (env.specs / "items.yaml").write_text(TO_DELTA.format(path=path))
    (env.specs / "items_copy.yaml").write_text(FROM_DELTA.format(path=path))
    names = {p.name for p in load_project(env.specs).pipelines}
    to_delta = next(n for n in names if "copy" not in n)
    from_delta = next(n for n in names if "copy" in n)

    first = run(env, to_delta, downstream=True)
    assert first.output_for_node("cheap_items") == 7  # prices 1.25 .. 8.75
    execute(env.source_uri, "UPDATE items SET price = 0, added = now() WHERE id BETWEEN 20 AND 23")
    second = run(env, to_delta, downstream=True)
    assert second.output_for_node("cheap_items") == 11

    frame = pl.read_delta(path, storage_options=s3_delta.storage_options)
    source = fetch(env.source_uri, "SELECT id, name, price FROM items ORDER BY id")
    assert frame.select("id", "name", "price").sort("id").rows() == source

    run(env, from_delta)
    copied = fetch(env.sink_uri, "SELECT id, name, price FROM landing.items_copy ORDER BY id")
    assert copied == source
    types = fetch(
        env.sink_uri,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = 'landing.items_copy'::regclass AND attname = 'price'",
    )
    assert types == [("numeric(8,2)",)]
