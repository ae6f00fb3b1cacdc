"""Pipelines sharing one slot through `dagster asset materialize`: one step reads the slot for
every selected table, each table its own asset with its own materialization and metadata."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgflow.bindings.definitions import build_definitions
from pgflow.config.loader import load_project
from pgflow_tests.bindings.conftest import DagsterSetup, empty_dagster_setup
from pgflow_tests.bindings.test_definitions_cli import materialize, rows
from pgflow_tests.bindings.test_io_managers_incremental import metadata_of
from pgflow_tests.pg import drop_slots, execute, fetch, slot_name_for

NAMES = ("t1", "t2", "t3")
SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: {name}}}
  options: {{incremental_strategy: cdc, slot_name: {slot}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: {name}}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: {policy}}}
"""
SAME = "SELECT id, label, amount FROM {}.{} ORDER BY id"


@pytest.fixture
def group_setup(
    local_pg: object, make_database: Callable[[], str], tmp_path: Path
) -> Iterator[DagsterSetup]:
    setup = empty_dagster_setup(local_pg, make_database, tmp_path)
    slot = slot_name_for(setup.source_uri)
    for name, policy in zip(NAMES, ("upsert", "delete_insert", "upsert"), strict=True):
        execute(
            setup.source_uri,
            f"CREATE TABLE public.{name} (id int PRIMARY KEY, label text, amount numeric);"
            f" INSERT INTO public.{name} SELECT g, 'r' || g, g * 1.5 FROM generate_series(1, 50) g",
        )
        spec = SPEC.format(name=name, slot=slot, policy=policy)
        (setup.specs / f"{name}.yaml").write_text(spec)
    yield setup
    drop_slots(setup.source_uri, slot)


def same(setup: DagsterSetup, name: str) -> bool:
    return rows(setup.sink_uri, SAME.format("landing", name)) == rows(
        setup.source_uri, SAME.format("public", name)
    )


def test_one_step_per_slot_with_an_asset_per_table(
    group_setup: DagsterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = group_setup
    for key, value in setup.env.items():
        monkeypatch.setenv(key, value)
    defs = build_definitions(load_project(str(setup.specs)))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"landing/t1", "landing/t2", "landing/t3"} <= keys
    nodes = {graph.get(k).assets_def.node_def.name for k in graph.materializable_asset_keys}
    assert len(nodes) == 1, "the three tables are one step"


def test_materialize_all_then_a_subset_keeps_the_others_changes(
    group_setup: DagsterSetup,
) -> None:
    setup = group_setup
    first = materialize(setup, "landing/t1,landing/t2,landing/t3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert all(same(setup, n) for n in NAMES)
    assert metadata_of(setup, "t2")["pgflow/snapshot_rows"] == 50
    assert fetch(setup.source_uri, "SELECT count(*) FROM pg_replication_slots") == [(1,)]

    execute(
        setup.source_uri,
        "UPDATE t1 SET label = 'x' WHERE id <= 3; DELETE FROM t2 WHERE id > 45;"
        " INSERT INTO t3 VALUES (100, 'new', 0)",
    )
    only_t1 = materialize(setup, "landing/t1")
    assert only_t1.returncode == 0, only_t1.stderr[-3000:]
    assert same(setup, "t1") and not same(setup, "t2")
    assert metadata_of(setup, "t1")["pgflow/upserts"] == 3

    rest = materialize(setup, "landing/t2,landing/t3")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert all(same(setup, n) for n in NAMES)
    assert metadata_of(setup, "t2")["pgflow/deletes"] == 5
    assert metadata_of(setup, "t3")["pgflow/upserts"] == 1


def test_a_failing_table_fails_its_asset_and_the_others_materialize(
    group_setup: DagsterSetup,
) -> None:
    setup = group_setup
    assert materialize(setup, "landing/t1,landing/t2,landing/t3").returncode == 0
    execute(setup.source_uri, "UPDATE t1 SET label = 'y'; UPDATE t3 SET label = 'z'")
    execute(setup.sink_uri, "ALTER TABLE landing.t3 ALTER COLUMN label SET DATA TYPE int USING 0")
    failed = materialize(setup, "landing/t1,landing/t2,landing/t3")
    assert failed.returncode != 0
    assert "pipeline 'landing_t3'" in failed.stderr and "retyped column(s) label" in failed.stderr
    assert same(setup, "t1"), "t1 was applied and materialized"
    assert metadata_of(setup, "t1")["pgflow/upserts"] == 50
