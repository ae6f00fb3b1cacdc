"""Postgres -> Delta pipelines in Dagster: the CLI loads and merges with the cursor kept in the
Delta commit, and a downstream asset receives the Delta table as a polars LazyFrame."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from pgflow.bindings.definitions import build_definitions
from pgflow.bindings.pipeline_asset import pipeline_asset
from pgflow.config.loader import load_project
from pgflow_tests.bindings.conftest import DagsterSetup, items_table
from pgflow_tests.bindings.test_definitions_cli import instance, materialize, rows
from pgflow_tests.pg import execute

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: column, incremental_column: added}}
sink:
  type: delta
  path: {path}
  strategy: {{mode: incremental_merge, unique_key: [id]}}
"""


def metadata(setup: DagsterSetup) -> dict[str, object]:
    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["delta", "items"]))
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def delta_rows(path: Path) -> list[tuple]:
    frame = pl.read_delta(str(path)).sort("id").select("id", "name", "price")
    return [tuple(r) for r in frame.iter_rows()]


def test_cli_merges_into_delta_with_the_cursor_in_the_commit(
    dagster_setup: DagsterSetup, tmp_path: Path
) -> None:
    setup = dagster_setup
    items_table(setup.source_uri, rows=100)
    execute(
        setup.source_uri, "UPDATE items SET added = '2026-01-01'::timestamptz + id * '1s'::interval"
    )
    lake = tmp_path / "lake" / "items"
    (setup.specs / "items.yaml").write_text(SPEC.format(path=lake))

    first = materialize(setup, "delta/items")
    assert first.returncode == 0, first.stderr[-3000:]
    assert metadata(setup)["pgflow/rows_read"] == 100
    assert metadata(setup)["pgflow/retries"] == 0 and "pgflow/last_error" not in metadata(setup)

    execute(setup.source_uri, "UPDATE items SET price = 0, added = now() WHERE id <= 4")
    second = materialize(setup, "delta/items")
    assert second.returncode == 0, second.stderr[-3000:]
    merged = metadata(setup)
    assert merged["pgflow/rows_read"] == 4  # the row on the old mark was applied: skipped
    assert merged["pgflow/cursor_boundary_keys"] == 4  # the new mark: one now() for all 4
    assert merged["pgflow/cursor_before"] == "2026-01-01 00:01:40+00"
    expected = rows(setup.source_uri, "SELECT id, name, price FROM items ORDER BY id")
    assert [(i, n, float(p)) for i, n, p in delta_rows(lake)] == [
        (i, n, float(p)) for i, n, p in expected
    ]


@dg.asset(ins={"items": dg.AssetIn(key=["delta", "items"])})
def cheap_items(items: pl.LazyFrame) -> int:
    return items.filter(pl.col("price") < 10).select(pl.len()).collect().item()


def test_a_downstream_asset_gets_the_delta_table_as_a_lazyframe(
    dagster_setup: DagsterSetup, tmp_path: Path, monkeypatch
) -> None:
    for name in ("PGFLOW_CONN_SHOP", "PGFLOW_CONN_WAREHOUSE"):
        monkeypatch.setenv(name, dagster_setup.env[name])
    items_table(dagster_setup.source_uri, rows=20)
    spec = SPEC.replace(
        "  options: {{incremental_strategy: column, incremental_column: added}}\n", ""
    )
    spec = spec.replace("incremental_merge, unique_key: [id]", "full_refresh")
    lake = tmp_path / "my lake ü" / "items"  # polars alone cannot read such a path
    (dagster_setup.specs / "items.yaml").write_text(spec.format(path=lake))
    project = load_project(dagster_setup.specs)
    result = dg.materialize(
        [pipeline_asset(project.pipelines[0]), cheap_items],
        resources=build_definitions(project).resources,
    )
    assert result.success
    assert result.output_for_node("cheap_items") == 7  # prices 1.25 .. 8.75
