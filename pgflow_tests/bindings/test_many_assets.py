"""A code location of many pipelines: 1,000 assets with all their checks, the checks of many
pipelines in a few ops that give the results one op per pipeline gives (a failure included),
and one asset with its checks still a run of two steps."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from pgflow.bindings.assets import asset_key
from pgflow.bindings.checks.definitions import (
    CHUNK_SIZE,
    check_names,
    grouped_checks,
    pipeline_check,
    pipeline_checks,
)
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.executor import in_process
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import Expansion, Project
from pgflow_tests.bindings.checks.support import MERGE, materialize, pipeline, project_of
from pgflow_tests.bindings.conftest import Env

ENVIRON = {
    "PGFLOW_CONN_SHOP": "postgresql://nobody@localhost/shop",
    "PGFLOW_CONN_WAREHOUSE": "postgresql://nobody@localhost/warehouse",
}


def many_pipelines(folder: Path, count: int) -> Path:
    """One spec file of `count` incremental merges from shop into warehouse."""
    lines = ["connections: {shop: {type: env}, warehouse: {type: env}}", "pipelines:"]
    for i in range(count):
        lines.append(
            f"  - source: {{type: postgres, connection_id: shop, table: {{schema: public, "
            f"name: t{i}}}, options: {{incremental_strategy: column, "
            f"incremental_column: updated_at}}}}"
        )
        lines.append(
            f"    sink: {{type: postgres, connection_id: warehouse, table: {{schema: landing, "
            f"name: t{i}}}, strategy: {{mode: incremental_merge, unique_key: [id]}}}}"
        )
    spec = folder / "pipelines.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


def all_check_keys(project: Project) -> set[dg.AssetCheckKey]:
    return {
        dg.AssetCheckKey(asset_key(p), name) for p in project.pipelines for name in check_names(p)
    }


def test_a_thousand_pipelines_define_a_thousand_assets_with_all_their_checks(
    tmp_path: Path,
) -> None:
    project = as_wildcard(load_project(many_pipelines(tmp_path, 1000), environ=ENVIRON))
    defs = build_definitions(project)
    graph = defs.get_repository_def().asset_graph

    keys = {asset_key(p) for p in project.pipelines}
    assert len(keys) == 1000
    assert graph.materializable_asset_keys == keys
    expected = all_check_keys(project)
    assert len(expected) == 4000  # unique key, row count parity, schema, value parity
    assert graph.asset_check_keys == expected

    # In 20 ops of 50 pipelines, each check as one op per pipeline describes it.
    chunks = grouped_checks(project)
    assert len(chunks) == 1000 // CHUNK_SIZE
    described = {s.key: s.description for c in chunks for s in c.check_specs}
    for spec in project.pipelines[:3]:
        alone = pipeline_check(spec)
        assert {s.key: s.description for s in alone.check_specs}.items() <= described.items()

    # One asset and its checks: two steps, which the executor runs in the run's process.
    one = project.pipelines[137]
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={asset_key(one)},
        asset_check_selection={dg.AssetCheckKey(asset_key(one), n) for n in check_names(one)},
    )
    assert len(job.nodes) == 2 and in_process(job.nodes)  # one loads, one checks


def test_explicit_pipelines_declare_their_checks_on_their_assets_one_op_each(
    tmp_path: Path,
) -> None:
    project = load_project(many_pipelines(tmp_path, 100), environ=ENVIRON)
    defs = build_definitions(project)
    graph = defs.get_repository_def().asset_graph
    assert graph.asset_check_keys == all_check_keys(project)
    job = defs.resolve_implicit_global_asset_job_def()
    assert len(job.nodes) == 100  # no checks ops: each asset's step runs its checks
    for node in job.nodes:
        assert len(node.definition.output_defs) == 1 + 4  # the asset and its 4 checks


def three_tables(env: Env) -> Project:
    """items (50 rows), and parts and tools copied from it, loaded into landing."""
    with psycopg.connect(env.source_uri, autocommit=True) as conn:
        for table in ("parts", "tools"):
            name = sql.Identifier(table)
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE items INCLUDING ALL)").format(name))
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM items").format(name))
    specs = [
        {
            **pipeline(
                MERGE,
                source={"table": {"schema": "public", "name": table}},
                sink={"table": {"schema": "landing", "name": table}},
            ),
            "name": table,
        }
        for table in ("items", "parts", "tools")
    ]
    return project_of(env, *specs)


def as_wildcard(project: Project, parallel: int = 2) -> Project:
    """The same tables as one schema-wide spec's, checked `parallel` at a time."""
    wildcard = Expansion("shop_all", "table", parallel_tables=parallel)
    return replace(
        project, pipelines=tuple(replace(p, expansion=wildcard) for p in project.pipelines)
    )


def check_run(
    project: Project,
    instance: dg.DagsterInstance,
    checks: list[dg.AssetChecksDefinition],
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*(pipeline_asset(p) for p in project.pipelines), *checks],
        instance=instance,
        resources=build_definitions(project).resources,
        selection=dg.AssetSelection.checks(*all_check_keys(project)),
        raise_on_error=raise_on_error,
    )


def outcomes(result: dg.ExecuteInProcessResult) -> dict[dg.AssetCheckKey, tuple[object, ...]]:
    return {
        e.asset_check_key: (e.passed, e.severity, e.description)
        for e in result.get_asset_check_evaluations()
    }


def test_one_op_runs_the_checks_of_several_pipelines_as_their_own_ops_do(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = three_tables(env)
    materialize(project, instance)
    with psycopg.connect(env.sink_uri, autocommit=True) as conn:
        conn.execute("DELETE FROM landing.parts WHERE id <= 5")  # parts' parity fails

    # Explicit pipelines keep an op each: one failed load never abandons another's checks.
    assert len(grouped_checks(project)) == 3
    serial = as_wildcard(project, parallel=1)
    chunked = check_run(serial, instance, grouped_checks(serial))
    one_by_one = check_run(project, instance, pipeline_checks(project))

    assert len({e.step_key for e in chunked.get_step_success_events()}) == 1
    assert len({e.step_key for e in one_by_one.get_step_success_events()}) == 3
    found = outcomes(chunked)
    assert set(found) == all_check_keys(project)
    assert found == outcomes(one_by_one)
    parts = dg.AssetKey(["landing", "parts"])
    assert not found[dg.AssetCheckKey(parts, "row_count_parity")][0]
    assert found[dg.AssetCheckKey(dg.AssetKey(["landing", "tools"]), "row_count_parity")][0]

    # Chunks of two: two ops, the same results.
    pairs = check_run(serial, instance, grouped_checks(serial, size=2))
    assert len({e.step_key for e in pairs.get_step_success_events()}) == 2
    assert outcomes(pairs) == found

    # A schema-wide spec's tables: checked two at a time in threads, the same results.
    wildcard = as_wildcard(project)
    threaded = check_run(wildcard, instance, grouped_checks(wildcard))
    assert len({e.step_key for e in threaded.get_step_success_events()}) == 1
    assert outcomes(threaded) == found


def test_a_pipeline_whose_checks_raise_fails_the_step_after_the_others_results(
    env: Env, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = three_tables(env)
    materialize(project, instance)
    # The checks read the source as a role that may not read parts: an error no check expects.
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(env.source_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reader'").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON items, tools TO {}").format(sql.Identifier(role)))
    reader = {**psycopg.conninfo.conninfo_to_dict(env.source_uri), "user": role}
    reader["password"] = "reader"
    monkeypatch.setenv("PGFLOW_CONN_SHOP", psycopg.conninfo.make_conninfo(**reader))

    one_by_one = check_run(project, instance, pipeline_checks(project), raise_on_error=False)
    expected = outcomes(one_by_one)
    assert {k.asset_key.path[-1] for k in expected} == {"items", "tools"}
    assert len(expected) == 8 and all(passed for passed, _, _ in expected.values())

    for parallel in (1, 2):  # one pipeline at a time, then two in threads
        checked = as_wildcard(project, parallel)
        chunked = check_run(checked, instance, grouped_checks(checked), raise_on_error=False)
        (failure,) = chunked.get_step_failure_events()
        error = failure.event_specific_data.error  # type: ignore[union-attr]
        assert "permission denied for table parts" in str(error)
        assert outcomes(chunked) == expected
