"""mode update and mode delete into Delta tables through `dagster asset materialize -m
pgflow.definitions`, as users run them: rows in the tables, metadata, and an on_unmatched:
fail run that fails and commits nothing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from deltalake import DeltaTable

from pgflow.config.model import StrategySpec
from pgflow.sinks.delta import scan_delta_table
from pgflow_tests.bindings.conftest import DagsterSetup, dagster_setup, items_table
from pgflow_tests.bindings.test_definitions_cli import instance, materialize
from pgflow_tests.pg import execute
from pgflow_tests.sinks.delta.conftest import run_delta

__all__ = ["dagster_setup"]  # the fixture, used below

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {options}
sink:
  type: delta
  path: '{path}'
  strategy: {strategy}
"""
# The Delta tables the modes change, made beforehand: ids 1-100 (update), 1-400 (delete).
STALE = """
CREATE TABLE stale_upd AS SELECT g AS id, 'old'::text AS name, 0::numeric(8,2) AS price,
    NULL::timestamptz AS added, 'crm'::text AS origin FROM generate_series(1, 100) g;
CREATE TABLE stale_del AS SELECT g AS id, 'old'::text AS name FROM generate_series(1, 400) g;
"""


def metadata_of(setup: DagsterSetup, name: str) -> dict:
    with instance(setup) as inst:
        event = inst.get_latest_materialization_event(dg.AssetKey(["delta", name]))
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def prepare(setup: DagsterSetup, lake: Path, on_unmatched: str = "ignore") -> None:
    items_table(setup.source_uri)  # ids 1-300, 'item <id>', price id * 1.25
    execute(setup.source_uri, STALE)
    merge = StrategySpec(mode="incremental_merge", unique_key=("id",))
    for name in ("upd", "del"):
        run_delta(setup.source_uri, lake / f"items_{name}", merge, table=f"stale_{name}",
                  pipeline=f"stale_{name}")  # fmt: skip
    (setup.specs / "items.yaml").unlink()
    specs = {
        "items_upd": ("{}", f"{{mode: update, unique_key: [id], on_unmatched: {on_unmatched}}}"),
        "items_del": ("{include_columns: [id]}", "{mode: delete, unique_key: [id]}"),
    }
    for name, (options, strategy) in specs.items():
        spec = SPEC.format(options=options, path=lake / name, strategy=strategy)
        (setup.specs / f"{name}.yaml").write_text(spec)


def test_update_and_delete_into_delta_through_the_cli(
    dagster_setup: DagsterSetup, tmp_path: Path
) -> None:
    setup, lake = dagster_setup, tmp_path / "lake ü"
    prepare(setup, lake)
    result = materialize(setup, "delta/items_upd,delta/items_del")
    assert result.returncode == 0, result.stderr[-3000:]

    # update: ids 1-100 take the source's values, their origin stays; 101-300 not inserted
    updated = scan_delta_table(lake / "items_upd").sort("id").collect()
    assert updated.height == 100 and updated.get_column("id").max() == 100
    assert updated.get_column("name").to_list() == [f"item {i}" for i in range(1, 101)]
    assert float(updated.get_column("price").sum()) == sum(i * 1.25 for i in range(1, 101))
    assert set(updated.get_column("origin")) == {"crm"}
    meta = metadata_of(setup, "items_upd")
    assert meta["pgflow/strategy"] == "update" and meta["pgflow/rows_written"] == 100
    assert meta["pgflow/unmatched_keys"] == 200 and meta["dagster/row_count"] == 100
    assert meta["pgflow/delta_version"] == 1 and meta["pgflow/created_target"] is False
    assert "pgflow/source_rows_exact" not in meta  # the table is no copy of the source

    # delete: the source's 300 ids are gone, 301-400 stay
    ids = scan_delta_table(lake / "items_del").collect().get_column("id")
    assert (len(ids), ids.min()) == (100, 301)
    meta = metadata_of(setup, "items_del")
    assert meta["pgflow/rows_deleted"] == 300 and meta["pgflow/unmatched_keys"] == 0
    assert meta["dagster/row_count"] == 100 and meta["pgflow/rows_read"] == 300
    # the run's log says what each mode did
    assert f"{lake / 'items_del'}: 300 rows deleted (version" in result.stderr
    assert f"{lake / 'items_upd'}: 100 rows updated (version" in result.stderr


def test_on_unmatched_fail_fails_the_run_and_commits_nothing(
    dagster_setup: DagsterSetup, tmp_path: Path
) -> None:
    setup, lake = dagster_setup, tmp_path / "lake"
    prepare(setup, lake, on_unmatched="fail")
    result = materialize(setup, "delta/items_upd")
    assert result.returncode != 0
    assert (
        f"UnmatchedKeys: mode update into the Delta table at {lake / 'items_upd'}: 200 key(s) "
        "read (101, 102, 103, 104, 105, ...) are not in the table"
    ) in result.stderr
    assert DeltaTable(str(lake / "items_upd")).version() == 0
    names = scan_delta_table(lake / "items_upd").collect().get_column("name")
    assert set(names) == {"old"}
