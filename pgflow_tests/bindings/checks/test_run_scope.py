"""Which checks a materialization runs: the cheap ones, never the scan checks (skipped, and
nothing more reads the target), except after a whole load where the spec asks for them
(`checks.scan_after_load`); `row_count_parity` runs after a snapshot load from the ledger."""

from __future__ import annotations

import asyncio

import dagster as dg
from dagster._core.loader import LoadingContextForTest
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionResolvedStatus,
)

from pgflow.bindings.checks.names import (
    FRESHNESS,
    ROW_COUNT_PARITY,
    SCHEMA,
    UNIQUE_KEY,
    VALUE_PARITY,
)
from pgflow_tests.bindings.checks.support import (
    BY_ADDED,
    ITEMS_KEY,
    UPSERT,
    evaluated,
    figures,
    load_and_check,
    materialize,
    pipeline,
    project_of,
    seq_scans,
)
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute

EVERY = {UNIQUE_KEY, ROW_COUNT_PARITY, SCHEMA, FRESHNESS, VALUE_PARITY}


def change_one_and_add_one(env: Env, changed: int, added: int) -> None:
    execute(
        env.source_uri,
        "UPDATE items SET price = price + 1, added = clock_timestamp() WHERE id = %s",
        (changed,),
    )
    execute(env.source_uri, "INSERT INTO items (id, name, price) VALUES (%s, 'new', 1)", (added,))


def test_an_incremental_run_skips_the_scan_checks_and_scans_nothing_more(
    env: Env, instance: dg.DagsterInstance
) -> None:
    spec = pipeline(
        UPSERT, source={"options": BY_ADDED}, freshness="1h", checks={"scan_after_load": True}
    )
    project = project_of(env, spec)
    # The first load reads the whole table and creates the target: with scan_after_load every
    # check runs.
    first = load_and_check(project, instance)
    assert set(evaluated(first)) == EVERY
    assert all(e.passed for e in evaluated(first).values())
    assert figures(evaluated(first)[ROW_COUNT_PARITY])["target_rows_from"] == "ledger"

    # What an incremental load alone scans of the target, then the same load with its checks.
    change_one_and_add_one(env, changed=7, added=51)
    before = seq_scans(env.sink_uri, "landing.items")
    materialize(project, instance)
    load_alone = seq_scans(env.sink_uri, "landing.items") - before
    change_one_and_add_one(env, changed=8, added=52)
    before = seq_scans(env.sink_uri, "landing.items")
    result = load_and_check(project, instance)
    assert seq_scans(env.sink_uri, "landing.items") - before == load_alone
    # With dagster/row_count from the ledger, the whole run reads the target by its key only.
    assert load_alone == 0

    assert result.success
    planned = {
        e.dagster_event.asset_check_planned_data.asset_check_key.name
        for e in instance.all_logs(
            result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        )
        if e.dagster_event
    }
    assert planned == EVERY  # selected, as every materialization selects its asset's checks
    ran = evaluated(result)
    assert set(ran) == {UNIQUE_KEY, SCHEMA, FRESHNESS}
    assert all(e.passed for e in ran.values()), {n: e.description for n, e in ran.items()}
    assert figures(ran[UNIQUE_KEY])["enforced_by"] == "items_pkey"  # the catalog, not a scan
    for name in (ROW_COUNT_PARITY, VALUE_PARITY):
        key = dg.AssetCheckKey(ITEMS_KEY, name)
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert (record.run_id, record.status) == (
            result.run_id,
            AssetCheckExecutionRecordStatus.PLANNED,
        )
        # What the UI shows: the run succeeded without the check's result, so it was skipped.
        status = asyncio.run(record.resolve_status(LoadingContextForTest(instance)))
        assert status == AssetCheckExecutionResolvedStatus.SKIPPED
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    # scan_after_load never reaches incremental loads.
    assert (
        "landing_items: row_count_parity, value_parity not run (skipped) after an incremental "
        "load: they read whole tables; the job pgflow_scan_checks runs them (0 3 * * *)"
    ) in logs


def test_a_full_load_leaves_the_scans_to_their_schedule_and_counts_from_the_ledger(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline({"mode": "full_refresh"}))
    load_and_check(project, instance)
    execute(env.source_uri, "DELETE FROM items WHERE id > 45")
    result = load_and_check(project, instance)
    ran = evaluated(result)
    assert set(ran) == {ROW_COUNT_PARITY, SCHEMA}
    assert all(e.passed for e in ran.values()), {n: e.description for n, e in ran.items()}
    # The load's own ledger against its snapshot's rows: exact, and no count(*) of the target.
    assert figures(ran[ROW_COUNT_PARITY]) == {
        "target_rows_from": "ledger",
        "target_rows": 45,
        "source_rows": 45,
        "difference": 0,
        "tolerance": 0.0,
        "mode": "exact",
    }
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert (
        "landing_items: value_parity not run (skipped) after a whole load: it reads whole "
        "tables; the job pgflow_scan_checks runs it (0 3 * * *); `checks.scan_after_load: "
        "true` runs it after whole loads too"
    ) in logs


def test_scan_after_load_runs_every_check_after_a_full_load(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline({"mode": "full_refresh"}, checks={"scan_after_load": True}))
    load_and_check(project, instance)
    execute(env.source_uri, "DELETE FROM items WHERE id > 45")
    ran = evaluated(load_and_check(project, instance))
    assert set(ran) == {ROW_COUNT_PARITY, SCHEMA, VALUE_PARITY}
    assert all(e.passed for e in ran.values()), {n: e.description for n, e in ran.items()}
    assert figures(ran[ROW_COUNT_PARITY])["target_rows_from"] == "ledger"
    assert figures(ran[VALUE_PARITY])["target_rows"] == 45  # hashed every row: a scan
