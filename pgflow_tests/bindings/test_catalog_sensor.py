"""The catalog sensor against a real source: a table added to the schema a wildcard reads is
named with the fix, a dropped one is observed on its asset once, and a run of a table the
refresh found dropped fails before it touches the target."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.catalog_sensor import DROPPED_KEY, catalog_sensor_name
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.connections.resource import PostgresConnections
from pgflow.sources.table_listing import live_lister
from pgflow_tests.pg import fetch

SENSOR = catalog_sensor_name("shop")

SOURCE = """
CREATE TABLE orders (id int PRIMARY KEY, amount int);
CREATE TABLE items (id int PRIMARY KEY, name text);
CREATE TABLE log_lines (line text);  -- keyless: the wildcard skips it, it has no asset
INSERT INTO orders SELECT g, g FROM generate_series(1, 20) g;
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g;
"""

WILDCARD = """
name: shop_all
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: "*", exclude: ["tmp_*"]}
  options: {keyless: skip}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing}
  strategy: {mode: incremental_merge, merge_policy: upsert}
"""

# Wins over the wildcard for orders.
EXPLICIT = """
source: {type: postgres, connection_id: shop, table: {schema: public, name: orders}}
sink: {type: postgres, connection_id: warehouse, table: {schema: landing, name: orders},
       strategy: {mode: full_refresh}}
"""


@dataclass
class Shop:
    source_uri: str
    sink_uri: str
    spec: Path  # the schema-wide spec
    instance: dg.DagsterInstance

    def project(self, refresh: bool = False) -> Project:
        """The project as a code location loads it: from the cache next to the spec, written
        on the first load (and rewritten by a refresh, as `pgflow specs refresh` does)."""
        return load_project(self.spec.parent, lister=live_lister(), refresh=refresh)


@pytest.fixture
def shop(make_database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    source_uri, sink_uri = make_database(), make_database()
    write(source_uri, SOURCE)
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "shop.yaml").write_text(WILDCARD)
    (specs / "orders.yaml").write_text(EXPLICIT)
    with dg.instance_for_test() as instance:
        yield Shop(source_uri, sink_uri, specs / "shop.yaml", instance)


def write(uri: str, statement: str) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


@dataclass
class Tick:
    message: str
    observed: dict[str, dg.AssetObservation]  # asset key -> observation
    cursor: str | None


def tick(shop: Shop, project: Project, cursor: str | None = None) -> Tick:
    sensor = build_definitions(project).resolve_sensor_def(SENSOR)
    resources = {"pg": PostgresConnections()}
    context = dg.build_sensor_context(instance=shop.instance, resources=resources, cursor=cursor)
    data = sensor.evaluate_tick(context)
    assert not data.run_requests
    observed = {}
    for event in data.asset_events:
        assert isinstance(event, dg.AssetObservation)
        observed[event.asset_key.to_user_string()] = event
    return Tick(data.skip_message or "", observed, data.cursor)


def test_a_new_table_the_wildcard_takes_is_named_with_the_fix_once(shop: Shop) -> None:
    project = shop.project()
    quiet = tick(shop, project)
    assert quiet.message == "No table added or dropped on 'shop': public (3 tables)"
    assert quiet.observed == {}

    write(
        shop.source_uri,
        """
        CREATE TABLE returns (id int PRIMARY KEY);
        CREATE TABLE tmp_scratch (id int);                   -- excluded by tmp_*
        CREATE VIEW big_orders AS SELECT * FROM orders;      -- kinds: [table] only
        CREATE TABLE "Sales" (id int, day date) PARTITION BY RANGE (day);
        CREATE TABLE sales_2026 PARTITION OF "Sales" FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        """,
    )
    first = tick(shop, project, quiet.cursor)
    wildcard = f"(matched by 'shop_all' ({shop.spec}))"
    assert first.message.splitlines() == [
        "New source tables that a schema-wide spec takes, without an asset yet:",
        f"  public.Sales {wildcard}",  # the partitioned parent, never its partitions
        f"  public.returns {wildcard}",
        "To add them: run `pgflow specs refresh`, then reload the code location (Deployment "
        "-> Reload in the UI, or restart it); each becomes an asset, loaded on its first run.",
    ]
    assert first.observed == {}

    # Reported once: the next tick only recalls them.
    second = tick(shop, project, first.cursor)
    recalled = second.message.splitlines()
    assert recalled[0].startswith("Reported before, still without an asset (run `pgflow specs")
    assert recalled[1:] == ["  public.Sales", "  public.returns"]
    assert second.cursor == first.cursor

    # Another one: only it is new.
    write(shop.source_uri, "CREATE TABLE refunds (id int PRIMARY KEY)")
    third = tick(shop, project, second.cursor)
    lines = third.message.splitlines()
    assert lines[:3] == [
        "New source tables that a schema-wide spec takes, without an asset yet:",
        f"  public.refunds {wildcard}",
        first.message.splitlines()[-1],
    ]
    assert lines[4:] == ["  public.Sales", "  public.returns"]


def test_a_message_lists_twenty_tables_and_the_log_all(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    project = shop.project()
    write(shop.source_uri, "".join(f"CREATE TABLE n{i:02} (id int);" for i in range(25)))
    lines = tick(shop, project).message.splitlines()
    assert len(lines) == 1 + 20 + 1 + 1
    assert lines[20].startswith("  public.n19 (matched by")
    assert lines[21] == "  ... and 5 more (all in the tick's log)"
    every = ", ".join(f"public.n{i:02}" for i in range(25))
    assert f"new source tables without an asset: {every}\n" in capsys.readouterr().err


def test_a_dropped_table_is_observed_on_its_asset_once(shop: Shop) -> None:
    project = shop.project()
    write(shop.source_uri, "DROP TABLE items")
    first = tick(shop, project)
    assert list(first.observed) == ["landing/items"]
    observation = first.observed["landing/items"]
    assert observation.metadata[DROPPED_KEY].value is True
    assert observation.metadata["pgflow/warehouse_copy"].value == "landing.items"
    assert observation.description == (
        "source table public.items was dropped on 'shop'; the warehouse copy landing.items is "
        f"kept; add items to the exclude of {shop.spec} to retire the asset"
    )
    assert first.message.splitlines() == [
        "Dropped at the source, reported on their assets (warehouse copies kept):",
        "  public.items -> landing/items",
    ]
    # As the daemon stores a tick's events: in the asset's history.
    shop.instance.report_runless_asset_event(observation)
    [stored] = shop.instance.fetch_observations(dg.AssetKey(["landing", "items"]), limit=5).records
    assert stored.asset_observation is not None
    assert stored.asset_observation.metadata[DROPPED_KEY].value is True

    again = tick(shop, project, first.cursor)
    assert again.observed == {}
    assert again.message == "No table added or dropped on 'shop': public (2 tables)"

    # Back, then dropped again: a new drop, reported again.
    write(shop.source_uri, "CREATE TABLE items (id int PRIMARY KEY)")
    back = tick(shop, project, again.cursor)
    assert back.observed == {}
    write(shop.source_uri, "DROP TABLE items")
    assert list(tick(shop, project, back.cursor).observed) == ["landing/items"]


def test_a_table_back_at_the_source_but_cached_as_dropped_is_named_once(shop: Shop) -> None:
    shop.project()
    write(shop.source_uri, "DROP TABLE items")
    project = shop.project(refresh=True)  # the refresh keeps items, marked dropped
    [items] = [p for p in project.pipelines if p.asset_key == ("landing", "items")]
    assert items.expansion is not None and items.expansion.dropped_at is not None
    write(shop.source_uri, "CREATE TABLE items (id int PRIMARY KEY); DROP TABLE orders")

    first = tick(shop, project)
    assert list(first.observed) == ["landing/orders"]
    assert first.observed["landing/orders"].description == (
        "source table public.orders was dropped on 'shop'; the warehouse copy landing.orders is "
        f"kept; remove its spec ({shop.spec.parent / 'orders.yaml'}) to retire the asset"
    )
    assert first.message.splitlines() == [
        "Dropped at the source, reported on their assets (warehouse copies kept):",
        "  public.orders -> landing/orders",
        "Back at the source, but dropped in the cached listing: their runs fail until you run "
        "`pgflow specs refresh`, then reload the code location (Deployment -> Reload in the "
        "UI, or restart it):",
        "  public.items -> landing/items",
    ]
    again = tick(shop, project, first.cursor)
    assert again.observed == {}
    assert again.message == "No table added or dropped on 'shop': public (2 tables)"


def test_a_dropped_schema_reports_every_asset(shop: Shop) -> None:
    project = shop.project()
    write(shop.source_uri, "DROP SCHEMA public CASCADE")
    result = tick(shop, project)
    assert sorted(result.observed) == ["landing/items", "landing/orders"]
    assert result.message.splitlines()[-1] == "Schemas missing on 'shop': public"


def test_one_sensor_per_source_connection_stopped_by_default(shop: Shop, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "orders.yaml").write_text(EXPLICIT)
    plain = load_project(tmp_path / "plain")
    names = {s.name for s in build_definitions(plain).sensors}
    assert SENSOR not in names  # no schema-wide spec: no catalog sensor

    sensor = build_definitions(shop.project()).resolve_sensor_def(SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 60
    assert sensor.description and "'shop' (public)" in sensor.description


def test_the_tick_fails_without_the_secret_when_the_source_is_down(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = shop.project()
    monkeypatch.setenv("PGFLOW_CONN_SHOP", "postgresql://u:s3cret-pw@127.0.0.1:1/db")
    with pytest.raises(Exception, match="could not connect to 'shop'") as raised:
        tick(shop, project)
    assert "s3cret-pw" not in str(raised.value)


def test_a_run_of_a_table_found_dropped_fails_before_touching_the_target(shop: Shop) -> None:
    loaded = shop.project()
    resources = build_definitions(loaded).resources
    [items] = [p for p in loaded.pipelines if p.asset_key == ("landing", "items")]
    assert dg.materialize([pipeline_asset(items)], resources=resources).success
    write(shop.source_uri, "DROP TABLE items")
    refreshed = shop.project(refresh=True)
    # Back with a new row: a load would copy it, so an unchanged target proves none ran.
    write(shop.source_uri, "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (21)")

    [spec] = [p for p in refreshed.pipelines if p.asset_key == ("landing", "items")]
    assert spec.expansion is not None and spec.expansion.dropped_at
    result = dg.materialize([pipeline_asset(spec)], resources=resources, raise_on_error=False)

    assert not result.success
    failure = result.failure_data_for_node("landing__items")
    assert failure is not None and failure.error is not None
    assert failure.error.message.strip().endswith(
        f"pipeline '{spec.name}' ({shop.spec}): source table public.items was dropped (found at "
        f"{spec.expansion.dropped_at}); the warehouse copy landing.items is kept; add items to "
        "the spec's exclude to retire the asset"
    )
    assert fetch(shop.sink_uri, "SELECT count(*) FROM landing.items") == [(20,)]


def test_a_schema_step_fails_only_the_table_found_dropped(shop: Shop) -> None:
    write(shop.source_uri, "CREATE TABLE extra (id int PRIMARY KEY); INSERT INTO extra VALUES (1)")
    assert materialize_all(shop.project()).success
    write(shop.source_uri, "DROP TABLE items")
    refreshed = shop.project(refresh=True)
    write(
        shop.source_uri,
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (21);"
        " INSERT INTO extra VALUES (2)",
    )

    result = materialize_all(refreshed)

    assert not result.success
    [failure] = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    assert failure.error is not None
    assert (
        f"'shop_all_items' ({shop.spec}): source table public.items was dropped (found at "
        in failure.error.message
    )
    assert fetch(shop.sink_uri, "SELECT count(*) FROM landing.items") == [(20,)]
    assert fetch(shop.sink_uri, "SELECT count(*) FROM landing.extra") == [(2,)]  # loaded


def materialize_all(project: Project) -> dg.ExecuteInProcessResult:
    defs = build_definitions(project)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(assets, resources=defs.resources, raise_on_error=False)
