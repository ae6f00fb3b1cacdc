"""`dagster/column_lineage` and `dagster/table_name` on materializations: each target column
from the source column of its name, none for what pgflow adds or the spec leaves out; the
table name the definition shows. Real clusters, the real IO managers; the CLI with a group
selection that also holds the external source asset."""

from __future__ import annotations

import dagster as dg
import psycopg

from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow_tests.bindings.checks.support import (
    ITEMS_KEY,
    cdc_project,
    delta_pipeline,
    materialize,
    pipeline,
    project_of,
)
from pgflow_tests.bindings.conftest import DagsterSetup, Env
from pgflow_tests.bindings.test_definitions_cli import instance as setup_instance
from pgflow_tests.bindings.test_definitions_cli import materialize as cli_materialize
from pgflow_tests.pg import execute

SOURCE = dg.AssetKey(["shop", "public", "items"])


def latest(inst: dg.DagsterInstance, key: dg.AssetKey = ITEMS_KEY) -> dict[str, object]:
    event = inst.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def lineage(metadata: dict[str, object]) -> dict[str, list[tuple[dg.AssetKey, str]]]:
    value = metadata["dagster/column_lineage"]
    assert isinstance(value, dg.TableColumnLineage)
    return {
        column: [(dep.asset_key, dep.column_name) for dep in deps]
        for column, deps in value.deps_by_column.items()
    }


def test_included_columns_come_from_their_source_columns_and_others_from_none(
    env: Env, instance: dg.DagsterInstance
) -> None:
    source = {"options": {"include_columns": ["name", "id"]}}
    project = project_of(env, pipeline({"mode": "full_refresh"}, source=source))
    assert materialize(project, instance).success
    # A column with a default added to the target by hand stays, but is not the source's.
    execute(
        env.sink_uri, "ALTER TABLE landing.items ADD COLUMN loaded_at timestamptz DEFAULT now()"
    )
    assert materialize(project, instance).success
    metadata = latest(instance)
    columns = [c.name for c in metadata["dagster/column_schema"].columns]  # type: ignore[attr-defined]
    assert columns == ["id", "name", "loaded_at"]
    assert lineage(metadata) == {"id": [(SOURCE, "id")], "name": [(SOURCE, "name")]}
    database = psycopg.conninfo.conninfo_to_dict(env.sink_uri)["dbname"]
    assert metadata["dagster/table_name"] == f"{database}.landing.items"


def test_a_delta_target_names_its_uri_and_its_columns_sources(
    env: Env, instance: dg.DagsterInstance
) -> None:
    spec = delta_pipeline(env, {"mode": "incremental_merge", "unique_key": ["id"]})
    spec["source"]["options"] = {"include_columns": ["name", "id", "price"]}
    project = project_of(env, spec)
    assert materialize(project, instance).success
    key = dg.AssetKey(["delta", "items"])
    metadata = latest(instance, key)
    assert metadata["dagster/table_name"] == str(env.lake / "items")
    schema = metadata["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    assert [(c.name, c.type, c.constraints.unique) for c in schema.columns] == [
        ("id", "integer", True),
        ("name", "text", False),
        ("price", "numeric(8,2)", False),
    ]
    assert lineage(metadata) == {c: [(SOURCE, c)] for c in ("id", "name", "price")}
    assert metadata["dagster/row_count"] == 50
    definition = build_definitions(project).resolve_asset_graph().get(key)
    assert definition.metadata["dagster/table_name"] == metadata["dagster/table_name"]


def test_a_cdc_target_s_deleted_column_has_no_source_column(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = cdc_project(env, "pgflow_lineage_test")
    try:
        assert materialize(project, instance).success
        metadata = latest(instance)
        columns = [c.name for c in metadata["dagster/column_schema"].columns]  # type: ignore[attr-defined]
        assert "_deleted_at" in columns
        assert lineage(metadata) == {c: [(SOURCE, c)] for c in ("id", "name", "price", "added")}
    finally:
        execute(
            env.source_uri,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = 'pgflow_lineage_test'",
        )


def test_a_group_selection_with_the_source_asset_materializes_with_the_definitions_names(
    dagster_setup: DagsterSetup,
) -> None:
    """`group:shop` holds the external source table too: the CLI materializes the pipeline
    only, and its materialization names the table as its definition does."""
    setup = dagster_setup
    result = cli_materialize(setup, "group:shop")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CodeReference" not in result.stderr  # no beta warning of the API, per asset
    with setup_instance(setup) as inst:
        metadata = latest(inst)
        assert inst.get_latest_materialization_event(SOURCE) is None
        defs = build_definitions(load_project(setup.specs, setup.env))
    graph = defs.resolve_asset_graph()
    assert graph.get(SOURCE).group_name == graph.get(ITEMS_KEY).group_name == "shop"
    assert metadata["dagster/table_name"] == graph.get(ITEMS_KEY).metadata["dagster/table_name"]
    assert lineage(metadata) == {c: [(SOURCE, c)] for c in ("id", "name", "price", "added")}
