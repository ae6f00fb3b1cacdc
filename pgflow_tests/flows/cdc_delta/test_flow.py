"""CDC into Delta end to end: snapshot hand-off, a batch of inserts, updates and deletes in
one merge commit carrying the end LSN, and the position read back from the table."""

from __future__ import annotations

from pathlib import Path

from pgflow.sinks.delta.cdc_state import delta_cdc_app_id
from pgflow.sources.pgoutput import lsn_to_int
from pgflow_tests.flows.cdc_delta.conftest import (
    ORDERS,
    SOURCE,
    app_version,
    delta_frame,
    execute,
    fresh_load,
    run_delta,
)


def test_snapshot_then_one_batch(source_uri: str, slot: str, tmp_path: Path) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    first = run_delta(source_uri, path, slot)
    assert first.snapshot is not None and first.snapshot.rows == 200
    assert first.snapshot_reason == "first run: no stored position"
    assert first.position_after is not None
    app = delta_cdc_app_id("orders", f"cdc:{SOURCE}:{slot}")
    assert app_version(path, app) == lsn_to_int(first.position_after.value)

    execute(
        source_uri,
        "INSERT INTO orders (id, status, amount) VALUES (1001, 'fresh', 3.25);"
        "UPDATE orders SET status = 'paid', note = NULL WHERE id <= 10;"
        "DELETE FROM orders WHERE id BETWEEN 190 AND 200;",
    )
    second = run_delta(source_uri, path, slot)
    assert second.snapshot is None
    assert len(second.batches) == 1
    batch = second.batches[0]
    assert (batch.rows_applied, batch.rows_deleted) == (11, 11)
    assert second.delta_version == first.snapshot.version_after + 1
    assert second.position_after is not None
    assert app_version(path, app) == lsn_to_int(second.position_after.value)
    expected = fresh_load(source_uri, SOURCE, tmp_path / "fresh")
    got = delta_frame(path)
    assert got.schema == expected.schema
    assert got.equals(expected.sort("id"))

    idle = run_delta(source_uri, path, slot)
    assert idle.batches == [] and idle.delta_version == second.delta_version


def test_a_batch_that_changes_nothing_still_moves_the_position(
    source_uri: str, slot: str, tmp_path: Path
) -> None:
    """Rows inserted and deleted within one batch leave the table as it was: the merge makes
    no commit, so an empty one carries the batch's end LSN."""
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    first = run_delta(source_uri, path, slot)
    execute(
        source_uri,
        "INSERT INTO orders (id, status) SELECT g, 'brief' FROM generate_series(5000, 5100) g;"
        "DELETE FROM orders WHERE id >= 5000",
    )
    result = run_delta(source_uri, path, slot)
    assert result.changes == 202 and result.batches[0].rows_applied == 0
    assert first.snapshot is not None
    assert result.delta_version == first.snapshot.version_after + 1
    assert result.position_after is not None
    app = delta_cdc_app_id("orders", f"cdc:{SOURCE}:{slot}")
    assert app_version(path, app) == lsn_to_int(result.position_after.value)
    assert delta_frame(path).height == 200


def test_include_columns_narrow_the_table(source_uri: str, slot: str, tmp_path: Path) -> None:
    execute(source_uri, ORDERS)
    path = tmp_path / "orders"
    columns = ("id", "status", "tags")
    run_delta(source_uri, path, slot, include_columns=columns)
    execute(source_uri, "UPDATE orders SET status = 'x', note = 'not read' WHERE id <= 4")
    run_delta(source_uri, path, slot, include_columns=columns)
    got = delta_frame(path)
    assert got.columns == list(columns)
    assert got.filter(got["status"] == "x").height == 4
