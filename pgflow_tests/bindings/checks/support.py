"""Pipelines for the check tests, materialized with the real IO managers and checked in a real
Dagster instance: the helpers the check, health-sensor and encoding tests share."""

from __future__ import annotations

import time

import dagster as dg
import psycopg
import yaml

from pgflow.bindings.checks.context import Clock
from pgflow.bindings.checks.definitions import check_names, grouped_checks
from pgflow.bindings.checks.in_step import checks_in_asset_step
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow_tests.bindings.conftest import Env

ITEMS_KEY = dg.AssetKey(["landing", "items"])
MERGE = {"mode": "incremental_merge", "unique_key": ["id"]}
UPSERT = {**MERGE, "merge_policy": "upsert"}
BY_ADDED = {"incremental_strategy": "column", "incremental_column": "added"}


def pipeline(strategy: dict, **extra: object) -> dict:
    """The items table of "shop" into landing.items of "warehouse" (or a Delta `sink`)."""
    spec: dict = {
        "source": {
            "type": "postgres",
            "connection_id": "shop",
            "table": {"schema": "public", "name": "items"},
        },
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "landing", "name": "items"},
            "strategy": strategy,
        },
    }
    for key, value in extra.items():
        if key in ("source", "sink"):
            spec[key].update(value)  # type: ignore[arg-type]
        else:
            spec[key] = value
    return spec


def delta_pipeline(env: Env, strategy: dict) -> dict:
    sink = {"type": "delta", "path": str(env.lake / "items"), "strategy": strategy}
    spec = pipeline(strategy)
    spec["sink"] = sink
    return spec


def project_of(env: Env, *specs: dict) -> Project:
    (env.specs / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": list(specs)}))
    return load_project(env.specs)


def cdc_project(env: Env, slot: str, **extra: object) -> Project:
    options = {"incremental_strategy": "cdc", "slot_name": slot, "deleted_column": "_deleted_at"}
    spec = pipeline(UPSERT, source={"options": options}, **extra)
    document = {
        "connections": {"shop": {"sensor": {"minimum_interval_seconds": 30, "running": True}}},
        "pipelines": [spec],
    }
    (env.specs / "pipelines.yaml").write_text(yaml.safe_dump(document))
    return load_project(env.specs)


def checked_assets(
    project: Project, clock: Clock = time.time
) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """The project's assets and checks as its code location declares them: the checks in the
    asset's own step, a time-partitioned pipeline's in a checks op."""
    in_step = {p.name for p in project.pipelines if checks_in_asset_step(p)}
    return [
        *(pipeline_asset(p, with_checks=p.name in in_step, clock=clock) for p in project.pipelines),
        *grouped_checks(project, clock, in_asset_steps=in_step),
    ]


def materialize(
    project: Project, instance: dg.DagsterInstance, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """Every pipeline asset, without its checks (a test runs those when it wants)."""
    keys = [dg.AssetKey(list(p.asset_key)) for p in project.pipelines]
    return dg.materialize(
        checked_assets(project),
        instance=instance,
        resources=build_definitions(project).resources,
        selection=dg.AssetSelection.assets(*keys).without_checks(),
        raise_on_error=raise_on_error,
    )


def load_and_check(project: Project, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The project's only asset with all its checks: a materialization as the UI or the CLI
    starts it."""
    (spec,) = project.pipelines
    return dg.materialize(
        checked_assets(project),
        instance=instance,
        resources=build_definitions(project).resources,
        selection=dg.AssetSelection.assets(dg.AssetKey(list(spec.asset_key))),
    )


def failure_message(result: dg.ExecuteInProcessResult, node: str) -> str:
    """The error message of the failed step `node`; "" when it did not fail."""
    failure = result.failure_data_for_node(node)
    return failure.error.message if failure and failure.error else ""


def evaluated(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def seq_scans(uri: str, table: str) -> int:
    """Sequential scans of `table` so far, once every other session of its database ended (a
    backend reports its counts when it ends, if not before)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "sessions of the run still open"
            time.sleep(0.05)
        row = conn.execute(
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = %s::regclass", (table,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def run_checks(
    project: Project, instance: dg.DagsterInstance, *names: str, clock: Clock = time.time
) -> dict[str, dg.AssetCheckEvaluation]:
    """Run the named checks (default: all) of the project's only pipeline, nothing else."""
    (spec,) = project.pipelines
    key = dg.AssetKey(list(spec.asset_key))
    checks = [dg.AssetCheckKey(key, n) for n in (names or check_names(spec))]
    result = dg.materialize(
        checked_assets(project, clock),
        instance=instance,
        resources=build_definitions(project).resources,
        selection=dg.AssetSelection.checks(*checks),
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {c.name for c in checks}
    # The event log holds what the UI shows: the same results.
    for check in checks:
        record = instance.get_latest_asset_check_evaluation_record(check)
        assert record is not None and record.event is not None
        assert record.event.run_id == result.run_id
    return evaluations


def figures(evaluation: dg.AssetCheckEvaluation) -> dict[str, object]:
    return {k: v.value for k, v in evaluation.metadata.items()}
