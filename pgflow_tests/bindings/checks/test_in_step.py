"""A pipeline's checks run in its asset's own step (checks/in_step.py): one step per one-asset
run, checks alone without a load, and a check that raises after a load fails only itself."""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg

from pgflow.bindings.checks.definitions import check_names
from pgflow.bindings.checks.in_step import checks_in_asset_step
from pgflow.bindings.checks.names import (
    CHECKS_ONLY_TAG,
    FRESHNESS,
    ROW_COUNT_PARITY,
    SCHEMA,
    UNIQUE_KEY,
    VALUE_PARITY,
)
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.executor import in_process
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow_tests.bindings.checks.support import (
    ITEMS_KEY,
    MERGE,
    evaluated,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import DagsterSetup, Env
from pgflow_tests.bindings.test_definitions_cli import instance as cli_instance
from pgflow_tests.bindings.test_definitions_cli import materialize as materialize_cli
from pgflow_tests.bindings.test_definitions_cli import rows

STEP = "landing__items"  # the asset's step: its op is named after its key


def same_rows(source_uri: str, sink_uri: str) -> bool:
    """The target holds the source's items, value for value."""
    query = "SELECT id, name, price, added FROM {} ORDER BY id"
    target = rows(sink_uri, query.format("landing.items"))
    return len(target) > 0 and target == rows(source_uri, query.format("public.items"))


def step_keys(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.step_key}


def materializations(instance: dg.DagsterInstance) -> int:
    return len(
        instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=ITEMS_KEY), 10).records
    )


def test_the_code_location_runs_a_load_and_its_checks_in_one_step(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline({"mode": "full_refresh"}))
    (spec,) = project.pipelines
    assert checks_in_asset_step(spec)
    defs = build_definitions(project)
    checks = {dg.AssetCheckKey(ITEMS_KEY, n) for n in check_names(spec)}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={ITEMS_KEY}, asset_check_selection=checks
    )
    assert len(job.nodes) == 1 and in_process(job.nodes)  # no checks op beside the asset's
    result = job.execute_in_process(instance=instance)
    assert result.success
    assert step_keys(result) == {STEP}
    found = evaluated(result)
    # A snapshot load: the ledger settles the row count; value_parity's scan waits for its job.
    assert set(found) == {ROW_COUNT_PARITY, SCHEMA}
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    assert same_rows(env.source_uri, env.sink_uri)


def test_checks_alone_run_in_the_asset_step_without_a_load(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(MERGE))
    defs = build_definitions(project)
    assert (
        defs.resolve_implicit_global_asset_job_def()
        .execute_in_process(instance=instance, asset_selection=[ITEMS_KEY])
        .success
    )
    assert materializations(instance) == 1 and same_rows(env.source_uri, env.sink_uri)
    # The scan checks alone (as the scan job runs them): the same op, no load.
    found = run_checks(project, instance, ROW_COUNT_PARITY, VALUE_PARITY)
    assert found[ROW_COUNT_PARITY].passed and found[VALUE_PARITY].passed
    assert materializations(instance) == 1


def broken_clock() -> float:
    raise RuntimeError("clock broke")


def run_with_broken_clock(
    env: Env, instance: dg.DagsterInstance, selection: dg.AssetSelection
) -> dg.ExecuteInProcessResult:
    """The items pipeline, with freshness, its checks in its step, and a clock that raises:
    the freshness check raises."""
    project = project_of(env, pipeline(MERGE, freshness="1h"))
    (spec,) = project.pipelines
    return dg.materialize(
        [pipeline_asset(spec, with_checks=True, clock=broken_clock)],
        instance=instance,
        resources=build_definitions(project).resources,
        selection=selection,
        raise_on_error=False,
    )


def retried(result: dg.ExecuteInProcessResult) -> bool:
    return any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


def test_a_check_that_raises_after_the_load_fails_alone_and_the_step_stands(
    env: Env, instance: dg.DagsterInstance
) -> None:
    result = run_with_broken_clock(env, instance, dg.AssetSelection.assets(ITEMS_KEY))
    assert result.success
    assert not retried(result)  # loaded once
    assert same_rows(env.source_uri, env.sink_uri)
    assert materializations(instance) == 1
    found = evaluated(result)
    fresh = found[FRESHNESS]
    assert not fresh.passed and fresh.severity == dg.AssetCheckSeverity.ERROR
    assert fresh.description == "the check could not run: RuntimeError: clock broke"
    # The other checks ran all the same.
    assert found[SCHEMA].passed and found[UNIQUE_KEY].passed


def test_a_check_that_raises_without_a_load_fails_the_step(
    env: Env, instance: dg.DagsterInstance
) -> None:
    freshness = dg.AssetCheckKey(ITEMS_KEY, FRESHNESS)
    result = run_with_broken_clock(env, instance, dg.AssetSelection.checks(freshness))
    assert not result.success  # nothing to protect: the error shows as the step's
    assert not retried(result)  # the asset's retries are for loads
    assert materializations(instance) == 0
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "pipeline 'landing_items': its checks failed: RuntimeError: clock broke" in str(
        failure.step_failure_data.error
    )


def test_one_load_and_at_most_one_checks_op_run_in_the_run_process() -> None:
    load, checks = SimpleNamespace(tags={}), SimpleNamespace(tags={CHECKS_ONLY_TAG: "true"})
    assert in_process([load])
    assert in_process([checks])
    assert in_process([load, checks])
    assert in_process([checks, checks])
    assert not in_process([load, load])  # two loads overlap in processes of their own
    assert not in_process([load, checks, checks])


def test_a_cli_run_of_one_asset_is_one_step_in_the_run_process(
    dagster_setup: DagsterSetup,
) -> None:
    setup = dagster_setup
    assert materialize_cli(setup, "landing/items").returncode == 0
    assert same_rows(setup.source_uri, setup.sink_uri)
    with cli_instance(setup) as inst:
        record = inst.get_latest_materialization_event(ITEMS_KEY)
        assert record is not None
        logs = inst.all_logs(record.run_id)
    steps = {e.step_key for e in logs if e.step_key}
    assert steps == {STEP}
    checked = [
        e for e in logs if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert {e.step_key for e in checked} == {STEP}
    assert {e.dagster_event.asset_check_evaluation_data.check_name for e in checked} >= {SCHEMA}  # type: ignore[union-attr]
    assert any("Executing steps in process" in (e.message or "") for e in logs)
