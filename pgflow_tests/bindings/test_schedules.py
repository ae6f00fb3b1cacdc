"""Schedules from specs, ticked against a real Dagster instance and run for real: a pipeline's
own schedule, a group's schedule, and a time-partitioned asset's latest partition."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.schedules import pipeline_schedules
from pgflow.config.loader import load_project
from pgflow_tests.bindings.conftest import DagsterSetup, items_table
from pgflow_tests.bindings.test_definitions_cli import rows
from pgflow_tests.config.test_wildcards import Lister, load, wildcard
from pgflow_tests.pg import execute

SPECS = """
groups:
  shop:
    schedule: {cron: "0 2 * * *", timezone: UTC}
pipelines:
  - source: {type: postgres, connection_id: shop, table: {schema: public, name: items}}
    sink:
      type: postgres
      connection_id: warehouse
      table: {schema: landing, name: items}
      strategy: {mode: full_refresh}
  - source: {type: postgres, connection_id: shop, table: {schema: public, name: items}}
    sink:
      type: postgres
      connection_id: warehouse
      table: {schema: landing, name: items_hourly}
      strategy: {mode: incremental_merge, unique_key: [id]}
    name: items_hourly
    group: hourly
    schedule: {cron: "0 * * * *", timezone: UTC}
  - source: {type: postgres, connection_id: shop, table: {schema: public, name: events}}
    sink:
      type: postgres
      connection_id: warehouse
      table: {schema: landing, name: events}
      strategy: {mode: partition_replace, partition_column: day}
    name: events
    partitions: {type: daily, start: 2026-01-01, timezone: Europe/Berlin}
"""
SAME_ITEMS = "SELECT id, name, price FROM {} ORDER BY id"


@pytest.fixture
def scheduled(dagster_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    setup = dagster_setup
    items_table(setup.source_uri, rows=40)
    execute(
        setup.source_uri,
        "CREATE TABLE events (id int PRIMARY KEY, day date NOT NULL);"
        "INSERT INTO events SELECT g, '2026-01-01'::date + g % 10 FROM generate_series(1, 100) g",
    )
    for path in setup.specs.glob("*.yaml"):
        path.unlink()
    (setup.specs / "shop.yaml").write_text(SPECS)
    for name, value in setup.env.items():
        monkeypatch.setenv(name, value)
    return build_definitions(load_project(setup.specs))


def tick(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, at: datetime
) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    )
    data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def run(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(defs.resolve_schedule_def(name).job_name)
    return job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        asset_selection=request.asset_selection,
    )


def test_the_names_and_targets_of_the_schedules(scheduled: dg.Definitions) -> None:
    names = {s.name for s in scheduled.schedules}
    # The group's partitioned asset gets its own schedule from the group's cron; the scan
    # checks theirs (test_scan_job.py).
    assert names == {
        "items_hourly_schedule",
        "shop_group_schedule",
        "events_schedule",
        "pgflow_scan_checks_schedule",
    }
    group_job = scheduled.resolve_job_def(
        scheduled.resolve_schedule_def("shop_group_schedule").job_name
    )
    assert group_job.asset_layer.executable_asset_keys == {dg.AssetKey(["landing", "items"])}
    events = scheduled.resolve_schedule_def("events_schedule")
    assert (events.cron_schedule, events.execution_timezone) == ("0 2 * * *", "UTC")


def test_a_group_tick_and_a_pipeline_tick_load_their_assets(
    scheduled: dg.Definitions, dagster_setup: DagsterSetup
) -> None:
    setup = dagster_setup
    at = datetime(2026, 1, 5, 2, tzinfo=ZoneInfo("UTC"))
    with dg.instance_for_test() as instance:
        for name in ("shop_group_schedule", "items_hourly_schedule"):
            [request] = tick(scheduled, name, instance, at)
            assert run(scheduled, name, instance, request).success
    # Runs carry tags for dagster.yaml's per-source run limits.
    assert scheduled.resolve_schedule_def("items_hourly_schedule").tags == {
        "pgflow/pipeline": "items_hourly",
        "pgflow/source": "shop",
    }
    source = rows(setup.source_uri, SAME_ITEMS.format("public.items"))
    assert rows(setup.sink_uri, SAME_ITEMS.format("landing.items")) == source
    assert rows(setup.sink_uri, SAME_ITEMS.format("landing.items_hourly")) == source


def test_a_partitioned_tick_runs_the_latest_complete_day(
    scheduled: dg.Definitions, dagster_setup: DagsterSetup
) -> None:
    setup = dagster_setup
    # 02:00 UTC on Jan 5th is 03:00 in Berlin: the latest complete Berlin day is Jan 4th.
    at = datetime(2026, 1, 5, 2, tzinfo=ZoneInfo("UTC"))
    with dg.instance_for_test() as instance:
        [request] = tick(scheduled, "events_schedule", instance, at)
        assert request.partition_key == "2026-01-04"
        assert run(scheduled, "events_schedule", instance, request).success
        assert instance.get_materialized_partitions(dg.AssetKey(["landing", "events"])) == {
            "2026-01-04"
        }
    loaded = "SELECT id, day FROM {} WHERE day = '2026-01-04' ORDER BY id"
    assert rows(setup.sink_uri, "SELECT DISTINCT day::text FROM landing.events") == [
        ("2026-01-04",)
    ]
    assert rows(setup.sink_uri, loaded.format("landing.events")) == rows(
        setup.source_uri, loaded.format("events")
    )


def test_before_the_first_partition_ends_the_tick_skips(scheduled: dg.Definitions) -> None:
    at = datetime(2025, 12, 31, 2, tzinfo=ZoneInfo("UTC"))
    with dg.instance_for_test() as instance:
        schedule = scheduled.resolve_schedule_def("events_schedule")
        data = schedule.evaluate_tick(
            dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=at,
                repository_def=scheduled.get_repository_def(),
            )
        )
    assert not data.run_requests
    assert "no partition has ended yet" in (data.skip_message or "")


def test_the_tables_of_a_schema_wide_spec_share_its_schedule(tmp_path: Path) -> None:
    spec = wildcard(
        schedule={"cron": "0 3 * * *", "timezone": "UTC"},
        tables={"orders": {"schedule": {"cron": "0 * * * *"}}},
    )
    project = load(tmp_path, spec, Lister())
    schedules = {s.name: s for s in pipeline_schedules(project)}
    assert sorted(schedules) == ["landing_orders_schedule", "landing_tables_schedule"]
    shared = schedules["landing_tables_schedule"]
    assert shared.cron_schedule == "0 3 * * *"
    job = shared.target.resolvable_to_job
    assert not isinstance(job, dg.JobDefinition)
    specs = [dg.AssetSpec(list(p.asset_key)) for p in project.pipelines]
    selected = job.selection.resolve([dg.AssetsDefinition(specs=specs)])
    assert {k.path[-1] for k in selected} == {
        "orderlines",
        "order_lines",
        "events",
        "grosse_u8a02_u55ae",
    }
