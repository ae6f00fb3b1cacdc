"""Delta maintenance in Dagster: the job and its observations, the schedules from the specs,
and maintenance after a load every N commits with its effect in the materialization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from deltalake import DeltaTable

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.maintenance import JOB_NAME, OP_NAME
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute, fetch

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: {table}}}
  options: {{incremental_strategy: column, incremental_column: id}}
sink:
  type: delta
  path: {path}
  strategy: {{mode: incremental_append, only_new_rows: true, unique_key: [id]}}
  options:
    maintenance: {maintenance}
"""
KEY = dg.AssetKey(["delta", "items"])


def project(env: Env, maintenance: str, table: str = "items") -> Project:
    path = env.lake / table
    text = SPEC.format(table=table, path=path, maintenance=maintenance)
    (env.specs / f"{table}.yaml").write_text(text)
    return load_project(env.specs)


def add_items(env: Env, count: int) -> None:
    execute(
        env.source_uri,
        "INSERT INTO items (id, name, price) SELECT m + g, 'item ' || (m + g), 1.5"
        f" FROM generate_series(1, {count}) g, (SELECT max(id) FROM items) s(m)",
    )


def load(proj: Project, instance: dg.DagsterInstance) -> dict[str, Any]:
    """One materialization of the items asset; its metadata as plain values."""
    result = dg.materialize(
        [pipeline_asset(proj.pipelines[0])],
        resources=build_definitions(proj).resources,
        instance=instance,
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    materialization = event.step_materialization_data.materialization
    return {k: v.value for k, v in materialization.metadata.items()}


def lake_rows(path: Path) -> list[tuple]:
    return pl.read_delta(str(path)).sort("id").select("id", "name").rows()


def test_maintenance_runs_after_the_nth_load_only(env: Env, instance) -> None:
    proj = project(env, "{optimize_every: 2}")
    fired = []
    for _ in range(4):
        metadata = load(proj, instance)
        fired.append("pgflow/maintenance_files_before" in metadata)
        if fired[-1]:
            assert metadata["pgflow/maintenance_files_before"] >= 2
            assert metadata["pgflow/maintenance_files_after"] == 1
            assert metadata["pgflow/maintenance_checkpoint"] is True
        add_items(env, 2)
    assert fired == [False, True, False, True]
    source = fetch(env.source_uri, "SELECT id, name FROM items WHERE id <= 56 ORDER BY id")
    assert lake_rows(env.lake / "items") == source  # 50 + 3 loads of 2 rows, each once


def test_the_job_maintains_the_selected_tables_and_records_observations(env: Env, instance) -> None:
    proj = project(env, "{schedule: '0 3 * * *'}")
    for _ in range(3):
        load(proj, instance)
        add_items(env, 2)
    defs = build_definitions(proj)
    job = defs.get_job_def(JOB_NAME)
    config = {"ops": {OP_NAME: {"config": {"pipelines": ["items"]}}}}

    result = job.execute_in_process(run_config=config, instance=instance)

    assert result.success
    [observation] = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert observation.asset_key == KEY
    values = {k: v.value for k, v in observation.metadata.items()}
    assert values["pgflow/maintenance_files_before"] >= 3
    assert values["pgflow/maintenance_files_after"] == 1
    assert (
        values["pgflow/maintenance_version_after"]
        == values["pgflow/maintenance_version_before"] + 1
    )
    assert lake_rows(env.lake / "items") == fetch(
        env.source_uri, "SELECT id, name FROM items WHERE id <= 54 ORDER BY id"
    )


def test_the_job_refuses_an_unknown_pipeline_and_skips_a_table_never_loaded(
    env: Env, instance
) -> None:
    job = build_definitions(project(env, "{}")).get_job_def(JOB_NAME)
    unknown = {"ops": {OP_NAME: {"config": {"pipelines": ["nope"]}}}}
    failed = job.execute_in_process(run_config=unknown, instance=instance, raise_on_error=False)
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "no Delta sink pipeline named nope; choose from: items" in str(
        failure.step_failure_data.error
    )
    skipped = job.execute_in_process(instance=instance)  # empty config: every Delta table
    assert skipped.success
    assert not (env.lake / "items").exists()


def test_schedules_come_from_the_specs_and_select_their_pipeline(env: Env) -> None:
    project(env, "{schedule: {cron: '0 3 * * *', timezone: Europe/Berlin}}")
    proj = project(env, "{optimize_every: 5}", table="other")
    defs = build_definitions(proj)
    schedule = defs.get_schedule_def("items_delta_maintenance_schedule")
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.job_name == JOB_NAME
    with dg.build_schedule_context() as context:
        request = schedule.evaluate_tick(context).run_requests
    assert request is not None
    assert request[0].run_config == {"ops": {OP_NAME: {"config": {"pipelines": ["items"]}}}}
    names = [s.name for s in defs.schedules if "maintenance" in s.name]
    assert names == ["items_delta_maintenance_schedule"]  # `other` sets no schedule


def test_no_job_without_delta_sinks(tmp_path: Path, env: Env) -> None:
    spec = SPEC.replace("type: delta\n  path: {path}", "type: postgres\n  connection_id: warehouse"
                        "\n  table: {{schema: landing, name: items}}")  # fmt: skip
    spec = spec.replace("  options:\n    maintenance: {maintenance}\n", "")
    (env.specs / "items.yaml").write_text(spec.format(table="items", path=""))
    defs = build_definitions(load_project(env.specs))
    assert not [j for j in defs.jobs or [] if getattr(j, "name", "") == JOB_NAME]


def test_a_failing_table_fails_the_job_naming_it_after_the_others_ran(env: Env, instance) -> None:
    project(env, "{}", table="items")
    proj = project(env, "{}", table="other")
    execute(env.source_uri, "CREATE TABLE other AS SELECT * FROM items")
    for spec in proj.pipelines:
        assert dg.materialize(
            [pipeline_asset(spec)], resources=build_definitions(proj).resources, instance=instance
        ).success
    retention = {"delta.deletedFileRetentionDuration": "interval 30 days"}
    DeltaTable(str(env.lake / "other")).alter.set_table_properties(retention)
    job = build_definitions(proj).get_job_def(JOB_NAME)

    result = job.execute_in_process(instance=instance, raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    text = str(failure.step_failure_data.error)
    assert "maintenance failed for:" in text and "- other (" in text
    assert "delta.deletedFileRetentionDuration" in text
    observed = [
        e.asset_observation_data.asset_observation.asset_key
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert observed == [KEY]  # items was maintained all the same
