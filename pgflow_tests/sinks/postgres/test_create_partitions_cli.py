"""create_partitions through `dagster asset materialize`: a refused run names the values and
the fix; with create_partitions the run creates the partitions and loads."""

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
    mode: incremental_merge
    unique_key: [id, day]
{extra}
"""


@pytest.fixture
def setup(local_pg, make_database, tmp_path) -> DagsterSetup:  # type: ignore[no-untyped-def]
    setup = empty_dagster_setup(local_pg, make_database, tmp_path)
    execute(
        setup.source_uri,
        "CREATE TABLE public.events (id int, day date, what text);"
        " INSERT INTO public.events VALUES (1, '2024-01-31', 'a'), (2, '2024-12-31', 'b'),"
        " (3, '2025-01-01', 'c')",
    )
    execute(
        setup.sink_uri,
        "CREATE SCHEMA landing; CREATE TABLE landing.events (id int, day date, what text,"
        " PRIMARY KEY (id, day)) PARTITION BY RANGE (day);"
        " CREATE TABLE landing.events_202401 PARTITION OF landing.events"
        " FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')",
    )
    return setup


def test_partitions_are_created_by_the_run_or_the_run_names_them(setup: DagsterSetup) -> None:
    (setup.specs / "events.yaml").write_text(SPEC.format(extra=""))
    refused = materialize(setup, "landing/events")
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "has no partition in landing.events: '2024-12-31', '2025-01-01'" in output
    assert "create_partitions: true" in output
    assert rows(setup.sink_uri, "SELECT count(*) FROM landing.events") == [(0,)]

    extra = "    create_partitions: true\n    partition_interval: month"
    (setup.specs / "events.yaml").write_text(SPEC.format(extra=extra))
    run = materialize(setup, "landing/events")
    assert run.returncode == 0, run.stderr[-3000:]
    assert rows(
        setup.sink_uri, "SELECT id, tableoid::regclass::text FROM landing.events ORDER BY id"
    ) == [
        (1, "landing.events_202401"),
        (2, "landing.events_202412"),
        (3, "landing.events_202501"),
    ]
    # The statements that created them are in the run's SQL log (pgflow/sql).
    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["landing", "events"]))
        assert event is not None and event.asset_materialization is not None
        statements = str(event.asset_materialization.metadata["pgflow/sql"].value)
    assert 'CREATE TABLE "landing"."events_202412" PARTITION OF "landing"."events"' in statements
    assert "FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')" in statements
