"""Sources, sinks and a Dagster instance for the staleness sensor tests: the pipelines they
load, materializing them, and one sensor tick."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.connections.delta_storage import DeltaStorage
from pgflow.connections.resource import PostgresConnections

SHOP_SENSOR = "pgflow_stale_shop"


TABLES = """
CREATE TABLE orders (id int PRIMARY KEY, updated_at timestamptz NOT NULL, amount int);
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE TABLE events (id int PRIMARY KEY, seen_at timestamptz NOT NULL);
CREATE TABLE items (id int PRIMARY KEY, name text);
CREATE TABLE products (id int PRIMARY KEY, name text);
CREATE TABLE payments (id int PRIMARY KEY, amount int);
INSERT INTO orders SELECT g, '2026-01-01'::timestamptz + g * '1s'::interval, g FROM generate_series(1, 20) g;
INSERT INTO events SELECT g, '2026-01-01'::timestamptz + g * '1s'::interval FROM generate_series(1, 20) g;
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g;
INSERT INTO products SELECT g, 'product ' || g FROM generate_series(1, 20) g;
INSERT INTO payments SELECT g, g FROM generate_series(1, 20) g;
"""


MERGE = "{mode: incremental_merge, unique_key: [id]}"


def pipeline(table: str, options: str, target: str | None = None, sink: str = "warehouse") -> str:
    strategy = "{mode: full_refresh}" if options == "{}" else MERGE
    return f"""
  - source: {{type: postgres, connection_id: shop, table: {{schema: public, name: {table}}},
              options: {options}}}
    sink: {{type: postgres, connection_id: {sink}, table: {{schema: landing, name: {target or table}}},
            strategy: {strategy}}}"""


def delta_sink_pipeline(lake: Path) -> str:
    return f"""
  - name: lake_orders
    source: {{type: postgres, connection_id: shop, table: {{schema: public, name: orders}},
              options: {{incremental_strategy: column, incremental_column: updated_at}}}}
    sink: {{type: delta, path: {lake / "orders"}, strategy: {MERGE}}}"""


COLUMN = "{incremental_strategy: column, incremental_column: updated_at}"


NO_INDEX = "{incremental_strategy: column, incremental_column: seen_at}"


XMIN = "{incremental_strategy: xmin}"


FULL = "{}"


@dataclass
class Shop:
    source_uri: str
    sink_uri: str
    specs: Path
    lake: Path
    instance: dg.DagsterInstance

    def project(self, *pipelines: str, connections: str = "") -> Project:
        text = connections + "pipelines:" + "".join(pipelines) + "\n"
        (self.specs / "shop.yaml").write_text(text)
        return load_project(self.specs)


def write(uri: str, statement: str) -> None:
    """Write, then flush this backend's statistics now (they are otherwise up to 1 s late)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]
        conn.execute("SELECT pg_stat_force_next_flush()")


def materialize(shop: Shop, project: Project, *keys: str) -> None:
    assets = [
        pipeline_asset(p) for p in project.pipelines if not keys or "/".join(p.asset_key) in keys
    ]
    resources = build_definitions(project).resources
    result = dg.materialize(assets, instance=shop.instance, resources=resources)
    assert result.success


@dataclass
class Tick:
    requested: dict[str, str]  # asset -> run key
    skip: str | None
    cursor: str | None


def tick(shop: Shop, project: Project, name: str = SHOP_SENSOR, cursor: str | None = None) -> Tick:
    sensor = build_definitions(project).resolve_sensor_def(name)
    resources = {"pg": PostgresConnections(), "delta": DeltaStorage()}
    context = dg.build_sensor_context(instance=shop.instance, resources=resources, cursor=cursor)
    data = sensor.evaluate_tick(context)
    requested = {}
    for request in data.run_requests or []:
        assert request.asset_selection is not None and len(request.asset_selection) == 1
        assert request.tags["pgflow/pipeline"]  # run_tags: concurrency limits per source
        requested[request.asset_selection[0].to_user_string()] = request.run_key
    return Tick(requested, data.skip_message, data.cursor)
