"""The Definitions built from specs: keys, lineage, groups, kinds, pools, policies, schedules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg

from pgflow.bindings.assets import pool_for
from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow.connections.resource import PostgresConnections, with_sessions
from pgflow_tests.bindings.conftest import PIPELINE_YAML
from pgflow_tests.config.specs import pipeline, write

ENV = {"PGFLOW_CONN_SHOP": "postgresql://x@h/db", "PGFLOW_CONN_WAREHOUSE": "postgresql://y@h/db"}


def build(tmp_path: Path, extra: str = "") -> dg.Definitions:
    (tmp_path / "items.yaml").write_text(PIPELINE_YAML.format(method="exchange") + extra)
    return build_definitions(load_project(tmp_path, ENV))


def test_each_pipeline_is_one_asset_downstream_of_its_source_table(tmp_path):
    defs = build(tmp_path)
    graph = defs.resolve_asset_graph()
    target, source = dg.AssetKey(["landing", "items"]), dg.AssetKey(["shop", "public", "items"])
    assert set(graph.get_all_asset_keys()) == {target, source}
    assert graph.get(target).parent_keys == {source}
    assert not graph.get(source).is_materializable  # the source table is external

    spec = graph.get(target)
    assert spec.group_name == "shop"  # the source connection id by default
    assert spec.kinds == {"postgres"}
    assert spec.description == "Items for the catalogue."
    assert spec.owners == ["team:data-platform"]
    assert spec.tags["domain"] == "catalogue"
    assert spec.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=6), warn_window=timedelta(hours=1)
    )
    assert spec.pools == {pool_for("shop")} == {"pgflow/source/shop"}


def test_asset_key_and_group_can_be_set_in_the_spec(tmp_path):
    defs = build(tmp_path, "asset_key: dwh/catalogue/items\ngroup: catalogue\n")
    node = defs.resolve_asset_graph().get(dg.AssetKey(["dwh", "catalogue", "items"]))
    assert node.group_name == "catalogue"


def test_schedule_from_the_spec_targets_exactly_that_asset(tmp_path):
    defs = build(tmp_path)
    schedule = defs.resolve_schedule_def("landing_items_schedule")
    assert schedule.cron_schedule == "15 3 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    job = defs.resolve_job_def(schedule.job_name)
    assert job.asset_layer.executable_asset_keys == {dg.AssetKey(["landing", "items"])}


def test_every_strategy_in_use_has_its_io_manager(tmp_path):
    defs = build(tmp_path)
    node = defs.resolve_asset_graph().get(dg.AssetKey(["landing", "items"]))
    io_key = defs.resolve_assets_def(node.key).get_io_manager_key_for_asset_key(node.key)
    assert io_key == "pgflow_postgres_full_refresh"
    assert io_key in defs.resources


def test_a_components_connection_settings_keep_the_specs_session_settings(tmp_path):
    """A Component's `connections:` (Vault, application_name) and the specs' set_role and
    session_settings reach the one `pg` resource together."""
    spec = write(
        tmp_path / "shop.yaml",
        {
            "connections": {"warehouse": {"set_role": "writer", "session_settings": {"a.b": 1}}},
            "pipelines": [pipeline()],
        },
    )
    project = load_project(spec, environ=ENV)
    given = PostgresConnections(vault_addr="http://127.0.0.1:8200", application_name="etl")
    merged = with_sessions(project.connections, given)
    assert (merged.vault_addr, merged.application_name) == ("http://127.0.0.1:8200", "etl")
    setup = merged.sessions["warehouse"].setup()
    assert (setup.set_role, [(s.name, s.value) for s in setup.settings]) == (
        "writer",
        [("a.b", "1")],
    )
    assert with_sessions(project.connections).sessions["warehouse"].set_role == "writer"
