"""Staleness sensors against real sources, sinks, Delta tables and a real Dagster instance:
fresh assets are skipped with their reason, exactly the stale ones are requested, with run
keys made of the evidence, and one broken pipeline does not hide the others."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import polars as pl
import psycopg
import pytest
from deltalake import write_deltalake

from pgflow.bindings.cdc_assets import cdc_group_asset
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.sensors import DELTA_SENSOR, StalenessCheckFailed
from pgflow.config.cdc_groups import cdc_groups
from pgflow_tests.bindings.sensors_support import (
    COLUMN,
    FULL,
    MERGE,
    NO_INDEX,
    SHOP_SENSOR,
    TABLES,
    XMIN,
    Shop,
    delta_sink_pipeline,
    materialize,
    pipeline,
    tick,
    write,
)
from pgflow_tests.pg import drop_slots, fetch, slot_name_for


@pytest.fixture
def shop(make_database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    source_uri, sink_uri = make_database(), make_database()
    write(source_uri, TABLES)
    monkeypatch.setenv("PGFLOW_CONN_SHOP", source_uri)
    monkeypatch.setenv("PGFLOW_CONN_WAREHOUSE", sink_uri)
    specs = tmp_path / "specs"
    specs.mkdir()
    with dg.instance_for_test() as instance:
        yield Shop(source_uri, sink_uri, specs, tmp_path / "lake", instance)


def test_exactly_the_stale_assets_are_requested_per_source_kind(shop: Shop) -> None:
    project = shop.project(
        pipeline("orders", COLUMN),
        pipeline("events", NO_INDEX),
        pipeline("items", XMIN),
        pipeline("products", FULL),
        delta_sink_pipeline(shop.lake),
    )
    everything = {"landing/orders", "landing/events", "landing/items", "landing/products"}
    first = tick(shop, project)
    assert set(first.requested) == everything | {"delta/orders"}  # never loaded
    assert first.requested["landing/items"] == "landing/items@mods=20"

    materialize(shop, project)
    fresh = tick(shop, project, cursor=first.cursor)
    assert fresh.requested == {}
    assert fresh.skip is not None
    mark = "2026-01-01 00:00:20+00"
    assert f"landing/orders: source max(updated_at) {mark} = stored mark {mark}" in fresh.skip
    assert f"delta/orders: source max(updated_at) {mark} = stored mark {mark}" in fresh.skip
    assert (
        "landing/events: no index led by seen_at, statistics instead: no writes since the "
        "last load (modifications 20)"
    ) in fresh.skip
    assert "landing/items: no writes since the last load (modifications 20)" in fresh.skip
    assert "landing/products: no writes since the last load" in fresh.skip

    # New orders: the cursor column's max moves past both stored marks; nothing else is stale.
    write(shop.source_uri, "UPDATE orders SET updated_at = '2026-02-01', amount = 0 WHERE id = 3")
    stale = tick(shop, project, cursor=fresh.cursor)
    new_max = "2026-02-01 00:00:00+00"
    assert stale.requested == {
        "landing/orders": f"landing/orders@max={new_max}",
        "delta/orders": f"delta/orders@max={new_max}",
    }
    assert json.loads(stale.cursor or "{}")["landing/orders"] == f"max={new_max}"
    again = tick(shop, project, cursor=stale.cursor)
    assert again.requested == stale.requested  # the same evidence: the same run keys

    # The statistics see writes where no index serves max(): events (no index), xmin, full.
    write(shop.source_uri, "INSERT INTO events VALUES (21, '2026-01-01 00:00:21+00')")
    write(shop.source_uri, "UPDATE items SET name = 'renamed' WHERE id <= 2")
    write(shop.source_uri, "DELETE FROM products WHERE id = 20")
    more = tick(shop, project, cursor=again.cursor)
    assert more.requested == {
        "landing/orders": f"landing/orders@max={new_max}",
        "delta/orders": f"delta/orders@max={new_max}",
        "landing/events": "landing/events@mods=21>20",
        "landing/items": "landing/items@mods=22>20",
        "landing/products": "landing/products@mods=21>20",
    }

    materialize(shop, project)
    done = tick(shop, project, cursor=more.cursor)
    assert done.requested == {}
    assert f"landing/orders: source max(updated_at) {new_max} = stored mark" in (done.skip or "")
    assert done.cursor == more.cursor  # a skip keeps the cursor: what was last requested


def test_an_asset_with_a_run_in_progress_is_not_requested(shop: Shop) -> None:
    project = shop.project(pipeline("orders", COLUMN), pipeline("items", XMIN))
    materialize(shop, project)
    write(shop.source_uri, "UPDATE orders SET updated_at = '2026-03-01' WHERE id = 1")
    write(shop.source_uri, "UPDATE items SET name = 'x' WHERE id = 1")
    run = dg.DagsterRun(
        job_name="__ASSET_JOB",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        asset_selection=frozenset({dg.AssetKey(["landing", "orders"])}),
    )
    shop.instance.add_run(run)
    result = tick(shop, project)
    assert result.requested == {"landing/items": "landing/items@mods=21>20"}

    shop.instance.report_run_failed(run)
    after = tick(shop, project)  # the failed run leaves orders stale: requested now
    assert after.requested["landing/orders"] == "landing/orders@max=2026-03-01 00:00:00+00"


def test_statistics_reset_counts_as_stale(shop: Shop) -> None:
    project = shop.project(pipeline("items", XMIN))
    materialize(shop, project)
    write(shop.source_uri, "SELECT pg_stat_reset_single_table_counters('items'::regclass)")
    result = tick(shop, project)
    assert result.requested == {"landing/items": "landing/items@mods=0<20"}
    write(shop.source_uri, "SELECT 1")
    materialize(shop, project)
    assert tick(shop, project).requested == {}


@pytest.fixture
def slot(shop: Shop) -> Iterator[str]:
    name = slot_name_for(shop.source_uri)
    yield name
    drop_slots(shop.source_uri, name)


def cdc_pipeline(slot: str) -> str:
    return pipeline("payments", f"{{incremental_strategy: cdc, slot_name: {slot}}}")


def test_cdc_pending_changes_in_the_slot(
    shop: Shop, slot: str, capsys: pytest.CaptureFixture[str]
) -> None:
    project = shop.project(cdc_pipeline(slot), pipeline("products", FULL))
    first = tick(shop, project)
    assert set(first.requested) == {"landing/payments", "landing/products"}

    materialize(shop, project)
    fresh = tick(shop, project)
    assert fresh.requested == {}
    # The publication's default name is the slot's.
    assert re.search(
        rf"landing/payments: (no changes for publication {slot} in the [0-9,]+ "
        r"bytes of WAL after|slot \S+ confirmed up to \S+ = WAL flush position)",
        fresh.skip or "",
    )

    write(shop.source_uri, "UPDATE payments SET amount = 0 WHERE id = 1")
    stale = tick(shop, project)
    assert list(stale.requested) == ["landing/payments"]
    key = stale.requested["landing/payments"]
    assert key.startswith("landing/payments@lsn=")
    # The LSN of the pending change: past the slot's confirmed position, within the WAL.
    [(after_slot, within_wal)] = fetch(
        shop.source_uri,
        "SELECT %(lsn)s::pg_lsn > confirmed_flush_lsn, %(lsn)s::pg_lsn <= pg_current_wal_flush_lsn()"
        " FROM pg_replication_slots WHERE slot_name = %(slot)s",
        {"lsn": key.split("=", 1)[1], "slot": slot},
    )
    assert after_slot and within_wal
    # A write to a table outside the publication adds no change for this slot.
    write(shop.source_uri, "UPDATE products SET name = 'x' WHERE id = 1")
    again = tick(shop, project)
    assert again.requested == {
        "landing/payments": key,
        "landing/products": "landing/products@mods=21>20",
    }

    capsys.readouterr()
    with slot_in_use(shop.source_uri, slot, slot):
        busy = tick(shop, project)
    assert list(busy.requested) == ["landing/products"]
    log = capsys.readouterr().err
    assert (
        f"not stale: landing/payments: replication slot {slot} is in use: a load is running" in log
    )
    materialize(shop, project)
    done = tick(shop, project)
    assert done.requested == {}

    # A slot dropped behind pgflow's back is the slot check's business, not a reason to run.
    drop_slots(shop.source_uri, slot)
    missing = tick(shop, project)
    assert missing.requested == {}
    assert f"replication slot {slot} is missing although the target was loaded" in (
        missing.skip or ""
    )


@contextmanager
def slot_in_use(uri: str, slot: str, publication: str) -> Iterator[None]:
    """Hold `slot` active the way a streaming consumer does (START_REPLICATION)."""
    active = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
    conn = psycopg.connect(uri, replication="database", autocommit=True)
    try:
        command = (
            f"START_REPLICATION SLOT {slot} LOGICAL 0/0 (proto_version '1', "
            f"publication_names '{publication}')"
        )
        conn.pgconn.send_query(command.encode())
        while conn.pgconn.flush():  # the connection is non-blocking: push the query out
            time.sleep(0.01)
        wait_until(uri, active, slot, True)
        yield
    finally:
        conn.close()
    wait_until(uri, active, slot, False)


def wait_until(uri: str, query: str, param: str, expected: object) -> None:
    deadline = time.monotonic() + 10
    while fetch(uri, query, (param,)) != [(expected,)]:
        assert time.monotonic() < deadline, f"{query} never gave {expected}"
        time.sleep(0.05)


def test_delta_sources_are_stale_when_a_new_version_is_committed(shop: Shop) -> None:
    lake = shop.lake / "prices"
    frame = pl.DataFrame({"id": [1, 2, 3], "price": [10, 20, 30]})
    write_deltalake(str(lake), frame)
    spec = f"""
  - source: {{type: delta, path: {lake}}}
    sink: {{type: postgres, connection_id: warehouse, table: {{schema: landing, name: prices}},
            strategy: {MERGE}}}"""
    project = shop.project(spec, pipeline("products", FULL))
    assert tick(shop, project, DELTA_SENSOR).requested == {"landing/prices": "landing/prices@v=0"}

    materialize(shop, project, "landing/prices")
    fresh = tick(shop, project, DELTA_SENSOR)
    assert fresh.requested == {}
    assert "landing/prices: Delta version 0 = synced version" in (fresh.skip or "")

    write_deltalake(str(lake), frame.with_columns(pl.col("price") + 1), mode="overwrite")
    stale = tick(shop, project, DELTA_SENSOR)
    assert stale.requested == {"landing/prices": "landing/prices@v=1>0"}
    materialize(shop, project, "landing/prices")
    assert tick(shop, project, DELTA_SENSOR).requested == {}


def test_one_sensor_per_source_connection_with_its_settings(shop: Shop, monkeypatch) -> None:
    monkeypatch.setenv("PGFLOW_CONN_CRM_EU", shop.source_uri)
    connections = """connections:
  shop: {type: env, sensor: {minimum_interval_seconds: 30, running: true}}
"""
    crm = pipeline("items", FULL, target="crm_items").replace(
        "connection_id: shop", "connection_id: crm-eu"
    )
    delta = f"""
  - source: {{type: delta, path: {shop.lake / "prices"}}}
    sink: {{type: postgres, connection_id: warehouse, table: {{schema: landing, name: prices}},
            strategy: {MERGE}}}"""
    project = shop.project(
        pipeline("orders", COLUMN), pipeline("items", XMIN), crm, delta, connections=connections
    )
    defs = build_definitions(project)
    defs.get_repository_def()  # resolves and validates: targets, resource keys
    sensors = {s.name: s for s in defs.sensors or []}
    assert set(sensors) == {SHOP_SENSOR, "pgflow_stale_crm_eu", DELTA_SENSOR}
    by_shop = sensors[SHOP_SENSOR]
    assert by_shop.minimum_interval_seconds == 30
    assert by_shop.default_status == dg.DefaultSensorStatus.RUNNING
    assert "connection 'shop'" in (by_shop.description or "")
    assert "landing/orders, landing/items" in (by_shop.description or "")
    for name in ("pgflow_stale_crm_eu", DELTA_SENSOR):
        assert sensors[name].minimum_interval_seconds == 60
        assert sensors[name].default_status == dg.DefaultSensorStatus.STOPPED
    assert "landing/crm_items" in (sensors["pgflow_stale_crm_eu"].description or "")
    assert "Delta table" in (sensors[DELTA_SENSOR].description or "")


def test_without_delta_sources_there_is_no_delta_sensor(shop: Shop) -> None:
    project = shop.project(pipeline("orders", COLUMN))
    names = [s.name for s in build_definitions(project).sensors or []]
    assert names == [SHOP_SENSOR]


UNREACHABLE = "postgresql://pgflow:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=2"


def test_a_broken_pipeline_does_not_stop_the_others(
    shop: Shop, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PGFLOW_CONN_DOWN", UNREACHABLE)
    project = shop.project(
        pipeline("orders", COLUMN),
        pipeline("orders", COLUMN, target="lost_orders", sink="down"),
        pipeline("ghost", FULL),
    )
    result = tick(shop, project)
    assert result.requested == {"landing/orders": "landing/orders@max=2026-01-01 00:00:20+00"}
    text = capsys.readouterr().err  # the sensor's log
    assert (
        "landing/lost_orders: not checked: ConnectionConfigError: could not connect to 'down'"
        in text
    )
    assert "landing/ghost: not checked: TableNotFound: table public.ghost does not exist" in text
    assert "s3cret-pw" not in text


def test_a_sensor_whose_every_pipeline_fails_raises(shop: Shop, monkeypatch) -> None:
    monkeypatch.setenv("PGFLOW_CONN_SHOP", UNREACHABLE)
    project = shop.project(pipeline("orders", COLUMN), pipeline("items", XMIN))
    with pytest.raises(StalenessCheckFailed) as raised:
        tick(shop, project)
    message = str(raised.value)
    assert "landing/orders: not checked: ConnectionConfigError" in message
    assert "landing/items: not checked" in message
    assert "s3cret-pw" not in message


def test_time_partitioned_assets_are_reported_not_requested(shop: Shop) -> None:
    partitioned = """
  - source: {type: postgres, connection_id: shop, table: {schema: public, name: events}}
    sink: {type: postgres, connection_id: warehouse, table: {schema: landing, name: daily_events},
           strategy: {mode: partition_replace, partition_column: seen_at}}
    partitions: {type: daily, start: 2026-01-01}"""
    project = shop.project(partitioned, pipeline("products", FULL))
    result = tick(shop, project)
    # A run request without a partition key cannot load a partitioned asset.
    assert result.requested == {"landing/products": "landing/products@mods=20"}
    materialize(shop, project, "landing/products")
    skipped = tick(shop, project)
    assert "landing/daily_events: time-partitioned: loaded per partition" in (skipped.skip or "")


def test_a_query_source_is_noted_not_checked(shop: Shop) -> None:
    """A source query has no table statistics: the tick says so and requests nothing for it."""
    by_query = """
  - source: {type: postgres, connection_id: shop, query: "SELECT id, name FROM products"}
    sink: {type: postgres, connection_id: warehouse, table: {schema: landing, name: names},
           strategy: {mode: full_refresh}}"""
    project = shop.project(by_query, pipeline("products", FULL))
    result = tick(shop, project)
    assert result.requested == {"landing/products": "landing/products@mods=20"}
    materialize(shop, project, "landing/products")
    skipped = tick(shop, project)
    assert "landing/names: reads source.query: no table statistics" in (skipped.skip or "")


def test_a_delta_cdc_table_is_fresh_once_its_own_commit_holds_its_changes(
    shop: Shop, slot: str
) -> None:
    """The Delta table's position is its last CDC commit's LSN (its app transaction), not the
    snapshot's: after a run of the Delta table alone (the shared slot waits at the idle
    Postgres table's position) its changes are applied, so it is not stale."""
    cdc = f"{{incremental_strategy: cdc, slot_name: {slot}}}"
    lake = f"""
  - name: lake_orders
    source: {{type: postgres, connection_id: shop, table: {{schema: public, name: orders}},
              options: {cdc}}}
    sink: {{type: delta, path: {shop.lake / "orders"}, strategy: {MERGE}}}"""
    project = shop.project(lake, pipeline("payments", cdc))
    (group,) = cdc_groups(project)
    step, resources = cdc_group_asset(group), build_definitions(project).resources
    assert dg.materialize([step], instance=shop.instance, resources=resources).success

    write(shop.source_uri, "UPDATE orders SET amount = 0 WHERE id = 1")
    assert list(tick(shop, project).requested) == ["delta/orders"]
    only_lake = [dg.AssetKey(["delta", "orders"])]
    done = dg.materialize([step], instance=shop.instance, resources=resources, selection=only_lake)
    assert done.success
    fresh = tick(shop, project)
    assert fresh.requested == {}, fresh.skip
