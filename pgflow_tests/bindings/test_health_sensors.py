"""Slot health of a real CDC pipeline (its check and its sensor) through a slot's life:
not created yet, healthy, retaining WAL, dropped, invalidated; and the freshness sensor."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest
import yaml

from pgflow.bindings.checks.names import FRESHNESS, ROW_COUNT_PARITY, SCHEMA, SLOT_HEALTH
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.health import health_sensors
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow.config.model import Project
from pgflow.connections.resource import PostgresConnections
from pgflow_tests.bindings.checks.support import (
    ITEMS_KEY,
    MERGE,
    cdc_project,
    figures,
    materialize,
    pipeline,
    run_checks,
)
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for

SLOT_CHECK = dg.AssetCheckKey(ITEMS_KEY, SLOT_HEALTH)


@pytest.fixture
def slot(env: Env) -> Iterator[str]:
    name = slot_name_for(env.source_uri)
    yield name
    drop_slots(env.source_uri, name)


def tick(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance
) -> tuple[list[dg.RunRequest], str | None]:
    context = dg.build_sensor_context(instance=instance, resources={"pg": PostgresConnections()})
    data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message


def slot_sensor(project: Project) -> dg.SensorDefinition:
    (sensor,) = health_sensors(project)  # no pipeline has freshness: only the slot sensor
    assert sensor.name == "pgflow_slot_health_shop"
    return sensor


def restart_lsn(env: Env, slot: str) -> str:
    [(lsn,)] = fetch(
        env.source_uri,
        "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    return lsn


def write_wal(env: Env, kilobytes: int = 300) -> None:
    """WAL the slot has to keep: writes to any table of the database count."""
    execute(env.source_uri, "CREATE TABLE IF NOT EXISTS noise (n int, pad text)")
    execute(
        env.source_uri,
        "INSERT INTO noise SELECT g, repeat('x', 1000) FROM generate_series(1, %s) g",
        (kilobytes,),
    )


def test_slot_health_through_the_slots_life(
    env: Env, slot: str, instance: dg.DagsterInstance
) -> None:
    project = cdc_project(env, slot)
    sensor = slot_sensor(project)
    assert sensor.minimum_interval_seconds == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    # Before the first run there is no slot, and nothing is wrong yet.
    before = run_checks(project, instance, SLOT_HEALTH)[SLOT_HEALTH]
    assert not before.passed and before.severity == dg.AssetCheckSeverity.WARN
    assert before.description == (
        f"replication slot {slot} does not exist yet: the first materialization creates it"
    )
    assert tick(sensor, instance) == ([], f"slots: landing_items: slot {slot} missing")

    materialize(project, instance)
    execute(env.source_uri, "DELETE FROM items WHERE id > 47")
    materialize(project, instance)  # the deletes stamp _deleted_at in the target
    found = run_checks(project, instance)
    assert all(e.passed for e in found.values()), {n: e.description for n, e in found.items()}
    health = figures(found[SLOT_HEALTH])
    assert health["exists"] is True and health["wal_status"] in ("reserved", "extended")
    assert health["retained_wal_warn_bytes"] == 1024**3 and health["active"] is False
    assert str(health["confirmed_flush_lsn"]).count("/") == 1
    # Soft-deleted rows are not counted, and the soft-delete column is pgflow's own.
    parity = figures(found[ROW_COUNT_PARITY])
    assert (parity["target_rows"], parity["source_rows"]) == (47, 47)
    assert fetch(env.sink_uri, "SELECT count(*) FROM landing.items") == [(50,)]
    assert found[SCHEMA].passed
    requests, skipped = tick(sensor, instance)
    assert requests == [] and skipped is not None
    assert skipped.startswith(f"slots: landing_items: slot {slot} healthy, retains ")

    assert_a_retaining_slot_warns_and_is_drained(env, slot, instance)

    # Dropped behind pgflow's back: an ERROR with the fix, and the check run once per incident.
    drop_slots(env.source_uri, slot)
    missing = run_checks(project, instance, SLOT_HEALTH)[SLOT_HEALTH]
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    text = missing.description or ""
    assert text.startswith(f"replication slot {slot} does not exist on connection 'shop'")
    assert "materialize the asset with run config reset: true" in text
    assert "`pgflow cdc cleanup`" in text
    assert figures(missing)["exists"] is False
    (request,), _ = tick(sensor, instance)
    latest = instance.get_latest_materialization_event(ITEMS_KEY)
    assert latest is not None
    assert request.run_key == f"slot:{slot}:missing:{latest.timestamp:.6f}"
    assert request.asset_selection == [] and request.asset_check_keys == [SLOT_CHECK]
    assert tick(sensor, instance)[0][0].run_key == request.run_key  # the same incident

    assert_the_request_runs_only_the_slot_check(project, sensor, request, instance)

    # A reset re-creates the slot; the incident is over.
    materialize_reset(project, instance)
    assert run_checks(project, instance, SLOT_HEALTH)[SLOT_HEALTH].passed


def assert_a_retaining_slot_warns_and_is_drained(
    env: Env, slot: str, instance: dg.DagsterInstance
) -> None:
    """Over the (tiny) threshold: the check warns, the sensor asks for a draining run."""
    tiny = cdc_project(env, slot, checks={"retained_wal_warn": "1kB"})
    write_wal(env)
    retaining = run_checks(tiny, instance, SLOT_HEALTH)[SLOT_HEALTH]
    assert not retaining.passed and retaining.severity == dg.AssetCheckSeverity.WARN
    assert f"replication slot {slot} pins " in (retaining.description or "")
    assert " kB of WAL on connection 'shop' (warning above 1.0 kB)" in (retaining.description or "")
    assert "raise checks.retained_wal_warn" in (retaining.description or "")
    assert int(figures(retaining)["retained_wal_bytes"]) > 300 * 1000  # type: ignore[arg-type]
    (drain,), _ = tick(slot_sensor(tiny), instance)
    assert drain.run_key == f"slot:{slot}:{restart_lsn(env, slot)}"
    assert drain.asset_selection == [ITEMS_KEY] and drain.asset_check_keys is None
    assert drain.tags["pgflow/pipeline"] == "landing_items"
    assert drain.tags["pgflow/source"] == "shop"


def assert_the_request_runs_only_the_slot_check(
    project: Project,
    sensor: dg.SensorDefinition,
    request: dg.RunRequest,
    instance: dg.DagsterInstance,
) -> None:
    """What the daemon does with the request: a run of just that check, in the sensor's job."""
    job = build_definitions(project).get_repository_def().get_job(sensor.job_name)
    run = job.get_subset(asset_selection=set(), asset_check_selection={SLOT_CHECK})
    result = run.execute_in_process(instance=instance, tags=request.tags)
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [
        (SLOT_HEALTH, False)
    ]
    record = instance.get_latest_asset_check_evaluation_record(SLOT_CHECK)
    assert record is not None and record.run_id == result.run_id


def materialize_reset(project: Project, instance: dg.DagsterInstance) -> None:
    (spec,) = project.pipelines
    result = dg.materialize(
        [pipeline_asset(spec)],
        instance=instance,
        resources=build_definitions(project).resources,
        run_config={"ops": {"landing__items": {"config": {"reset": True}}}},
    )
    assert result.success


@pytest.fixture
def small_slot_wal_limit(env: Env) -> Iterator[None]:
    """max_slot_wal_keep_size = 1MB on the (per-worker) cluster, for one test."""
    execute(env.source_uri, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    execute(env.source_uri, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        execute(env.source_uri, "ALTER SYSTEM RESET max_slot_wal_keep_size")
        execute(env.source_uri, "SELECT pg_reload_conf()")


def invalidate(env: Env, slot: str) -> None:
    """Push the slot's WAL past max_slot_wal_keep_size and checkpoint: the server removes the
    WAL and marks the slot lost, as it would on a busy database with a stalled pipeline."""
    with psycopg.connect(env.source_uri, autocommit=True) as conn:
        for _ in range(4):
            conn.execute("CREATE TABLE IF NOT EXISTS noise (n int); INSERT INTO noise VALUES (1)")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")
    [(status,)] = fetch(
        env.source_uri, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )
    assert status == "lost"


def test_an_invalidated_slot_is_an_error_with_the_fix(
    env: Env, slot: str, instance: dg.DagsterInstance, small_slot_wal_limit: None
) -> None:
    project = cdc_project(env, slot)
    materialize(project, instance)
    invalidate(env, slot)
    found = run_checks(project, instance, SLOT_HEALTH)[SLOT_HEALTH]
    assert not found.passed and found.severity == dg.AssetCheckSeverity.ERROR
    text = found.description or ""
    assert text.startswith(f"replication slot {slot} on connection 'shop' was invalidated (")
    assert "reset: true" in text and "replaces the slot" in text
    assert figures(found)["wal_status"] == "lost"
    (request,), _ = tick(slot_sensor(project), instance)
    flushed = figures(found)["confirmed_flush_lsn"]
    assert request.run_key == f"slot:{slot}:invalidated:{flushed}"
    assert request.asset_selection == [] and request.asset_check_keys == [SLOT_CHECK]

    # The fix the check names works: a reset replaces the lost slot and re-snapshots.
    materialize_reset(project, instance)
    assert run_checks(project, instance, SLOT_HEALTH)[SLOT_HEALTH].passed


def test_the_freshness_sensor_runs_the_check_once_per_state(
    env: Env, instance: dg.DagsterInstance
) -> None:
    windows = {"warn_after": "1m", "fail_after": "1h"}
    (env.specs / "pipelines.yaml").write_text(yaml.safe_dump(pipeline(MERGE, freshness=windows)))
    project = load_project(env.specs)
    check = dg.AssetCheckKey(ITEMS_KEY, FRESHNESS)

    def sensor_at(now: float) -> dg.SensorDefinition:
        (sensor,) = health_sensors(project, clock=lambda: now)  # no CDC: no slot sensor
        assert sensor.name == "pgflow_freshness"
        return sensor

    (never,), _ = tick(sensor_at(1e9), instance)
    assert never.run_key == "freshness:landing_items:fail:never"
    assert never.asset_selection == [] and never.asset_check_keys == [check]

    materialize(project, instance)
    latest = instance.get_latest_materialization_event(ITEMS_KEY)
    assert latest is not None
    last = latest.timestamp
    assert tick(sensor_at(last + 30), instance) == (
        [],
        "landing_items: fresh, last materialized 30.0s ago (warn after 1m, fail after 1h)",
    )
    (warn,), _ = tick(sensor_at(last + 61), instance)
    assert warn.run_key == f"freshness:landing_items:warn:{last:.6f}"
    assert warn.asset_check_keys == [check] and warn.asset_selection == []
    (fail,), _ = tick(sensor_at(last + 7200), instance)
    assert fail.run_key == f"freshness:landing_items:fail:{last:.6f}"

    # The request runs in the sensor's job: only the freshness check, recorded on the asset.
    sensor = sensor_at(last + 7200)
    job = build_definitions(project).get_repository_def().get_job(sensor.job_name)
    result = job.get_subset(
        asset_selection=set(), asset_check_selection={check}
    ).execute_in_process(instance=instance)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == FRESHNESS


def test_sensors_only_where_they_have_something_to_watch(env: Env, slot: str) -> None:
    (env.specs / "pipelines.yaml").write_text(yaml.safe_dump(pipeline(MERGE)))
    assert health_sensors(load_project(env.specs)) == []
    project = cdc_project(env, slot, freshness="2h")
    names = sorted(s.name for s in health_sensors(project))
    assert names == ["pgflow_freshness", "pgflow_slot_health_shop"]
    defs = build_definitions(project)
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.get_repository_def().sensor_defs} >= set(names)
