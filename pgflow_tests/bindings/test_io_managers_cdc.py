"""A CDC pipeline through `dagster asset materialize`: snapshot, then streamed changes, with
LSNs and slot health in the materialization metadata."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgflow.sources import cdc
from pgflow_tests.bindings.conftest import DagsterSetup, items_table
from pgflow_tests.bindings.test_definitions_cli import materialize, rows
from pgflow_tests.bindings.test_io_managers_incremental import metadata_of
from pgflow_tests.pg import drop_slots, execute, slot_name_for

SPEC = """
source:
  type: postgres
  connection_id: shop
  table: {{schema: public, name: items}}
  options: {{incremental_strategy: cdc, slot_name: {slot}, deleted_column: {deleted}}}
sink:
  type: postgres
  connection_id: warehouse
  table: {{schema: landing, name: items}}
  strategy: {{mode: incremental_merge, unique_key: [id], merge_policy: upsert}}
"""
SAME = "SELECT id, name, price FROM {} WHERE {} ORDER BY id"


@pytest.fixture
def slot(dagster_setup: DagsterSetup) -> Iterator[str]:
    name = slot_name_for(dagster_setup.source_uri)
    yield name
    drop_slots(dagster_setup.source_uri, name)


def test_cdc_snapshot_then_changes_with_lsns_in_metadata(
    dagster_setup: DagsterSetup, slot: str
) -> None:
    setup = dagster_setup
    items_table(setup.source_uri, rows=100)
    (setup.specs / "items.yaml").write_text(SPEC.format(slot=slot, deleted="_deleted_at"))
    first = materialize(setup, "landing/items")
    assert first.returncode == 0, first.stderr[-3000:]
    snapshot = metadata_of(setup, "items")
    assert snapshot["pgflow/read"] == "snapshot (first run: no stored position), then stream"
    assert snapshot["pgflow/snapshot_rows"] == 100 and snapshot["pgflow/cursor_before"] == ""

    execute(
        setup.source_uri,
        "UPDATE items SET price = 0 WHERE id <= 5; DELETE FROM items WHERE id > 95;"
        "INSERT INTO items (id, name, price) VALUES (500, 'new', 1)",
    )
    second = materialize(setup, "landing/items")
    assert second.returncode == 0, second.stderr[-3000:]
    stream = metadata_of(setup, "items")
    assert stream["pgflow/cursor_before"] == snapshot["pgflow/cursor_after"]
    assert (stream["pgflow/upserts"], stream["pgflow/deletes"]) == (6, 5)
    assert stream["pgflow/retries"] == 0 and "pgflow/last_error" not in stream
    assert stream["pgflow/slot_wal_status"] in ("reserved", "extended")
    assert rows(setup.sink_uri, SAME.format("landing.items", "_deleted_at IS NULL")) == rows(
        setup.source_uri, SAME.format("items", "true")
    )
    assert rows(
        setup.sink_uri, "SELECT count(*) FROM landing.items WHERE _deleted_at IS NOT NULL"
    ) == [(5,)]


def test_a_dropped_slot_fails_the_run_with_the_fix(dagster_setup: DagsterSetup, slot: str) -> None:
    setup = dagster_setup
    items_table(setup.source_uri, rows=10)
    (setup.specs / "items.yaml").write_text(SPEC.format(slot=slot, deleted="null"))
    assert materialize(setup, "landing/items").returncode == 0
    with psycopg.connect(setup.source_uri, autocommit=True) as conn:
        cdc.drop_slot(conn, slot)
    failed = materialize(setup, "landing/items")
    assert failed.returncode != 0
    assert f"replication slot {slot} does not exist" in failed.stderr
    assert "reset: true" in failed.stderr
