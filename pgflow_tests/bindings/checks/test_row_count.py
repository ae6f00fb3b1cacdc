"""The row_count_parity check: within the spec's tolerance of the live source, exact after a
consistent snapshot load, a Delta source counted from its log."""

from __future__ import annotations

import dagster as dg
import polars as pl
from deltalake import write_deltalake

from pgflow.bindings.checks.definitions import check_names
from pgflow.bindings.checks.names import ROW_COUNT_PARITY, UNIQUE_KEY
from pgflow_tests.bindings.checks.support import (
    ITEMS_KEY,
    MERGE,
    delta_pipeline,
    figures,
    materialize,
    pipeline,
    project_of,
    run_checks,
)
from pgflow_tests.bindings.conftest import Env
from pgflow_tests.pg import execute


def test_row_count_tolerance_comes_from_the_spec(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline(MERGE, checks={"row_count_tolerance": 0.05}))
    materialize(project, instance)
    # Rows deleted at the source stay in the target of an incremental merge.
    execute(env.source_uri, "DELETE FROM items WHERE id <= 2")  # 2 of 48: 4.2%
    within = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert within.passed, within.description
    assert "within tolerance" in (within.description or "")
    execute(env.source_uri, "DELETE FROM items WHERE id = 3")  # 3 of 47: 6.4%
    outside = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not outside.passed and outside.severity == dg.AssetCheckSeverity.WARN
    # A run of checks alone counts the target, and the ledger of the loads agrees.
    assert figures(outside) == {
        "target_rows_from": "count",
        "ledger_rows": 50,
        "target_rows": 50,
        "source_rows": 47,
        "difference": 3,
        "tolerance": 0.05,
        "mode": "tolerance",
    }


def test_a_source_dropped_since_the_load_leaves_nothing_to_compare(
    env: Env, instance: dg.DagsterInstance
) -> None:
    """The source and the target are counted at the same time; a missing source is a soft
    failure that names it, whichever count ends first."""
    project = project_of(env, pipeline(MERGE))
    materialize(project, instance)
    execute(env.source_uri, "DROP TABLE items")
    parity = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not parity.passed and parity.severity == dg.AssetCheckSeverity.WARN
    assert parity.description == (
        "source table public.items on connection 'shop' not found: nothing to compare the "
        "target with"
    )


def test_row_count_is_exact_after_a_full_refresh(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, pipeline({"mode": "full_refresh"}))
    materialize(project, instance)
    latest = instance.get_latest_materialization_event(ITEMS_KEY)
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["pgflow/source_rows_exact"].value == 50

    # The source moving on does not matter: the target must equal the snapshot it loaded.
    execute(env.source_uri, "DELETE FROM items WHERE id > 40")
    exact = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert exact.passed, exact.description
    assert figures(exact)["mode"] == "exact" and figures(exact)["source_rows"] == 50

    execute(env.sink_uri, "DELETE FROM landing.items WHERE id = 1")  # one row off is too many
    broken = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert figures(broken) == {
        "target_rows_from": "count",
        "ledger_rows": 50,
        "target_rows": 49,
        "source_rows": 50,
        "difference": -1,
        "tolerance": 0.0,
        "mode": "exact",
    }
    # The ledger kept with the load's rows knows better than a mismatch: someone else did it.
    assert broken.description == (
        "target landing.items has 49 rows, but pgflow's state counts 50 after the last load "
        "(-1): rows were written to or deleted from the target outside pgflow. Fix: materialize "
        "the asset with run config reset: true, which rebuilds the target from the source and "
        "counts it anew"
    )


def test_an_exact_mismatch_without_a_ledger_says_the_target_changed(
    env: Env, instance: dg.DagsterInstance
) -> None:
    project = project_of(env, pipeline({"mode": "full_refresh"}))
    materialize(project, instance)
    # A state table of an older pgflow: no count kept with the rows.
    execute(env.sink_uri, "UPDATE _pgflow.pipeline_state SET target_rows = NULL")
    execute(env.sink_uri, "DELETE FROM landing.items WHERE id = 1")
    broken = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.ERROR
    assert "ledger_rows" not in figures(broken) and figures(broken)["target_rows"] == 49
    assert "the source snapshot of the last load had 50" in (broken.description or "")


def test_delta_full_refresh_counts_exactly(env: Env, instance: dg.DagsterInstance) -> None:
    project = project_of(env, delta_pipeline(env, {"mode": "full_refresh"}))
    materialize(project, instance)
    execute(env.source_uri, "DELETE FROM items WHERE id > 45")
    exact = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert exact.passed and figures(exact)["mode"] == "exact", exact.description
    materialize(project, instance)
    assert figures(run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]) == {
        "target_rows_from": "count",  # the Delta log's per-file counts: no data read
        "target_rows": 45,
        "source_rows": 45,
        "difference": 0,
        "tolerance": 0.0,
        "mode": "exact",
    }


def test_a_delta_source_is_counted_from_its_log(env: Env, instance: dg.DagsterInstance) -> None:
    lake = env.lake / "prices"
    frame = pl.DataFrame({"id": range(1, 21), "price": range(20)})
    write_deltalake(str(lake), frame)
    spec = {
        "source": {"type": "delta", "path": str(lake)},
        "sink": {
            "type": "postgres",
            "connection_id": "warehouse",
            "table": {"schema": "landing", "name": "prices"},
            "strategy": MERGE,
        },
    }
    project = project_of(env, spec)
    assert check_names(project.pipelines[0]) == [UNIQUE_KEY, ROW_COUNT_PARITY]  # no schema
    materialize(project, instance)
    assert run_checks(project, instance)[ROW_COUNT_PARITY].passed
    write_deltalake(
        str(lake), pl.DataFrame({"id": range(21, 26), "price": range(5)}), mode="append"
    )
    behind = run_checks(project, instance, ROW_COUNT_PARITY)[ROW_COUNT_PARITY]
    assert not behind.passed and behind.severity == dg.AssetCheckSeverity.WARN
    assert (figures(behind)["target_rows"], figures(behind)["source_rows"]) == (20, 25)
