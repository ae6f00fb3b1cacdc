"""`on_bad_rows: reject` through `dagster asset materialize`: the good rows land, the bad ones
are kept with the run's id, `pgflow/rows_rejected` is in the materialization and the
`rejected_rows` check passes at `max_rejected` and fails (ERROR) above it."""

from __future__ import annotations

import dagster as dg
import pytest

from pgflow_tests.bindings.conftest import DagsterSetup, empty_dagster_setup
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows
from pgflow_tests.pg import execute

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: events}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: events}}
  strategy:
    mode: full_refresh
    on_bad_rows: reject
    max_rejected: {limit}
"""
KEY = dg.AssetKey(["landing", "events"])


@pytest.fixture
def setup(local_pg, make_database, tmp_path) -> DagsterSetup:  # type: ignore[no-untyped-def]
    setup = empty_dagster_setup(local_pg, make_database, tmp_path)
    execute(
        setup.source_uri,
        "CREATE TABLE public.events (id int, qty text);"
        " INSERT INTO public.events VALUES (1, '1'), (2, 'x'), (3, '-5'), (4, '4')",
    )
    execute(
        setup.sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int PRIMARY KEY,"
        " qty int CHECK (qty >= 0))",
    )
    return setup


def _check(setup: DagsterSetup, name: str = "rejected_rows") -> tuple[str, dg.AssetCheckEvaluation]:
    with instance(setup) as inst:
        key = dg.AssetCheckKey(KEY, name)
        [record] = inst.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert record.event is not None and record.event.dagster_event is not None
        evaluation = record.event.dagster_event.event_specific_data
        assert isinstance(evaluation, dg.AssetCheckEvaluation)
        latest = inst.get_latest_materialization_event(KEY)
        assert latest is not None and latest.asset_materialization is not None
        assert latest.asset_materialization.metadata["pgflow/rows_rejected"].value == 2
        return latest.run_id, evaluation


def test_rejected_rows_through_the_cli(setup: DagsterSetup) -> None:
    (setup.specs / "events.yaml").write_text(SPEC.format(limit=2))
    run = materialize(setup, "landing/events")
    assert run.returncode == 0, run.stderr[-3000:]
    assert rows(setup.sink_uri, "SELECT id, qty FROM landing.events ORDER BY id") == [
        (1, 1),
        (4, 4),
    ]
    run_id, evaluation = _check(setup)
    assert evaluation.passed, evaluation.description
    # text into integer is no drift for a rejecting load: each value is cast, as the load does
    _, schema = _check(setup, "schema")
    assert schema.passed, schema.description
    kept = rows(
        setup.sink_uri,
        "SELECT row->>'id', left(error, 5), run_id, pipeline"
        " FROM landing._pgflow_rejected_events ORDER BY 1",
    )
    assert [r[:2] for r in kept] == [("2", "22P02"), ("3", "23514")]
    assert {r[2] for r in kept} == {run_id}

    (setup.specs / "events.yaml").write_text(SPEC.format(limit=1))
    run = materialize(setup, "landing/events")
    assert run.returncode == 0, run.stderr[-3000:]
    _, evaluation = _check(setup)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.description is not None
    assert "rejected 2 rows, above max_rejected 1" in evaluation.description
    assert "landing._pgflow_rejected_events" in evaluation.description
    assert rows(setup.sink_uri, "SELECT count(*) FROM landing._pgflow_rejected_events") == [(4,)]

    (setup.specs / "events.yaml").write_text(SPEC.format(limit=5))
    run = materialize(setup, "landing/events")
    assert run.returncode == 0, run.stderr[-3000:]
    _, evaluation = _check(setup)
    assert evaluation.passed, evaluation.description
    assert evaluation.description == (
        "the last load of target landing.events rejected 2 rows (max_rejected 5)"
    )
