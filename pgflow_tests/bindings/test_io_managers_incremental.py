"""Incremental pipelines through `dagster asset materialize`: positions in metadata, a reset
from run config, and a cursor the table cannot serve reported against the spec."""

from __future__ import annotations

import json

import dagster as dg

from pgflow_tests.bindings.conftest import DagsterSetup, items_table
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows
from pgflow_tests.pg import execute

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {options}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: {target}}}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""
COLUMN = "{incremental_strategy: column, incremental_column: added}"
XMIN = "{incremental_strategy: xmin}"
SAME = "SELECT id, name, price, added FROM {} ORDER BY id"


def write_specs(setup: DagsterSetup, **pipelines: str) -> None:
    for path in setup.specs.glob("*.yaml"):
        path.unlink()
    for target, options in pipelines.items():
        spec = SPEC.format(options=options, target=target)
        (setup.specs / f"{target}.yaml").write_text(spec)


def metadata_of(setup: DagsterSetup, target: str) -> dict[str, object]:
    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["landing", target]))
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_positions_advance_run_by_run_and_show_in_metadata(dagster_setup: DagsterSetup) -> None:
    setup = dagster_setup
    items_table(setup.source_uri, rows=200)
    # One insert stamps every row alike; spread them so the cursor has a last row.
    execute(
        setup.source_uri, "UPDATE items SET added = '2026-01-01'::timestamptz + id * '1s'::interval"
    )
    write_specs(setup, by_cursor=COLUMN, by_xmin=XMIN)
    first = materialize(setup, "landing/by_cursor,landing/by_xmin")
    assert first.returncode == 0, first.stderr[-3000:]
    cursor = metadata_of(setup, "by_cursor")
    high_water = rows(setup.source_uri, "SELECT max(added)::text FROM items")[0][0]
    assert cursor["pgflow/read"] == "full read (first run: no stored position)"
    assert (cursor["pgflow/cursor_before"], cursor["pgflow/rows_read"]) == ("", 200)
    assert cursor["pgflow/cursor_after"] == high_water
    assert (cursor["pgflow/rows_written"], cursor["pgflow/cursor_boundary_keys"]) == (200, 1)

    execute(setup.source_uri, "UPDATE items SET price = price + 1, added = now() WHERE id <= 3")
    second = materialize(setup, "landing/by_cursor,landing/by_xmin")
    assert second.returncode == 0, second.stderr[-3000:]
    cursor_run, xmin_run = metadata_of(setup, "by_cursor"), metadata_of(setup, "by_xmin")
    assert cursor_run["pgflow/cursor_before"] == cursor["pgflow/cursor_after"]
    # The 3 updated rows; row 200, on the old high-water mark, was applied and is not read.
    assert cursor_run["pgflow/rows_read"] == 3 and cursor_run["pgflow/rows_applied"] == 3
    # All 3 share one now(): the next run skips them (cursor_boundary).
    assert cursor_run["pgflow/cursor_boundary_keys"] == 3
    assert "pgflow/cursor_boundary_keys" not in xmin_run
    assert xmin_run["pgflow/rows_read"] == 3
    assert int(xmin_run["pgflow/cursor_after"]) > int(xmin_run["pgflow/cursor_before"])
    source = rows(setup.source_uri, SAME.format("items"))
    for target in ("by_cursor", "by_xmin"):
        assert rows(setup.sink_uri, SAME.format(f"landing.{target}")) == source


def test_reset_from_run_config_rebuilds_the_target(dagster_setup: DagsterSetup) -> None:
    setup = dagster_setup
    items_table(setup.source_uri, rows=50)
    write_specs(setup, by_xmin=XMIN)
    assert materialize(setup, "landing/by_xmin").returncode == 0
    execute(setup.source_uri, "DELETE FROM items WHERE id > 40")  # xmin cannot see deletes
    assert materialize(setup, "landing/by_xmin").returncode == 0
    assert rows(setup.sink_uri, "SELECT count(*) FROM landing.by_xmin") == [(50,)]

    config = {"ops": {"landing__by_xmin": {"config": {"reset": True}}}}
    reset = materialize(setup, "landing/by_xmin", "--config-json", json.dumps(config))
    assert reset.returncode == 0, reset.stderr[-3000:]
    assert metadata_of(setup, "by_xmin")["pgflow/read"] == "full read (reset requested)"
    assert rows(setup.sink_uri, SAME.format("landing.by_xmin")) == rows(
        setup.source_uri, SAME.format("items")
    )


def test_a_cursor_column_the_table_lacks_fails_naming_spec_and_field(
    dagster_setup: DagsterSetup,
) -> None:
    setup = dagster_setup
    items_table(setup.source_uri, rows=5)
    write_specs(setup, broken="{incremental_strategy: column, incremental_column: changed_at}")
    result = materialize(setup, "landing/broken")
    assert result.returncode != 0
    spec = setup.specs / "broken.yaml"
    assert (
        f"({spec}): field 'source.options.incremental_column': 'changed_at' is not a column "
        "of public.items; name one of: id, name, price, added"
    ) in result.stderr
    assert rows(setup.sink_uri, "SELECT to_regclass('landing.broken')") == [(None,)]
