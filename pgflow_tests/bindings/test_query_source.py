"""`source.query` through Dagster: the IO managers load a join into Postgres (full, then by a
cursor over the join) and into Delta; its checks count and describe the query; its lineage
is the tables Postgres planned to read; a query Postgres refuses fails the run naming the
field; and `dagster asset materialize` runs one as users do."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
import yaml

from pgflow.bindings.assets import source_specs
from pgflow.bindings.checks.definitions import check_names
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow_tests.bindings.checks.support import (
    ITEMS_KEY,
    evaluated,
    failure_message,
    load_and_check,
    materialize,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import DagsterSetup, Env
from pgflow_tests.bindings.test_definitions_cli import latest_materialization
from pgflow_tests.bindings.test_definitions_cli import materialize as materialize_cli
from pgflow_tests.pg import execute, fetch

# A second table with a name that needs quoting, joined to the items the env fixture made.
KINDS = """
CREATE TABLE public."Kate gorie" ("Kat ID" int PRIMARY KEY, "Bezeichnung" text NOT NULL);
INSERT INTO public."Kate gorie" VALUES (0, 'gerade'), (1, 'ungerade €');
ALTER TABLE items ADD COLUMN "Kat ID" int, ADD COLUMN tags text[], ADD COLUMN doc jsonb;
UPDATE items SET "Kat ID" = id % 2, tags = ARRAY['x', NULL], doc = jsonb_build_object('id', id);
"""
QUERY = """SELECT i.id, i.name, i.price, i.added, k."Bezeichnung", i.tags, i.doc
FROM items i JOIN public."Kate gorie" k USING ("Kat ID")
WHERE i.id <> 13;  -- unlucky"""
COLUMNS = 'id, name, price, added, "Bezeichnung", tags, doc'
BY_ADDED = {"incremental_strategy": "column", "incremental_column": "added"}
MERGE = {"mode": "incremental_merge", "unique_key": ["id"]}


def query_pipeline(strategy: dict[str, Any], options: dict[str, Any] | None = None) -> dict:
    spec = pipeline(strategy)
    spec["source"] = {"type": "postgres", "connection_id": "shop", "query": QUERY}
    if options:
        spec["source"]["options"] = options
    return spec


def query_rows(uri: str) -> list[tuple[Any, ...]]:
    return fetch(uri, f"SELECT {COLUMNS} FROM ({QUERY.replace(';', '')}\n) q ORDER BY id")


def target_rows(uri: str) -> list[tuple[Any, ...]]:
    return fetch(uri, f"SELECT {COLUMNS} FROM landing.items ORDER BY id")


def test_a_query_loads_by_its_cursor_with_checks_and_lineage(
    env: Env, instance: dg.DagsterInstance
) -> None:
    execute(env.source_uri, KINDS)
    project = project_of(env, query_pipeline(MERGE, BY_ADDED))
    (spec,) = project.pipelines
    assert source_specs(project) == []  # loaded without asking the source: tables unknown
    asset = pipeline_asset(spec)
    assert asset.asset_deps[ITEMS_KEY] == set()
    assert "value_parity" in check_names(spec)

    first = load_and_check(project, instance)
    assert target_rows(env.sink_uri) == query_rows(env.source_uri)
    assert evaluated(first)["schema"].passed
    counted = run_checks(project, instance, "row_count_parity", "schema", "value_parity")
    assert counted["row_count_parity"].passed, counted["row_count_parity"].description
    assert counted["row_count_parity"].metadata["source_rows"].value == 49  # 13 left out
    assert counted["schema"].passed, counted["schema"].description
    assert counted["value_parity"].passed, counted["value_parity"].description
    assert counted["value_parity"].metadata["columns_compared"].value == 7
    # A value changed in the target alone: the hash of the query's rows finds its key.
    execute(env.sink_uri, "UPDATE landing.items SET \"Bezeichnung\" = 'tampered' WHERE id = 8")
    differs = run_checks(project, instance, "value_parity")["value_parity"]
    assert not differs.passed
    assert "e.g. (id)=(8) values differ" in (differs.description or "")
    execute(env.sink_uri, "UPDATE landing.items SET \"Bezeichnung\" = 'gerade' WHERE id = 8")

    (materialization,) = first.asset_materializations_for_node("landing__items")
    metadata = materialization.metadata
    assert metadata["pgflow/source_tables"].value == ['public."Kate gorie"', "public.items"]
    lineage = metadata["dagster/column_lineage"].value
    assert isinstance(lineage, dg.TableColumnLineage)
    assert lineage.deps_by_column["Bezeichnung"] == [
        dg.TableColumnDep(
            asset_key=dg.AssetKey(["shop", "public", "kate_gorie"]), column_name="Bezeichnung"
        )
    ]
    assert lineage.deps_by_column["id"] == [
        dg.TableColumnDep(asset_key=dg.AssetKey(["shop", "public", "items"]), column_name="id")
    ]

    execute(
        env.source_uri,
        "UPDATE items SET price = 0.01, added = now() + interval '1 hour' WHERE id IN (2, 3);"
        "INSERT INTO items VALUES (51, 'new', 5.5, now() + interval '2 hours', 1, '{}', '[]')",
    )
    second = load_and_check(project, instance)
    (materialization,) = second.asset_materializations_for_node("landing__items")
    assert materialization.metadata["pgflow/rows_read"].value == 3
    assert target_rows(env.sink_uri) == query_rows(env.source_uri)
    assert run_checks(project, instance, "row_count_parity")["row_count_parity"].passed


def test_a_query_loads_into_delta(env: Env, instance: dg.DagsterInstance) -> None:
    execute(env.source_uri, KINDS)
    spec = query_pipeline({"mode": "full_refresh"})
    spec["sink"] = {
        "type": "delta",
        "path": str(env.lake / "items"),
        "strategy": {"mode": "full_refresh"},
    }
    project = project_of(env, spec)
    assert materialize(project, instance).success
    written = pl.read_delta(str(env.lake / "items")).sort("id")
    assert written.columns == ["id", "name", "price", "added", "Bezeichnung", "tags", "doc"]
    expected = fetch(
        env.source_uri,
        f'SELECT id, name, "Bezeichnung" FROM ({QUERY.replace(";", "")}\n) q ORDER BY id',
    )
    assert list(written.select("id", "name", "Bezeichnung").iter_rows()) == expected


def test_a_query_merges_into_delta_by_its_cursor(env: Env, instance: dg.DagsterInstance) -> None:
    execute(env.source_uri, KINDS)
    spec = query_pipeline(MERGE, BY_ADDED)
    spec["sink"] = {"type": "delta", "path": str(env.lake / "items"), "strategy": MERGE}
    project = project_of(env, spec)
    wanted = f'SELECT id, name, "Bezeichnung" FROM ({QUERY.replace(";", "")}\n) q ORDER BY id'
    for change in (
        "",
        "UPDATE items SET name = 'moved', added = now() + interval '1 hour' WHERE id = 5",
    ):
        if change:
            execute(env.source_uri, change)
        assert materialize(project, instance).success
        written = pl.read_delta(str(env.lake / "items")).sort("id")
        assert list(written.select("id", "name", "Bezeichnung").iter_rows()) == fetch(
            env.source_uri, wanted
        )


def test_a_query_postgres_refuses_fails_the_run_naming_the_field(
    env: Env, instance: dg.DagsterInstance
) -> None:
    spec = query_pipeline({"mode": "full_refresh"})
    spec["source"]["query"] = "SELECT id FROM items; DELETE FROM items"
    project = project_of(env, spec)
    result = materialize(project, instance, raise_on_error=False)
    assert not result.success
    message = failure_message(result, "landing__items")
    (loaded,) = project.pipelines
    assert (
        f"pipeline 'landing_items' ({loaded.file}): field 'source.query': holds more than one "
        "statement; give one SELECT (it is read as a subquery)"
    ) in message
    assert fetch(env.source_uri, "SELECT count(*) FROM items") == [(50,)]
    assert fetch(env.sink_uri, "SELECT to_regclass('landing.items')") == [(None,)]


def test_cli_materializes_a_query_asset(dagster_setup: DagsterSetup) -> None:
    setup = dagster_setup
    execute(setup.source_uri, KINDS)
    spec = query_pipeline(MERGE, BY_ADDED)
    (setup.specs / "items.yaml").write_text(yaml.safe_dump({"pipelines": [spec]}))
    for _ in range(2):
        done = materialize_cli(setup, "landing/items")
        assert done.returncode == 0, done.stderr[-3000:]
        assert target_rows(setup.sink_uri) == query_rows(setup.source_uri)
        execute(setup.source_uri, "UPDATE items SET name = 'again', added = now() WHERE id = 7")
    metadata = latest_materialization(setup).metadata
    assert metadata["pgflow/source_tables"].value == ['public."Kate gorie"', "public.items"]
