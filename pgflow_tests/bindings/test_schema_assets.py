"""A schema-wide spec's tables as one subsettable step, in process against real clusters: each
table its own asset and materialization, N tables loading at a time, a failed table failing
only its own asset."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.config.catalog_cache import write_cache
from pgflow.config.loader import load_project
from pgflow.config.model import Expansion, PipelineSpec, Project
from pgflow.config.wildcards import ListedTable, SchemaListing
from pgflow_tests.bindings.checks.support import failure_message
from pgflow_tests.bindings.conftest import DagsterSetup, Env, empty_dagster_setup
from pgflow_tests.bindings.test_definitions_cli import instance, materialize
from pgflow_tests.bindings.test_io_managers_incremental import metadata_of
from pgflow_tests.pg import execute, fetch, table_text

WILDCARD = "shop_all"
STEP = f"schema_{WILDCARD}"
SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: {name}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: {name}}}
  strategy: {strategy}
"""
TABLES = {
    "orders": (
        "CREATE TABLE orders (id int PRIMARY KEY, customer int, total numeric(10,2),"
        " placed timestamptz, note text, tags text[], data jsonb);"
        " INSERT INTO orders SELECT g, g % 7, g * 2.5, '2026-01-01'::timestamptz + g * '1h'::interval,"
        " 'order ' || g, ARRAY['a', 'b' || g], jsonb_build_object('n', g)"
        " FROM generate_series(1, 400) g",
        "{mode: incremental_merge, unique_key: [id], merge_policy: upsert}",
    ),
    "customers": (
        "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, vip boolean,"
        " born date, score double precision);"
        " INSERT INTO customers SELECT g, 'c' || g, g % 2 = 0, '1990-01-01'::date + g, g / 3.0"
        " FROM generate_series(1, 120) g",
        "{mode: full_refresh}",
    ),
    "lines": (
        "CREATE TABLE lines (order_id int, line smallint, qty int, price numeric,"
        " PRIMARY KEY (order_id, line));"
        " INSERT INTO lines SELECT o, l, o + l, o * l * 0.01"
        " FROM generate_series(1, 200) o, generate_series(1, 3) l",
        "{mode: full_refresh, method: exchange}",
    ),
}


def key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["landing", table])


def expanded(pipeline: PipelineSpec, parallel: int) -> PipelineSpec:
    """What the wildcard's expansion makes of the table's spec (the loader's part)."""
    return replace(pipeline, expansion=Expansion(WILDCARD, "table", parallel_tables=parallel))


def wildcard_project(specs: Path, parallel: int = 2) -> Project:
    project = load_project(str(specs))
    return replace(project, pipelines=tuple(expanded(p, parallel) for p in project.pipelines))


def run(
    project: Project, instance: dg.DagsterInstance, *tables: str, reset: bool = False
) -> dg.ExecuteInProcessResult:
    job = build_definitions(project).resolve_implicit_global_asset_job_def()
    config = {"ops": {STEP: {"config": {"reset": reset}}}}
    return job.execute_in_process(
        instance=instance,
        asset_selection=[key(t) for t in tables or TABLES],
        run_config=config,
        raise_on_error=False,
    )


def columns(uri: str, table: str) -> list[tuple[str, str, bool]]:
    return fetch(
        uri,
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    )


def same(source_uri: str, sink_uri: str, table: str) -> bool:
    source, target = f"public.{table}", f"landing.{table}"
    return columns(source_uri, source) == columns(sink_uri, target) and table_text(
        source_uri, source
    ) == table_text(sink_uri, target)


def materializations(instance: dg.DagsterInstance, table: str) -> list[dg.AssetMaterialization]:
    records = instance.fetch_materializations(key(table), limit=100).records
    return [r.asset_materialization for r in records if r.asset_materialization]


@pytest.fixture
def specs(env: Env) -> Path:
    for name, (ddl, strategy) in TABLES.items():
        execute(env.source_uri, ddl)
        (env.specs / f"{name}.yaml").write_text(SPEC.format(name=name, strategy=strategy))
    return env.specs


def test_the_tables_are_one_step_and_cdc_tables_are_not(specs: Path) -> None:
    project = wildcard_project(specs)
    orders = project.pipelines[0]
    cdc = replace(
        orders.source.options, incremental_strategy="cdc", slot_name="pgflow_never_created"
    )
    source = replace(orders.source, options=cdc)
    lone = replace(orders, name="landing_cdc", asset_key=("landing", "cdc"), source=source)
    defs = build_definitions(replace(project, pipelines=(*project.pipelines, lone)))
    graph = defs.resolve_asset_graph()
    nodes = {k.to_user_string(): graph.get(k).assets_def for k in graph.materializable_asset_keys}
    assert {n for n, a in nodes.items() if a.node_def.name == STEP} == {
        f"landing/{t}" for t in TABLES
    }
    assert nodes["landing/cdc"].node_def.name != STEP, "a CDC table keeps its own step"
    assert nodes["landing/orders"].can_subset


def test_every_table_loads_as_its_own_asset_then_a_subset_only_its_table(
    env: Env, specs: Path, instance: dg.DagsterInstance
) -> None:
    project = wildcard_project(specs)
    result = run(project, instance)
    assert result.success
    for table in TABLES:
        assert same(env.source_uri, env.sink_uri, table), table
        (only,) = materializations(instance, table)
        source_rows = fetch(env.source_uri, f"SELECT count(*) FROM public.{table}")[0][0]
        assert only.metadata["dagster/row_count"].value == source_rows
        assert only.metadata["pgflow/rows_written"].value == source_rows
    assert materializations(instance, "orders")[0].metadata["pgflow/strategy"].value == (
        "incremental_merge/upsert"
    )

    execute(env.source_uri, "UPDATE orders SET note = 'changed' WHERE id <= 5")
    execute(env.source_uri, "DELETE FROM customers WHERE id > 100")
    subset = run(project, instance, "orders")
    assert subset.success
    assert same(env.source_uri, env.sink_uri, "orders")
    assert not same(env.source_uri, env.sink_uri, "customers"), "not selected: not loaded"
    assert [len(materializations(instance, t)) for t in TABLES] == [2, 1, 1]


def test_reset_rebuilds_every_selected_table(
    env: Env, specs: Path, instance: dg.DagsterInstance
) -> None:
    project = wildcard_project(specs)
    assert run(project, instance).success
    # An upsert keeps rows the source deleted; a reset rebuilds the target from the source.
    execute(env.source_uri, "DELETE FROM orders WHERE id > 390")
    assert run(project, instance, "orders", "customers").success
    assert fetch(env.sink_uri, "SELECT count(*) FROM landing.orders") == [(400,)]
    assert run(project, instance, "orders", "customers", reset=True).success
    assert same(env.source_uri, env.sink_uri, "orders")


def test_a_missing_source_fails_its_asset_only_and_the_error_names_it(
    env: Env, specs: Path, instance: dg.DagsterInstance
) -> None:
    project = wildcard_project(specs)
    execute(env.source_uri, "DROP TABLE lines")  # after the expansion: gone at run time
    result = run(project, instance)
    assert not result.success
    assert same(env.source_uri, env.sink_uri, "orders")
    assert same(env.source_uri, env.sink_uri, "customers")
    assert [len(materializations(instance, t)) for t in TABLES] == [1, 1, 0]
    message = failure_message(result, STEP)
    assert "1 table(s) failed: 'landing_lines'" in message
    assert "source table public.lines not found on connection 'shop'" in message
    assert "'landing_orders'" not in message


class SourceSessions:
    """Holds every source table locked, so no load can finish, and samples the source's client
    sessions: each load holds one from its start to its end, so they count the loads in
    flight. Once two are, the lock stays 1.5 s more: time for a third to start if it could."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.most = 0
        self.locked = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with psycopg.connect(self.uri) as lock, psycopg.connect(self.uri, autocommit=True) as look:
            lock.execute(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE")
            mine = [lock.info.backend_pid, look.info.backend_pid]
            self.locked.set()
            deadline = time.monotonic() + 60
            held_since: float | None = None
            while time.monotonic() < deadline and not self.stop.is_set():
                if self._sample(look, mine) >= 2 and held_since is None:
                    held_since = time.monotonic()
                if held_since is not None and time.monotonic() - held_since > 1.5:
                    break
                time.sleep(0.05)
            lock.rollback()  # the loads go on
            while not self.stop.is_set():
                self._sample(look, mine)
                time.sleep(0.05)

    def _sample(self, look: psycopg.Connection, mine: list[int]) -> int:
        row = look.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> ALL(%s)",
            (mine,),
        ).fetchone()
        assert row is not None
        self.most = max(self.most, int(row[0]))
        return int(row[0])


def test_at_most_parallel_tables_load_at_once(
    env: Env, specs: Path, instance: dg.DagsterInstance
) -> None:
    project = wildcard_project(specs, parallel=2)
    sessions = SourceSessions(env.source_uri)
    sessions.thread.start()
    assert sessions.locked.wait(30)
    try:
        result = run(project, instance)
    finally:
        sessions.stop.set()
        sessions.thread.join(timeout=30)
    assert result.success
    assert sessions.most == 2, "two tables in flight together, never a third"
    assert all(same(env.source_uri, env.sink_uri, t) for t in TABLES)


WILDCARD_SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {schema: public, name: "*", exclude: ["tmp_*"]}
  options: {keyless: full_refresh}
sink:
  type: postgres
  connection_id: warehouse
  table: {schema: landing}
  strategy: {mode: incremental_merge, merge_policy: upsert}
name: shop_all
parallel_tables: 2
"""
KEYLESS = "CREATE TABLE import_log (line text, at timestamptz); INSERT INTO import_log VALUES ('a', now())"


@pytest.fixture
def wildcard_setup(local_pg, make_database, tmp_path: Path) -> DagsterSetup:
    """A real wildcard spec over the source's public schema, with the table cache the loader
    reads next to it (as listed from the source: the tables, their keys)."""
    setup = empty_dagster_setup(local_pg, make_database, tmp_path)
    for ddl, _ in TABLES.values():
        execute(setup.source_uri, ddl)
    execute(setup.source_uri, KEYLESS + "; CREATE TABLE tmp_scratch (id int PRIMARY KEY)")
    spec = setup.specs / "shop_all.yaml"
    spec.write_text(WILDCARD_SPEC)
    listed = (
        ListedTable("customers", "table", ("id",)),
        ListedTable("import_log", "table", ()),
        ListedTable("lines", "table", ("order_id", "line")),
        ListedTable("orders", "table", ("id",)),
        ListedTable("tmp_scratch", "table", ("id",)),
    )
    write_cache(spec, [SchemaListing("shop", "public", True, listed, "2026-12-04T21:00:00+00:00")])
    return setup


def test_a_wildcard_spec_through_the_cli_one_step_one_asset_per_table(
    wildcard_setup: DagsterSetup,
) -> None:
    setup = wildcard_setup
    tables = (*TABLES, "import_log")
    every = ",".join(f"landing/{t}" for t in tables)
    first = materialize(setup, every)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "schema-wide spec 'shop_all': 4 of 4 tables, 2 at a time" in first.stderr
    assert all(same(setup.source_uri, setup.sink_uri, t) for t in tables)
    assert fetch(setup.sink_uri, "SELECT to_regclass('landing.tmp_scratch')") == [(None,)]
    assert metadata_of(setup, "import_log")["pgflow/strategy"].startswith("full_refresh")
    assert metadata_of(setup, "orders")["pgflow/strategy"] == "incremental_merge/upsert"

    execute(setup.source_uri, "UPDATE orders SET note = 'again' WHERE id = 1")
    execute(setup.source_uri, "UPDATE customers SET name = 'again' WHERE id = 1")
    only = materialize(setup, "landing/orders")
    assert only.returncode == 0, only.stderr[-3000:]
    assert "1 of 4 tables" in only.stderr
    assert same(setup.source_uri, setup.sink_uri, "orders")
    assert not same(setup.source_uri, setup.sink_uri, "customers")
    with instance(setup) as inst:
        counts = [len(materializations(inst, t)) for t in tables]
    assert counts == [2, 1, 1, 1]


def test_a_wildcard_into_delta_reports_each_table_through_the_delta_io_manager(
    env: Env, specs: Path, instance: dg.DagsterInstance
) -> None:
    import polars as pl

    for file in specs.glob("*.yaml"):
        file.unlink()
    spec = specs / "lake.yaml"
    sink = f"sink: {{type: delta, path: '{env.lake}/{{table}}', strategy: {{mode: full_refresh}}}}"
    spec.write_text(WILDCARD_SPEC.split("sink:")[0] + sink + "\nname: shop_all\n")
    listed = tuple(ListedTable(t, "table", ("id",)) for t in ("customers", "orders"))
    write_cache(spec, [SchemaListing("shop", "public", True, listed, "2026-12-04T21:00:00+00:00")])
    project = load_project(str(specs))
    keys = [dg.AssetKey(list(p.asset_key)) for p in project.pipelines]
    job = build_definitions(project).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=keys)
    assert result.success
    assert len(result.asset_materializations_for_node(STEP)) == 2, "both from the one step"
    for table in ("customers", "orders"):
        source = fetch(env.source_uri, f"SELECT count(*), sum(id) FROM public.{table}")
        lake = pl.read_delta(str(env.lake / table))
        assert [(lake.height, lake["id"].sum())] == source
    for asset in keys:
        records = instance.fetch_materializations(asset, limit=10).records
        (only,) = [r.asset_materialization for r in records if r.asset_materialization]
        assert only.metadata["dagster/row_count"].value in (120, 400)


def kill_when_waiting(
    uri: str, table: str, locked: threading.Event, killed: threading.Event
) -> None:
    """Hold `table` locked until a load waits on it, then end that load's session: a lost
    connection, which the step retries."""
    with psycopg.connect(uri) as lock, psycopg.connect(uri, autocommit=True) as look:
        lock.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        locked.set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed.is_set():
            row = look.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE relation = %s::regclass AND NOT granted",
                (table,),
            ).fetchone()
            if row is not None:
                killed.set()
            time.sleep(0.05)


def test_a_lost_connection_retries_the_step_and_every_table_ends_loaded(
    env: Env, specs: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGFLOW_RETRY_DELAY_SECONDS", "0")
    project = wildcard_project(specs)
    locked, killed = threading.Event(), threading.Event()
    args = (env.source_uri, "lines", locked, killed)
    killer = threading.Thread(target=kill_when_waiting, args=args)
    killer.start()
    assert locked.wait(30)
    try:
        result = run(project, instance)
    finally:
        killed.set()
        killer.join(timeout=30)
    assert result.success
    assert all(same(env.source_uri, env.sink_uri, t) for t in TABLES)
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 1
    # The retry loads only the table that failed; every table's checks still run.
    assert [len(materializations(instance, t)) for t in TABLES] == [1, 1, 1]
    # The table loaded by the retry says so, with the first try's error; the others: 0.
    metadata = {t: materializations(instance, t)[0].metadata for t in TABLES}
    assert {t: m["pgflow/retries"].value for t, m in metadata.items()} == {
        "orders": 0,
        "customers": 0,
        "lines": 1,
    }
    assert "pgflow/last_error" not in metadata["orders"]
    assert "'shop_all'" in metadata["lines"]["pgflow/last_error"].value
    checked = {e.asset_key for e in result.get_asset_check_evaluations() if e.passed}
    assert checked == {key(t) for t in TABLES}
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert (
        "schema-wide spec 'shop_all': 1 of 3 tables, 2 at a time (2 loaded by the earlier attempts)"
        in logs
    )
