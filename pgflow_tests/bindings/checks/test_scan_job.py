"""The scan checks' job and schedules: the job runs every scan check (and only those), finds a
target changed behind pgflow's back, and each `checks.scan_schedule` ticks its own pipelines."""

from __future__ import annotations

import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from pgflow.bindings.checks.names import (
    ROW_COUNT_PARITY,
    SCAN_JOB,
    UNIQUE_KEY,
    VALUE_PARITY,
)
from pgflow.bindings.checks.scan_job import scan_schedule_name
from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.model import ScheduleSpec
from pgflow_tests.bindings.checks.support import (
    BY_ADDED,
    ITEMS_KEY,
    UPSERT,
    figures,
    materialize,
    pipeline,
    project_of,
)
from pgflow_tests.bindings.conftest import REPO, DagsterSetup, Env
from pgflow_tests.bindings.test_definitions_cli import DAGSTER
from pgflow_tests.bindings.test_definitions_cli import instance as cli_instance
from pgflow_tests.bindings.test_definitions_cli import materialize as materialize_cli
from pgflow_tests.pg import execute

SCANS = {UNIQUE_KEY, ROW_COUNT_PARITY, VALUE_PARITY}
# The same row written into the source and, by hand, into the target: the counts and values
# still agree, only the ledger of pgflow's loads knows the target changed.
ROW_99 = "INSERT INTO {} (id, name, price, added) VALUES (99, 'x', 1, '2026-01-01T00:00Z')"


def run_scan_job(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> dict[str, dg.AssetCheckEvaluation]:
    result = defs.resolve_job_def(SCAN_JOB).execute_in_process(instance=instance)
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_the_scan_job_runs_the_scan_checks_and_fails_on_a_target_changed_outside_pgflow(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline(UPSERT, source={"options": BY_ADDED}, freshness="1h"))
    defs = build_definitions(project)
    materialize(project, instance)
    checked = run_scan_job(defs, instance)
    assert set(checked) == SCANS  # not the cheap schema and freshness checks
    assert all(e.passed for e in checked.values()), {n: e.description for n, e in checked.items()}
    assert figures(checked[ROW_COUNT_PARITY])["target_rows_from"] == "count"
    assert figures(checked[ROW_COUNT_PARITY])["ledger_rows"] == 50

    execute(env.source_uri, ROW_99.format("items"))
    execute(env.sink_uri, ROW_99.format("landing.items"))
    checked = run_scan_job(defs, instance)
    assert checked[VALUE_PARITY].passed and checked[UNIQUE_KEY].passed
    parity = checked[ROW_COUNT_PARITY]
    assert not parity.passed and parity.severity == dg.AssetCheckSeverity.ERROR
    assert (figures(parity)["target_rows"], figures(parity)["ledger_rows"]) == (51, 50)
    assert parity.description == (
        "target landing.items has 51 rows, but pgflow's state counts 50 after the last load "
        "(+1): rows were written to or deleted from the target outside pgflow. Fix: "
        "materialize the asset with run config reset: true, which rebuilds the target from "
        "the source and counts it anew"
    )
    # The fix it names: a reset counts the rebuilt target, and the job agrees again.
    dg.materialize(
        [pipeline_asset(project.pipelines[0])],
        instance=instance,
        resources=defs.resources,
        run_config={"ops": {"landing__items": {"config": {"reset": True}}}},
    )
    assert all(e.passed for e in run_scan_job(defs, instance).values())


def test_each_scan_schedule_ticks_the_scan_checks_of_its_pipelines(
    env: Env, instance: dg.DagsterInstance
) -> None:
    berlin = {"cron": "0 1 * * 0", "timezone": "Europe/Berlin"}
    specs = [
        {**pipeline(UPSERT), "name": "daily"},
        {
            **pipeline(UPSERT, sink={"table": {"schema": "landing", "name": "weekly"}}),
            "name": "weekly",
            "checks": {"scan_schedule": berlin},
        },
        {
            **pipeline(UPSERT, sink={"table": {"schema": "landing", "name": "by_hand"}}),
            "name": "by_hand",
            "checks": {"scan_schedule": False},
        },
        {  # a plain append has only the schema check: no scan, no schedule
            **pipeline(
                {"mode": "incremental_append"}, sink={"table": {"schema": "landing", "name": "log"}}
            ),
            "name": "log",
            "checks": {"scan_schedule": "*/5 * * * *"},
        },
    ]
    defs = build_definitions(project_of(env, *specs))

    def keys(*tables: str) -> set[dg.AssetCheckKey]:
        return {dg.AssetCheckKey(dg.AssetKey(["landing", t]), n) for t in tables for n in SCANS}

    job = defs.resolve_job_def(SCAN_JOB)
    assert job.asset_layer.asset_graph.asset_check_keys == keys("items", "weekly", "by_hand")
    assert job.asset_layer.executable_asset_keys == set()  # checks only, no load

    weekly_name = scan_schedule_name(ScheduleSpec("0 1 * * 0", "Europe/Berlin"))
    scan_schedules = {s.name: s for s in defs.schedules if s.name.startswith(SCAN_JOB)}
    assert set(scan_schedules) == {"pgflow_scan_checks_schedule", weekly_name}
    daily, weekly = scan_schedules["pgflow_scan_checks_schedule"], scan_schedules[weekly_name]
    assert (daily.cron_schedule, daily.execution_timezone) == ("0 3 * * *", "UTC")
    assert (weekly.cron_schedule, weekly.execution_timezone) == ("0 1 * * 0", "Europe/Berlin")
    for schedule in (daily, weekly):
        assert schedule.job_name == SCAN_JOB
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    at = datetime(2026, 1, 4, 3, tzinfo=ZoneInfo("UTC"))
    for schedule, tables in ((daily, ("items",)), (weekly, ("weekly",))):
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
        assert set(request.asset_check_keys or ()) == keys(*tables)


def test_without_scan_schedules_the_job_stays_for_runs_by_hand(
    env: Env, instance: dg.DagsterInstance
) -> None:
    defs = build_definitions(project_of(env, pipeline(UPSERT, checks={"scan_schedule": False})))
    assert not [s for s in defs.schedules if s.name.startswith(SCAN_JOB)]
    assert defs.resolve_job_def(SCAN_JOB).name == SCAN_JOB


def test_the_scan_job_runs_by_hand_from_the_cli(dagster_setup: DagsterSetup) -> None:
    """`dagster job execute -m pgflow.definitions -j pgflow_scan_checks`, as the README says."""
    setup = dagster_setup  # landing.items, a full_refresh spec: row_count_parity, value_parity
    assert materialize_cli(setup, "landing/items").returncode == 0
    done = subprocess.run(
        [DAGSTER, "job", "execute", "-m", "pgflow.definitions", "-j", SCAN_JOB],
        env=setup.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with cli_instance(setup) as inst:
        for name in (ROW_COUNT_PARITY, VALUE_PARITY):
            record = inst.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(ITEMS_KEY, name)
            )
            assert record is not None and record.event is not None
            run = inst.get_run_by_id(record.event.run_id)
            assert run is not None and run.job_name == SCAN_JOB
            evaluation = record.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
            assert evaluation.passed, evaluation.description
